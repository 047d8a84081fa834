#include "balancer/affinity_key.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
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

std::optional<std::string_view> findCookie(std::span<const HeaderField> headers,
                                           std::string_view name) {
  for (const HeaderField& h : headers) {
    if (!iequals(h.name, "cookie")) continue;
    std::string_view rest = h.value;
    while (!rest.empty()) {
      std::size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      rest = semi == std::string_view::npos ? std::string_view{} : rest.substr(semi + 1);
      std::size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;  // no name=value: ignored
      if (trimOws(pair.substr(0, eq)) != name) continue;
      std::string_view value = trimOws(pair.substr(eq + 1));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      return value;
    }
  }
  return std::nullopt;
}

// --- base64url and a small JSON scanner -----------------------------------

int base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Unpadded or padded base64url; anything else is malformed.
bool base64UrlDecode(std::string_view in, std::string* out) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->clear();
  out->reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64UrlValue(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

enum class JsonResult { kFound, kAbsent, kWrongType, kMalformed, kTruncated };

// Scans a JSON object for the first top-level member `name` whose value is a
// string (unescaped into *out) or, when numbers is set, a number (copied as
// written). Never recursive: nested values are skipped with a depth count,
// so deep nesting costs nothing but time linear in the input. kTruncated
// means the input ended before the answer was known.
class JsonScanner {
 public:
  explicit JsonScanner(std::string_view s) : s_(s) {}

  JsonResult findMember(std::string_view name, bool numbers, std::string* out) {
    skipWs();
    if (atEnd()) return JsonResult::kTruncated;
    if (s_[i_++] != '{') return JsonResult::kMalformed;
    skipWs();
    if (atEnd()) return JsonResult::kTruncated;
    if (s_[i_] == '}') return JsonResult::kAbsent;
    std::string key;
    for (;;) {
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (s_[i_] != '"') return JsonResult::kMalformed;
      if (JsonResult r = readString(&key); r != JsonResult::kFound) return r;
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (s_[i_++] != ':') return JsonResult::kMalformed;
      skipWs();
      if (atEnd()) return JsonResult::kTruncated;
      if (key == name) {
        char c = s_[i_];
        if (c == '"') return readString(out);
        if (c == '-' || (c >= '0' && c <= '9')) {
          if (!numbers) return JsonResult::kWrongType;
          return readNumber(out);
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
  void skipWs() {
    while (!atEnd() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  static int hexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }

  static void appendUtf8(std::uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }

  // Four hex digits at i_; -1 malformed, -2 truncated.
  long readHex4() {
    if (s_.size() - i_ < 4) return -2;
    long v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = hexValue(s_[i_ + k]);
      if (h < 0) return -1;
      v = v * 16 + h;
    }
    i_ += 4;
    return v;
  }

  // At '"'. Reads the string, unescaped, into *out (nullptr: just skip it).
  JsonResult readString(std::string* out) {
    if (out) out->clear();
    ++i_;
    while (!atEnd()) {
      char c = s_[i_++];
      if (c == '"') return JsonResult::kFound;
      if (static_cast<unsigned char>(c) < 0x20) return JsonResult::kMalformed;
      if (c != '\\') {
        if (out) out->push_back(c);
        continue;
      }
      if (atEnd()) return JsonResult::kTruncated;
      char e = s_[i_++];
      if (e == 'u') {
        long hi = readHex4();
        if (hi < 0) return hi == -2 ? JsonResult::kTruncated : JsonResult::kMalformed;
        std::uint32_t cp = static_cast<std::uint32_t>(hi);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          // A high surrogate needs "\uDC00".."\uDFFF" right after it.
          if (s_.size() - i_ < 2) return JsonResult::kTruncated;
          if (s_[i_] != '\\' || s_[i_ + 1] != 'u') return JsonResult::kMalformed;
          i_ += 2;
          long lo = readHex4();
          if (lo < 0) return lo == -2 ? JsonResult::kTruncated : JsonResult::kMalformed;
          if (lo < 0xDC00 || lo > 0xDFFF) return JsonResult::kMalformed;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (static_cast<std::uint32_t>(lo) - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return JsonResult::kMalformed;
        }
        if (out) appendUtf8(cp, out);
        continue;
      }
      static constexpr std::string_view kEscaped = "\"\\/bfnrt";
      static constexpr std::string_view kPlain = "\"\\/\b\f\n\r\t";
      std::size_t k = kEscaped.find(e);
      if (k == std::string_view::npos) return JsonResult::kMalformed;
      char plain = kPlain[k];
      if (out) out->push_back(plain);
    }
    return JsonResult::kTruncated;
  }

  static bool isNumberChar(char c) {
    return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
  }

  // At '-' or a digit. Taken as written; the JSON grammar of numbers is not
  // checked beyond the character set (a key only has to be stable).
  JsonResult readNumber(std::string* out) {
    std::size_t start = i_;
    while (!atEnd() && isNumberChar(s_[i_])) ++i_;
    if (atEnd()) return JsonResult::kTruncated;
    out->assign(s_.substr(start, i_ - start));
    return JsonResult::kFound;
  }

  // Skips one value of any type. Brackets are counted, not matched.
  JsonResult skipValue() {
    char c = s_[i_];
    if (c == '"') return readString(nullptr);
    if (c != '{' && c != '[') {
      std::size_t start = i_;
      while (!atEnd() && s_[i_] != ',' && s_[i_] != '}' && s_[i_] != ']' && s_[i_] != ' ' &&
             s_[i_] != '\t' && s_[i_] != '\n' && s_[i_] != '\r') {
        ++i_;
      }
      if (atEnd()) return JsonResult::kTruncated;
      return i_ > start ? JsonResult::kFound : JsonResult::kMalformed;
    }
    std::size_t depth = 0;
    while (!atEnd()) {
      c = s_[i_];
      if (c == '"') {
        if (JsonResult r = readString(nullptr); r != JsonResult::kFound) return r;
        continue;
      }
      ++i_;
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return JsonResult::kFound;
      }
    }
    return JsonResult::kTruncated;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

bool jwtClaim(std::string_view token, std::string_view claim, std::string* out) {
  if (token.size() > kMaxJwtBytes) return false;
  std::size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return false;
  std::size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos) return false;
  if (token.find('.', dot2 + 1) != std::string_view::npos) return false;  // JWE or junk
  std::string_view jose = token.substr(0, dot1);
  if (jose.empty() || !std::all_of(jose.begin(), jose.end(),
                                   [](char c) { return base64UrlValue(c) >= 0 || c == '='; })) {
    return false;  // no JOSE header, or another auth scheme ("Token x.y.z")
  }
  std::string_view payload = token.substr(dot1 + 1, dot2 - dot1 - 1);
  std::string json;
  if (payload.empty() || !base64UrlDecode(payload, &json)) return false;
  JsonScanner scanner(json);
  return scanner.findMember(claim, /*numbers=*/true, out) == JsonResult::kFound;
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

std::string keySpecText(const KeySpec& spec) {
  switch (spec.source) {
    case Source::kEngineIoSid:
      return "engineio_sid";
    case Source::kClientIp:
      return "client_ip";
    case Source::kCookie:
      return "cookie:" + spec.name;
    case Source::kHeader:
      return "header:" + spec.name;
    case Source::kQuery:
      return "query:" + spec.name;
    case Source::kJwtCookie:
      return "jwt:cookie:" + spec.name + ":" + spec.claim;
    case Source::kJwtHeader:
      return "jwt:header:" + spec.name + ":" + spec.claim;
  }
  return "?";
}

std::string makeKey(const KeySpec& spec, std::string_view value) {
  std::string key = keySpecText(spec);
  key.reserve(key.size() + 1 + value.size());
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
  std::string value_buf;  // for values that are decoded, not views into req
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
      if (!jwtClaim(*token, spec.claim, &value_buf)) return false;
      value = value_buf;
      break;
    }
    case Source::kClientIp:
      value = req.client_ip;
      break;
  }
  if (!value || value->empty() || value->size() > kMaxKeyValueBytes) return false;
  *out = makeKey(spec, *value);
  return true;
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
  std::string sid;
  JsonScanner scanner(s.substr(pos));
  switch (scanner.findMember("sid", /*numbers=*/false, &sid)) {
    case JsonResult::kTruncated:
      return;
    case JsonResult::kFound:
      if (!sid.empty() && sid.size() <= kMaxKeyValueBytes) {
        sid_ = std::move(sid);
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

std::string pinStoreKey(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(key.data(), key.size(), md, &md_len, EVP_sha256(), nullptr) != 1 || md_len < 16) {
    return {};
  }
  return "tether:pin:" + hex(md, 16);
}

}  // namespace tether::balancer
