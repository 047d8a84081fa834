#include "balancer/affinity_key.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace tether::balancer {

namespace {

using Source = KeySpec::Source;

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 9110 tchar.
bool isTchar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool isToken(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), isTchar); }

bool isQueryName(std::string_view s) {
  return !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F || c == '&' || c == '=' || c == '#';
  });
}

bool hasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

std::string toLower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = lower(c);
  return r;
}

// --- cookies and headers --------------------------------------------------

std::optional<std::string_view> findHeader(std::span<const HeaderField> headers,
                                           std::string_view name) {
  for (const HeaderField& h : headers) {
    if (iequals(h.name, name)) return trimOws(h.value);
  }
  return std::nullopt;
}

// The first pair named `name` in one Cookie value: pair by pair (memchr to
// each ';'), the name compared where the pair starts. A cookie name is a
// token, so it holds neither blanks nor '=': the pair's name is `name` when
// only blanks stand between it and the pair's first '='.
std::optional<std::string_view> cookieIn(std::string_view v, std::string_view name) {
  const char* p = v.data();
  const char* const end = p + v.size();
  while (p < end) {
    const char* semi = static_cast<const char*>(std::memchr(p, ';', static_cast<std::size_t>(end - p)));
    const char* const pair_end = semi ? semi : end;
    while (p < pair_end && isOws(*p)) ++p;
    if (static_cast<std::size_t>(pair_end - p) > name.size() && (name.empty() || *p == name[0]) &&
        std::memcmp(p, name.data(), name.size()) == 0) {
      const char* eq = p + name.size();
      while (eq < pair_end && isOws(*eq)) ++eq;
      if (eq < pair_end && *eq == '=') {
        std::string_view value = trimOws(std::string_view(eq + 1, static_cast<std::size_t>(pair_end - eq - 1)));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
          value = value.substr(1, value.size() - 2);
        }
        return value;
      }
    }
    if (!semi) break;
    p = semi + 1;
  }
  return std::nullopt;
}

std::optional<std::string_view> findCookie(std::span<const HeaderField> headers,
                                           std::string_view name) {
  for (const HeaderField& h : headers) {
    if (!iequals(h.name, "cookie")) continue;
    if (std::optional<std::string_view> v = cookieIn(h.value, name)) return v;
  }
  return std::nullopt;
}

// --- base64url and a small JSON scanner -----------------------------------
//
// Both run on every request of a jwt key, over a token of up to kMaxJwtBytes:
// each character class is one table load, a payload is decoded onto the
// stack, and the scanner hands out views into it. Nothing is allocated but
// the unescaped text of a found string that has escapes.

constexpr std::uint8_t kNotBase64 = 0xFF;

constexpr std::array<std::uint8_t, 256> kBase64UrlValues = [] {
  std::array<std::uint8_t, 256> t{};
  t.fill(kNotBase64);
  for (int i = 0; i < 26; ++i) {
    t['A' + i] = static_cast<std::uint8_t>(i);
    t['a' + i] = static_cast<std::uint8_t>(26 + i);
  }
  for (int i = 0; i < 10; ++i) t['0' + i] = static_cast<std::uint8_t>(52 + i);
  t['-'] = 62;
  t['_'] = 63;
  return t;
}();

std::uint8_t base64UrlValue(char c) { return kBase64UrlValues[static_cast<unsigned char>(c)]; }

// What a payload of a token within kMaxJwtBytes decodes to, at most: its
// 4n+2 or 4n+3 characters give fewer than 3/4 of their count in bytes.
constexpr std::size_t kMaxJwtPayloadBytes = kMaxJwtBytes / 4 * 3;
static_assert((kMaxJwtBytes - 3) / 4 * 3 + 2 <= kMaxJwtPayloadBytes,
              "a payload (a token less its header and two dots) fits the buffer");

