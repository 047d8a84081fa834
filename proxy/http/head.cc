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
  for (; i < n.size(); ++i)
    if (n[i] == '_') return true;
  return false;
}

}  // namespace

void HeaderList::endName() {
  Field& f = fields_.back();
  std::string_view n(arena_.data() + f.off, f.name_len);
  f.kind = classifyHeader(n);
  f.underscore = n.find('_') != std::string_view::npos;
  arena_.append(": ", 2);
  f.value_off = static_cast<std::uint32_t>(arena_.size());
}

void HeaderList::classifyMirrored() {
  const char* base = arena_.data();
  for (Field& f : fields_) {
    if (f.line_len) continue;  // added by pieces
    std::string_view n(base + f.off, f.name_len);
    f.kind = classifyHeader(n);
    f.underscore = hasUnderscore(n);
    // Trailing blanks are not part of the value (RFC 9112 §5).
    while (f.value_len && (base[f.value_off + f.value_len - 1] == ' ' || base[f.value_off + f.value_len - 1] == '\t')) {
      --f.value_len;
    }
  }
}

void HeaderList::sealMirror(std::uint32_t end) {
  const char* base = arena_.data();
  for (std::size_t i = 0; i < fields_.size(); ++i) {
    Field& f = fields_[i];
    if (f.line_len) continue;  // added by pieces
    std::uint32_t next = i + 1 < fields_.size() ? fields_[i + 1].off : end;
    // The line as it arrived: name ':' OWS value OWS CRLF. A field with an
    // empty value has its value offset at the colon; point it past the line.
    if (f.value_len == 0) f.value_off = f.off + f.name_len;
    f.line_len = next > f.off ? next - f.off : 0;
    bool whole = f.line_len >= f.name_len + 3u && next <= arena_.size() && base[next - 2] == '\r' &&
                 base[next - 1] == '\n' && base[f.off + f.name_len] == ':';
    if (!whole) f.line_len = 0;  // written again from name and value (writeLines)
    live_bytes_ += whole ? f.line_len : f.name_len + f.value_len + 4u;
  }
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
