#include "proxy/http/head.h"

#include <bit>
#include <cstring>

namespace tether::http {
namespace {

// '_' anywhere in a name, eight bytes at a time (names are short; memchr's
// call costs more than the scan). `avail` is how many bytes from the name's
// start are in the buffer: a short name is read as one word when they are
// there, the bytes past it masked off.
static_assert(std::endian::native == std::endian::little, "the word scans read the lowest byte first");

bool hasUnderscore(std::string_view n, std::size_t avail) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  constexpr std::uint64_t kPattern = 0x5f * kOnes;
  // The high bit of each byte equal to '_'; a byte above a match may be
  // marked too, never one below the lowest match.
  auto matches = [&](std::size_t at) {
    std::uint64_t w;
    std::memcpy(&w, n.data() + at, 8);
    w ^= kPattern;
    return (w - kOnes) & ~w & kHighs;
  };
  if (n.size() < 8) {
    if (avail >= 8) return (matches(0) & ((1ull << (8 * n.size())) - 1)) != 0;  // little-endian: low bytes first
    for (char c : n)
      if (c == '_') return true;
    return false;
  }
  std::size_t i = 0;
  for (; i + 8 <= n.size(); i += 8)
    if (matches(i)) return true;
  // The last 1 to 7 bytes: the name's last word, which overlaps the one before.
  return i != n.size() && matches(n.size() - 8) != 0;
}

}  // namespace

void HeaderList::endName() {
  Field& f = fields_.back();
  std::string_view n(arena_.data() + f.off, f.name_len);
  f.kind = classifyHeader(n);
  f.underscore = f.kind == HeaderKind::kOther && hasUnderscore(n, arena_.size() - f.off);
  arena_.append(": ", 2);
  f.value_off = static_cast<std::uint32_t>(arena_.size());
}

const char* HeaderList::sealFields() {
  if (folded_) return "obsolete line folding";
  if (name_too_long_) return "field name too long";
  const char* base = arena_.data();
  const std::size_t end = arena_.size();
  for (Field& f : fields_) {
    if (f.name_len == 0) return "empty field name";
    const std::size_t colon = f.off + f.name_len;
    // Only blanks between the colon and the value: a line break there is a
    // fold after an empty first line ("Transfer-Encoding:\r\n chunked"),
    // which llhttp reads as blanks before the value.
    if (f.value_len && (f.value_off != colon + 2 || base[colon + 1] != ' ')) {  // not the one space most senders write
      for (std::size_t k = colon + 1; k < f.value_off; ++k)
        if (!blank(base[k])) return "obsolete line folding";
    }
    // Trailing blanks are not part of the value (RFC 9112 §5); an empty
    // value has its offset at the colon: an empty view in the line.
    while (f.value_len && blank(base[f.value_off + f.value_len - 1])) --f.value_len;
    if (f.value_len == 0) f.value_off = static_cast<std::uint32_t>(colon);
    std::string_view n(base + f.off, f.name_len);
    f.kind = classifyHeader(n);
    f.underscore = f.kind == HeaderKind::kOther && hasUnderscore(n, end - f.off);  // no name tether knows has one
  }
  return nullptr;
}

// The whole head is in the copy now, its blank line at `end`. Each field's
// line is name ':' OWS value OWS CRLF (llhttp, strict, has checked that),
// kept as it arrived; and the lines follow one another up to the blank
// line: a line between them that no field began is a fold, which llhttp
// reads, when it holds only blanks after an empty value, as that value.
const char* HeaderList::sealMirror(std::uint32_t end) {
  const char* base = arena_.data();
  const std::size_t size = arena_.size();
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    Field& f = fields_[i];
    const std::size_t colon = f.off + f.name_len;
    std::size_t after = f.value_len ? f.value_off + f.value_len : colon + 1;
    while (after < size && blank(base[after])) ++after;
    if (colon >= size || base[colon] != ':' || after + 2 > size || base[after] != '\r' || base[after + 1] != '\n') {
      return "malformed field line";
    }
    const std::size_t next = after + 2;
    if (next != (i + 1 < fields_.size() ? fields_[i + 1].off : end)) return "obsolete line folding";
    f.line_len = static_cast<std::uint32_t>(next - f.off);
    live_bytes_ += f.line_len;
  }
  return nullptr;
}

std::size_t HeaderList::writeLines(char* out) const {
  char* o = out;
  const char* base = arena_.data();
  std::size_t run_from = 0, run_to = 0;
  auto flush = [&] {
    if (run_to > run_from) {
      std::memcpy(o, base + run_from, run_to - run_from);
      o += run_to - run_from;
    }
    run_from = run_to = 0;
  };
  for (const Field& f : fields_) {
    if (f.dropped) continue;
    if (!f.line_len) {
      // Not a whole line as it arrived: written from its parts.
      flush();
      std::memcpy(o, base + f.off, f.name_len);
      o += f.name_len;
      *o++ = ':';
      *o++ = ' ';
      std::memcpy(o, base + f.value_off, f.value_len);
      o += f.value_len;
      *o++ = '\r';
      *o++ = '\n';
      continue;
    }
    if (run_to == f.off && run_to != 0) {
      run_to = f.off + f.line_len;
      continue;
    }
    if (run_to > run_from) {
      std::memcpy(o, base + run_from, run_to - run_from);
      o += run_to - run_from;
    }
    run_from = f.off;
    run_to = f.off + f.line_len;
  }
  if (run_to > run_from) {
    std::memcpy(o, base + run_from, run_to - run_from);
    o += run_to - run_from;
  }
  return static_cast<std::size_t>(o - out);
}

}  // namespace tether::http