// Unpadded or padded base64url (any '=' at the end is dropped, and only
// there); anything else is malformed, as is a length no encoding has (4n+1
// characters leave 6 bits, not a byte). Bits after the last whole byte are
// not checked. Returns the decoded size, or nullopt when malformed or when
// it would not fit `out`.
std::optional<std::size_t> base64UrlDecode(std::string_view in, std::span<char> out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  const std::size_t tail = in.size() % 4;
  if (tail == 1) return std::nullopt;
  const std::size_t size = in.size() / 4 * 3 + (tail ? tail - 1 : 0);
  if (size > out.size()) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const auto* end = p + (in.size() - tail);
  char* o = out.data();
  for (; p != end; p += 4, o += 3) {
    const std::uint32_t a = kBase64UrlValues[p[0]], b = kBase64UrlValues[p[1]],
                        c = kBase64UrlValues[p[2]], d = kBase64UrlValues[p[3]];
    if ((a | b | c | d) > 63) return std::nullopt;
    const std::uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
    o[0] = static_cast<char>(v >> 16);
    o[1] = static_cast<char>(v >> 8);
    o[2] = static_cast<char>(v);
  }
  if (tail >= 2) {
    const std::uint32_t a = kBase64UrlValues[p[0]], b = kBase64UrlValues[p[1]];
    const std::uint32_t c = tail == 3 ? kBase64UrlValues[p[2]] : 0;
    if ((a | b | c) > 63) return std::nullopt;
    const std::uint32_t v = (a << 12) | (b << 6) | c;  // 18 bits, the last 2 or 10 unused
    o[0] = static_cast<char>(v >> 10);
    if (tail == 3) o[1] = static_cast<char>(v >> 2);
  }
  return size;
}

// Character classes of the JSON scanner, one table for all of them.
enum : std::uint8_t {
  kStringStop = 1,  // ends a run of plain string bytes: '"', '\\' or a control
  kWhitespace = 2,  // JSON whitespace
  kScalarEnd = 4,   // ends a skipped number or literal: ',', '}', ']' or whitespace
  kNesting = 8,     // counts inside a skipped object or array: '"', brackets, braces
};

constexpr std::array<std::uint8_t, 256> kJsonClasses = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] |= kStringStop;
  t['"'] |= kStringStop | kNesting;
  t['\\'] |= kStringStop;
  for (unsigned char c : {' ', '\t', '\n', '\r'}) t[c] |= kWhitespace | kScalarEnd;
  for (unsigned char c : {',', '}', ']'}) t[c] |= kScalarEnd;
  for (unsigned char c : {'{', '[', '}', ']'}) t[c] |= kNesting;
  return t;
}();

bool isJson(char c, std::uint8_t classes) {
  return (kJsonClasses[static_cast<unsigned char>(c)] & classes) != 0;
}

enum class JsonResult { kFound, kAbsent, kWrongType, kMalformed, kTruncated };

// A string as it stands between its quotes. When escaped (it holds a
// backslash) its text is not its value: JsonScanner::unescape gives that.
struct JsonString {
  std::string_view raw;
  bool escaped = false;
};

