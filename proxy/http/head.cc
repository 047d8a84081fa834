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
  const char* base = arena_.data();
  const std::size_t end = arena_.size();
  auto blank = [](char c) { return c == ' ' || c == '\t'; };
  for (Field& f : fields_) {
    if (f.name_len == 0) return "empty field name";
    const std::size_t colon = f.off + f.name_len;
    // Only blanks between the colon and the value: a line break there is a
    // fold after an empty first line ("Transfer-Encoding:\r\n chunked"),
    // which llhttp reads as blanks before the value.
    std::size_t after = colon + 1;
    if (f.value_len) {
      if (f.value_off != after + 1 || base[after] != ' ') {  // not the one space most senders write
        for (std::size_t k = after; k < f.value_off; ++k)
          if (!blank(base[k])) return "obsolete line folding";
      }
      after = f.value_off + f.value_len;
    }
    // Trailing blanks are not part of the value (RFC 9112 §5); an empty
    // value has its offset at the colon: an empty view in the line.
    while (f.value_len && blank(base[f.value_off + f.value_len - 1])) --f.value_len;
    if (f.value_len == 0) f.value_off = static_cast<std::uint32_t>(colon);
    std::string_view n(base + f.off, f.name_len);
    f.kind = classifyHeader(n);
    f.underscore = f.kind == HeaderKind::kOther && hasUnderscore(n, end - f.off);  // no name tether knows has one
    // The line: name ':' OWS value OWS CRLF, kept as it arrived when whole.
    while (after < end && blank(base[after])) ++after;
    if (after + 2 > end) {
      last_open_ = true;  // the last line, whose break the copy does not hold yet
      continue;
    }
    const bool whole = colon < end && base[colon] == ':' && base[after] == '\r' && base[after + 1] == '\n';
    f.line_len = whole ? static_cast<std::uint32_t>(after + 2 - f.off) : 0;
    live_bytes_ += whole ? f.line_len : f.name_len + f.value_len + 4u;
  }
  return nullptr;
}

// A line kept as it arrived, when it is whole: name ':' OWS value OWS CRLF;
// else (a bare LF ends it) written again from name and value (writeLines).
void HeaderList::closeLine(Field& f, std::uint32_t next) {
  const char* base = arena_.data();
  f.line_len = next > f.off ? next - f.off : 0;
  bool whole = f.line_len >= f.name_len + 3u && next <= arena_.size() && base[next - 2] == '\r' &&
               base[next - 1] == '\n' && base[f.off + f.name_len] == ':';
  if (!whole) f.line_len = 0;
  live_bytes_ += whole ? f.line_len : f.name_len + f.value_len + 4u;
}

void HeaderList::sealMirror(std::uint32_t end) {
  if (!last_open_) return;
  last_open_ = false;
  closeLine(fields_.back(), end);
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
