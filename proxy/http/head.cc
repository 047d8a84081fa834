#include "proxy/http/head.h"

#include <cstring>

namespace tether::http {
namespace {

// '_' anywhere in a name, eight bytes at a time (names are short; memchr's
// call costs more than the scan).
bool hasUnderscore(std::string_view n) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;
  constexpr std::uint64_t kPattern = 0x5f * kOnes;
  std::size_t i = 0;
  for (; i + 8 <= n.size(); i += 8) {
    std::uint64_t w;
    std::memcpy(&w, n.data() + i, 8);
    w ^= kPattern;
    if ((w - kOnes) & ~w & kHighs) return true;
  }
  if (i == n.size()) return false;
  if (n.size() < 8) {
    for (; i < n.size(); ++i)
      if (n[i] == '_') return true;
    return false;
  }
  // The last 1 to 7 bytes: the name's last word, which overlaps the one before.
  std::uint64_t w;
  std::memcpy(&w, n.data() + n.size() - 8, 8);
  w ^= kPattern;
  return ((w - kOnes) & ~w & kHighs) != 0;
}

}  // namespace

void HeaderList::endName() {
  Field& f = fields_.back();
  std::string_view n(arena_.data() + f.off, f.name_len);
  f.kind = classifyHeader(n);
  f.underscore = f.kind == HeaderKind::kOther && hasUnderscore(n);
  arena_.append(": ", 2);
  f.value_off = static_cast<std::uint32_t>(arena_.size());
}

const char* HeaderList::scanMirrored() {
  const char* base = arena_.data();
  const std::size_t end = arena_.size();
  // The start line, after the CR and LF bytes that may precede a message.
  std::size_t i = 0;
  while (i < end && (base[i] == '\r' || base[i] == '\n')) ++i;
  const void* nl = i < end ? std::memchr(base + i, '\n', end - i) : nullptr;
  if (!nl) return nullptr;  // no field line in the copy: a head without fields
  i = static_cast<std::size_t>(static_cast<const char*>(nl) - base) + 1;
  while (i < end) {
    const char c = base[i];
    if (c == '\r' || c == '\n') break;  // the blank line that ends the head
    // RFC 9112 §5.2: obs-fold is refused, a fold after an empty first line
    // ("Transfer-Encoding:\r\n chunked") too.
    if (c == ' ' || c == '\t') return "obsolete line folding";
    if (c == ':') return "empty field name";
    nl = std::memchr(base + i, '\n', end - i);
    const std::size_t line_end = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - base) + 1 : end;
    // The line's content: without its CRLF, or, for a last line the copy
    // cuts, without the CR a value never holds.
    std::size_t content_end = nl ? line_end - 1 : end;
    if (content_end > i && base[content_end - 1] == '\r') --content_end;
    const void* colon = std::memchr(base + i, ':', content_end - i);
    const std::size_t name_end = colon ? static_cast<std::size_t>(static_cast<const char*>(colon) - base) : content_end;
    std::size_t v = colon ? name_end + 1 : name_end;
    while (v < content_end && (base[v] == ' ' || base[v] == '\t')) ++v;
    std::size_t v_end = content_end;
    // Trailing blanks are not part of the value (RFC 9112 §5).
    while (v_end > v && (base[v_end - 1] == ' ' || base[v_end - 1] == '\t')) --v_end;
    Field f;
    f.off = static_cast<std::uint32_t>(i);
    f.name_len = static_cast<std::uint16_t>(name_end - i);
    // An empty value has its offset at the colon: an empty view in the line.
    f.value_off = static_cast<std::uint32_t>(v_end > v ? v : name_end);
    f.value_len = static_cast<std::uint32_t>(v_end - v);
    std::string_view n(base + i, f.name_len);
    f.kind = classifyHeader(n);
    f.underscore = f.kind == HeaderKind::kOther && hasUnderscore(n);  // no name tether knows has one
    if (nl) closeLine(f, static_cast<std::uint32_t>(line_end));
    last_open_ = !nl;
    fields_.push_back(f);
    i = line_end;
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