// Scans a JSON object for the first top-level member `name` whose value is a
// string or, when numbers is set, a number (taken as written). Never
// recursive: nested values are skipped with a depth count, so deep nesting
// costs nothing but time linear in the input. kTruncated means the input
// ended before the answer was known. Member names are compared as they
// stand when they have no escapes, and unescaped on the fly otherwise.
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s) : s_(s) {}

  // On kFound, *value is a view into the input, or into *scratch when the
  // string has escapes (it is unescaped there).
  JsonResult findMember(std::string_view name, bool numbers, std::string* scratch,
                        std::string_view* value) {
    skipWs();
    if (atEnd()) return JsonResult::kTruncated;
    if (s_[i_++] != '{') return JsonResult::kMalformed;
    skipWs();
    if (atEnd()) return JsonResult::kTruncated;
    if (s_[i_] == '}') return JsonResult::kAbsent;
    for (;;) {
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (s_[i_] != '"') return JsonResult::kMalformed;
      JsonString key;
      if (JsonResult r = readString(&key); r != JsonResult::kFound) return r;
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (s_[i_++] != ':') return JsonResult::kMalformed;
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (equals(key, name)) {
        char c = s_[i_];
        if (c == '"') {
          JsonString v;
          if (JsonResult r = readString(&v); r != JsonResult::kFound) return r;
          if (!v.escaped) {
            *value = v.raw;
            return JsonResult::kFound;
          }
          scratch->clear();
          scratch->reserve(v.raw.size());  // unescaping never lengthens
          unescape(v.raw, [scratch](std::string_view piece) {
            scratch->append(piece);
            return true;
          });
          *value = *scratch;
          return JsonResult::kFound;
        }
        if (c == '-' || (c >= '0' && c <= '9')) {
          if (!numbers) return JsonResult::kWrongType;
          return readNumber(value);
        }
        return JsonResult::kWrongType;
      }
      if (JsonResult r = skipValue(); r != JsonResult::kFound) return r;
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      char c = s_[i_++];
      if (c == '}') return JsonResult::kAbsent;
      if (c != ',') return JsonResult::kMalformed;
    }
  }

 private:
  bool atEnd() const { return i_ >= s_.size(); }

  // The hot loops, over local pointers: a store through i_ on every byte
  // could alias the input for the compiler.
  void skipWs() {
    const char* p = s_.data() + i_;
    const char* end = s_.data() + s_.size();
    while (p != end && isJson(*p, kWhitespace)) ++p;
    i_ = static_cast<std::size_t>(p - s_.data());
  }
  // Steps over the bytes of none of `classes`.
  void skipUntil(std::uint8_t classes) {
    const char* p = s_.data() + i_;
    const char* end = s_.data() + s_.size();
    while (p != end && !isJson(*p, classes)) ++p;
    i_ = static_cast<std::size_t>(p - s_.data());
  }

  static int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  // Four hex digits at p, known to be there.
  static std::uint32_t hex4(const char* p) {
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) v = v * 16 + static_cast<std::uint32_t>(hexValue(p[k]));
    return v;
  }

  // Four hex digits at i_; -1 malformed, -2 truncated.
  long readHex4() {
    if (s_.size() - i_ < 4) return -2;
    for (int k = 0; k < 4; ++k) {
      if (hexValue(s_[i_ + k]) < 0) return -1;
    }
    long v = hex4(s_.data() + i_);
    i_ += 4;
    return v;
  }

  static constexpr std::string_view kEscaped = "\"\\/bfnrt";
  static constexpr std::string_view kPlain = "\"\\/\b\f\n\r\t";

  // Just after a backslash: checks one escape and steps over it.
  JsonResult skipEscape() {
    if (atEnd()) return JsonResult::kTruncated;
    char e = s_[i_++];
    if (e != 'u')
      return kEscaped.find(e) == std::string_view::npos ? JsonResult::kMalformed
                                                        : JsonResult::kFound;
    long hi = readHex4();
    if (hi < 0) return hi == -2 ? JsonResult::kTruncated : JsonResult::kMalformed;
    if (hi >= 0xD800 && hi <= 0xDBFF) {
      // A high surrogate needs "\uDC00".."\uDFFF" right after it.
      if (s_.size() - i_ < 2) return JsonResult::kTruncated;
      if (s_[i_] != '\\' || s_[i_ + 1] != 'u') return JsonResult::kMalformed;
      i_ += 2;
      long lo = readHex4();
      if (lo < 0) return lo == -2 ? JsonResult::kTruncated : JsonResult::kMalformed;
      if (lo < 0xDC00 || lo > 0xDFFF) return JsonResult::kMalformed;
    } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
      return JsonResult::kMalformed;
    }
    return JsonResult::kFound;
  }

  // At '"'. Steps over the string, checking its escapes; *out (unless
  // nullptr) gets its raw text.
  JsonResult readString(JsonString* out) {
    const std::size_t start = ++i_;
    bool escaped = false;
    for (;;) {
      skipUntil(kStringStop);
      if (atEnd()) return JsonResult::kTruncated;
      char c = s_[i_++];
      if (c == '"') break;
      if (c != '\\') return JsonResult::kMalformed;  // a control character
      escaped = true;
      if (JsonResult r = skipEscape(); r != JsonResult::kFound) return r;
    }
    if (out) *out = {s_.substr(start, i_ - 1 - start), escaped};
    return JsonResult::kFound;
  }

  static std::size_t encodeUtf8(std::uint32_t cp, char* out) {
    if (cp < 0x80) {
      out[0] = static_cast<char>(cp);
      return 1;
    }
    if (cp < 0x800) {
      out[0] = static_cast<char>(0xC0 | (cp >> 6));
      out[1] = static_cast<char>(0x80 | (cp & 0x3F));
      return 2;
    }
    if (cp < 0x10000) {
      out[0] = static_cast<char>(0xE0 | (cp >> 12));
      out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out[2] = static_cast<char>(0x80 | (cp & 0x3F));
      return 3;
    }
    out[0] = static_cast<char>(0xF0 | (cp >> 18));
    out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[3] = static_cast<char>(0x80 | (cp & 0x3F));
    return 4;
  }

  // The value of a string readString accepted, in non-empty pieces to
  // emit(piece), which returns false to stop early. Returns false when
  // stopped.
  template <class Emit>
  static bool unescape(std::string_view raw, Emit&& emit) {
    std::size_t i = 0;
    while (i < raw.size()) {
      std::size_t backslash = raw.find('\\', i);
      std::size_t end = backslash == std::string_view::npos ? raw.size() : backslash;
      if (end > i && !emit(raw.substr(i, end - i))) return false;
      if (end == raw.size()) break;
      char e = raw[backslash + 1];
      i = backslash + 2;
      char bytes[4];
      std::size_t n = 1;
      if (e == 'u') {
        std::uint32_t cp = hex4(raw.data() + i);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {  // "\uDC00".."\uDFFF" follows
          cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(raw.data() + i + 2) - 0xDC00);
          i += 6;
        }
        n = encodeUtf8(cp, bytes);
      } else {
        bytes[0] = kPlain[kEscaped.find(e)];
      }
      if (!emit(std::string_view(bytes, n))) return false;
    }
    return true;
  }

  // Is the value of s the text `name`?
  static bool equals(const JsonString& s, std::string_view name) {
    if (!s.escaped) return s.raw == name;
    if (s.raw.size() < name.size()) return false;  // unescaping never lengthens
    std::size_t at = 0;
    return unescape(s.raw,
                    [&](std::string_view piece) {
                      if (piece.size() > name.size() - at ||
                          std::memcmp(name.data() + at, piece.data(), piece.size()) != 0) {
                        return false;
                      }
                      at += piece.size();
                      return true;
                    }) &&
           at == name.size();
  }

  static bool isNumberChar(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  }

  // At '-' or a digit. Taken as written; the JSON grammar of numbers is not
  // checked beyond the character set (a key only has to be stable).
  JsonResult readNumber(std::string_view* out) {
    std::size_t start = i_;
    while (!atEnd() && isNumberChar(s_[i_])) ++i_;
    if (atEnd()) return JsonResult::kTruncated;
    *out = s_.substr(start, i_ - start);
    return JsonResult::kFound;
  }

  // Skips one value of any type. Brackets are counted, not matched.
  JsonResult skipValue() {
    char c = s_[i_];
    if (c == '"') return readString(nullptr);
    if (c != '{' && c != '[') {
      std::size_t start = i_;
      skipUntil(kScalarEnd);
      if (atEnd()) return JsonResult::kTruncated;
      return i_ > start ? JsonResult::kFound : JsonResult::kMalformed;
    }
    std::size_t depth = 0;
    for (;;) {
      skipUntil(kNesting);
      if (atEnd()) return JsonResult::kTruncated;
      c = s_[i_];
      if (c == '"') {
        if (JsonResult r = readString(nullptr); r != JsonResult::kFound) return r;
        continue;
      }
      ++i_;
      if (c == '{' || c == '[') {
        ++depth;
      } else if (--depth == 0) {
        return JsonResult::kFound;
      }
    }
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Calls use(value) with the value of `claim` in the payload of JWT `token`
// and returns what it returns; returns false without calling it when the
// token has no such claim. The value lives only during the call: it is a
// view into this frame's decoded payload or into *scratch.
template <class Use>
bool withJwtClaim(std::string_view token, std::string_view claim, std::string* scratch, Use&& use) {
  if (token.size() > kMaxJwtBytes) return false;
  std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return false;
  std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return false;
  if (token.find('.', dot2 + 1) != std::string_view::npos) return false;  // JWE or junk
  std::string_view jose = token.substr(0, dot1);
  if (jose.empty() || !std::all_of(jose.begin(), jose.end(), [](char c) {
        return base64UrlValue(c) != kNotBase64 || c == '=';
      })) {
    return false;  // no JOSE header, or another auth scheme ("Token x.y.z")
  }
  std::string_view payload = token.substr(dot1 + 1, dot2 - dot1 - 1);
  if (payload.empty()) return false;
  // 48 KiB of a worker thread's stack (std::thread's, megabytes), left
  // uninitialized: only the decoded bytes are read.
  char json[kMaxJwtPayloadBytes];
  std::optional<std::size_t> size = base64UrlDecode(payload, json);
  if (!size) return false;
  JsonScanner scanner(std::string_view(json, *size));
  std::string_view value;
  if (scanner.findMember(claim, /*numbers=*/true, scratch, &value) != JsonResult::kFound) {
    return false;
  }
  return use(value);
}

// "Bearer <token>", scheme in any case, one or more spaces or tabs after it.
std::string_view stripBearer(std::string_view v) {
  constexpr std::string_view kBearer = "bearer";
  if (v.size() > kBearer.size() && iequals(v.substr(0, kBearer.size()), kBearer) &&
      isOws(v[kBearer.size()])) {
    return trimOws(v.substr(kBearer.size()));
  }
  return v;
}

}  // namespace

// --- specs ------------------------------------------------------------------

std::optional<KeySpec> parseKeySpec(std::string_view spec, std::string* why) {
  auto fail = [&](std::string msg) -> std::optional<KeySpec> {
    if (why) *why = std::move(msg);
    return std::nullopt;
  };
  auto quoted = [](std::string_view s) { return "\"" + std::string(s) + "\""; };
  KeySpec k;
  if (spec == "engineio_sid") {
    k.source = Source::kEngineIoSid;
    return k;
  }
  if (spec == "client_ip") {
    k.source = Source::kClientIp;
    return k;
  }
  std::size_t colon = spec.find(':');
  std::string_view source = spec.substr(0, colon);
  std::string_view rest =
      colon == std::string_view::npos ? std::string_view{} : spec.substr(colon + 1);
  if (source == "cookie" || source == "header" || source == "query") {
    if (colon == std::string_view::npos || rest.empty()) {
      return fail(quoted(spec) + ": " + std::string(source) + " needs a name, e.g. \"" +
                  std::string(source) + ":NAME\"");
    }
    if (source == "query") {
      if (!isQueryName(rest))
        return fail(quoted(spec) + ": bad query parameter name " + quoted(rest));
      k.source = Source::kQuery;
      k.name = std::string(rest);
    } else if (!isToken(rest)) {
      return fail(quoted(spec) + ": bad " + std::string(source) + " name " + quoted(rest));
    } else if (source == "cookie") {
      k.source = Source::kCookie;
      k.name = std::string(rest);
    } else {
      k.source = Source::kHeader;
      k.name = toLower(rest);
    }
    return k;
  }
  if (source == "jwt") {
    // jwt:(cookie|header):NAME:CLAIM
    std::size_t c2 = rest.find(':');
    std::string_view where = rest.substr(0, c2);
    std::string_view after =
        c2 == std::string_view::npos ? std::string_view{} : rest.substr(c2 + 1);
    std::size_t c3 = after.find(':');
    std::string_view name = after.substr(0, c3);
    std::string_view claim =
        c3 == std::string_view::npos ? std::string_view{} : after.substr(c3 + 1);
    if ((where != "cookie" && where != "header") || c2 == std::string_view::npos ||
        c3 == std::string_view::npos) {
      return fail(quoted(spec) + ": expected jwt:cookie:NAME:CLAIM or jwt:header:NAME:CLAIM");
    }
    if (!isToken(name))
      return fail(quoted(spec) + ": bad " + std::string(where) + " name " + quoted(name));
    if (claim.empty() || hasControl(claim))
      return fail(quoted(spec) + ": bad claim " + quoted(claim));
    k.source = where == "cookie" ? Source::kJwtCookie : Source::kJwtHeader;
    k.name = where == "cookie" ? std::string(name) : toLower(name);
    k.claim = std::string(claim);
    return k;
  }
  return fail(quoted(spec) +
              ": unknown key source; expected engineio_sid, client_ip, cookie:NAME, header:NAME, "
              "query:NAME, jwt:cookie:NAME:CLAIM or jwt:header:NAME:CLAIM");
}

namespace {

// keySpecText(spec) appended to *out, with room made for `extra` more bytes:
// makeKey builds a key in one allocation.
void appendKeySpecText(const KeySpec& spec, std::size_t extra, std::string* out) {
  std::string_view head = "?";
  bool named = false;
  bool jwt = false;
  switch (spec.source) {
    case Source::kEngineIoSid:
      head = "engineio_sid";
      break;
    case Source::kClientIp:
      head = "client_ip";
      break;
    case Source::kCookie:
      head = "cookie:";
      named = true;
      break;
    case Source::kHeader:
      head = "header:";
      named = true;
      break;
    case Source::kQuery:
      head = "query:";
      named = true;
      break;
    case Source::kJwtCookie:
      head = "jwt:cookie:";
      named = jwt = true;
      break;
    case Source::kJwtHeader:
      head = "jwt:header:";
      named = jwt = true;
      break;
  }
  out->reserve(out->size() + head.size() + (named ? spec.name.size() : 0) +
               (jwt ? 1 + spec.claim.size() : 0) + extra);
  out->append(head);
  if (named) out->append(spec.name);
  if (jwt) out->append(":").append(spec.claim);
}

// The end of extractKey: is `value` a key's, and then the key.
bool setKey(const KeySpec& spec, std::string_view value, std::string* out) {
  if (value.empty() || value.size() > kMaxKeyValueBytes) return false;
  *out = makeKey(spec, value);
  return true;
}

}  // namespace

std::string keySpecText(const KeySpec& spec) {
  std::string text;
  appendKeySpecText(spec, 0, &text);
  return text;
}

std::string makeKey(const KeySpec& spec, std::string_view value) {
  std::string key;
  appendKeySpecText(spec, 1 + value.size(), &key);
  key.push_back('=');
  key.append(value);
  return key;
}

std::optional<std::string_view> queryParam(std::string_view query, std::string_view name) {
  query = query.substr(0, query.find('#'));
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    std::size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
  }
  return std::nullopt;
}

bool extractKey(const KeySpec& spec, const RequestView& req, std::string* out) {
  std::string value_buf;  // for a claim that is unescaped, not a view into req
  std::optional<std::string_view> value;
  switch (spec.source) {
    case Source::kEngineIoSid:
      if (queryParam(req.query, "EIO")) value = queryParam(req.query, "sid");
      break;
    case Source::kCookie:
      value = findCookie(req.headers, spec.name);
      break;
    case Source::kHeader:
      value = findHeader(req.headers, spec.name);
      break;
    case Source::kQuery:
      value = queryParam(req.query, spec.name);
      break;
    case Source::kJwtCookie:
    case Source::kJwtHeader: {
      std::optional<std::string_view> token = spec.source == Source::kJwtCookie
                                                  ? findCookie(req.headers, spec.name)
                                                  : findHeader(req.headers, spec.name);
      if (!token) return false;
      if (spec.source == Source::kJwtHeader) token = stripBearer(*token);
      // The claim may be a view into withJwtClaim's frame: the key is made there.
      return withJwtClaim(*token, spec.claim, &value_buf,
                          [&](std::string_view claim) { return setKey(spec, claim, out); });
    }
    case Source::kClientIp:
      value = req.client_ip;
      break;
  }
  return value && setKey(spec, *value, out);
}

bool isEngineIoHandshake(const RequestView& req) {
  if (req.method != "GET") return false;
  if (!queryParam(req.query, "EIO")) return false;
  if (queryParam(req.query, "transport") != std::optional<std::string_view>("polling"))
    return false;
  std::optional<std::string_view> sid = queryParam(req.query, "sid");
  return !sid || sid->empty();
}

// --- Engine.IO handshake sniffer --------------------------------------------

void EngineIoSidSniffer::feed(std::string_view chunk) {
  if (state_ != kNeedMore) return;
  std::size_t n = std::min(chunk.size(), kMaxBytes - size_);
  if (n == 0 && !chunk.empty()) {
    state_ = kNotHandshake;
    return;
  }
  if (n) std::memcpy(buf_ + size_, chunk.data(), n);  // an empty view may have no data()
  size_ += n;
  scan();
  if (state_ == kNeedMore && size_ == kMaxBytes) state_ = kNotHandshake;
}

void EngineIoSidSniffer::finish() {
  if (state_ == kNeedMore) state_ = kNotHandshake;
}

// Rescans the whole (<= 512 byte) buffer on every feed: simpler than a
// resumable parser, and bounded.
void EngineIoSidSniffer::scan() {
  std::string_view s(buf_, size_);
  std::size_t pos = 0;
  constexpr std::size_t kMaxDigits = 10;
  if (s.empty()) return;
  if (s[0] == '\0') {
    // EIO 3 binary payload: 0x00 (string), length as digit bytes, 0xFF.
    pos = 1;
    while (pos < s.size() && static_cast<unsigned char>(s[pos]) <= 9) ++pos;
    if (pos == s.size()) {
      if (pos - 1 > kMaxDigits) state_ = kNotHandshake;
      return;
    }
    if (pos == 1 || pos - 1 > kMaxDigits || static_cast<unsigned char>(s[pos]) != 0xFF) {
      state_ = kNotHandshake;
      return;
    }
    ++pos;
  } else if (s[0] >= '0' && s[0] <= '9') {
    // EIO 4 "0{", or EIO 3 text framing "<length>:0{".
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos > kMaxDigits + 1) {
      state_ = kNotHandshake;
      return;
    }
    if (pos == s.size()) return;
    if (s[pos] == ':') {
      ++pos;
    } else if (s[pos] == '{' && pos == 1 && s[0] == '0') {
      pos = 0;
    } else {
      state_ = kNotHandshake;
      return;
    }
  } else {
    state_ = kNotHandshake;
    return;
  }
  // The open packet: type '0', then its JSON.
  if (pos == s.size()) return;
  if (s[pos] != '0') {
    state_ = kNotHandshake;
    return;
  }
  ++pos;
  if (pos == s.size()) return;
  if (s[pos] != '{') {
    state_ = kNotHandshake;
    return;
  }
  std::string scratch;
  std::string_view sid;
  JsonScanner scanner(s.substr(pos));
  switch (scanner.findMember("sid", /*numbers=*/false, &scratch, &sid)) {
    case JsonResult::kTruncated:
      return;
    case JsonResult::kFound:
      if (!sid.empty() && sid.size() <= kMaxKeyValueBytes) {
        sid_.assign(sid);
        state_ = kFound;
        return;
      }
      state_ = kNotHandshake;
      return;
    default:
      state_ = kNotHandshake;
      return;
  }
}

// --- cookies and pins ---------------------------------------------------------

namespace {

std::string hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string r;
  r.reserve(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    r.push_back(kDigits[p[i] >> 4]);
    r.push_back(kDigits[p[i] & 0xF]);
  }
  return r;
}

}  // namespace

std::string makeAffinityCookieValue() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return {};
  return hex(bytes, sizeof bytes);
}

std::string setCookieHeader(std::string_view name, std::string_view value, std::int64_t max_age_ms,
                            bool secure) {
  std::string h;
  h.reserve(name.size() + value.size() + 80);
  h.append(name).append("=").append(value).append("; Path=/");
  if (max_age_ms > 0) {
    h.append("; Max-Age=").append(std::to_string(max_age_ms / 1000 + (max_age_ms % 1000 != 0)));
  }
  h.append("; HttpOnly; SameSite=Lax");
  if (secure) h.append("; Secure");
  return h;
}

// SHA-256 fetched from its provider once, and one digest context per
// thread: EVP_Digest with EVP_sha256() fetches the implementation (under a
// lock) and allocates a context on every call, and this runs per request.
std::string pinStoreKey(std::string_view key) {
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  struct Ctx {
    EVP_MD_CTX* p = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(p); }
  };
  thread_local Ctx ctx;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (!sha256 || !ctx.p || EVP_DigestInit_ex2(ctx.p, sha256, nullptr) != 1 ||
      EVP_DigestUpdate(ctx.p, key.data(), key.size()) != 1 || EVP_DigestFinal_ex(ctx.p, md, &md_len) != 1 ||
      md_len < 16) {
    return {};
  }
  return "tether:pin:" + hex(md, 16);
}

// --- test hooks ----------------------------------------------------------------

namespace detail {

std::optional<std::string> base64UrlDecodeForTest(std::string_view in) {
  std::string out(in.size() / 4 * 3 + 2, '\0');
  std::optional<std::size_t> size = base64UrlDecode(in, out);
  if (!size) return std::nullopt;
  out.resize(*size);
  return out;
}

bool jwtClaimForTest(std::string_view token, std::string_view claim, std::string* out) {
  std::string scratch;
  return withJwtClaim(token, claim, &scratch, [out](std::string_view value) {
    out->assign(value);
    return true;
  });
}

int jsonFindMemberForTest(std::string_view json, std::string_view name, bool numbers,
                          std::string* out) {
  std::string scratch;
  std::string_view value;
  JsonResult r = JsonScanner(json).findMember(name, numbers, &scratch, &value);
  if (r == JsonResult::kFound) out->assign(value);
  return static_cast<int>(r);
}

}  // namespace detail

}  // namespace tether::balancer
