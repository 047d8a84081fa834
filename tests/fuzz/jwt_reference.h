// The JWT claim reader of balancer/affinity_key.cc as it was before its
// payload was decoded into a stack buffer and its JSON scanner compared
// names without copying them: kept verbatim (only moved into this namespace
// and made inline) as the reference fuzz_affinity_key.cc holds the new code
// to, result for result. Test-only; never linked into tether.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "balancer/affinity_key.h"

namespace tether::balancer::reference {

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline int base64UrlValue(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// Unpadded or padded base64url; anything else is malformed.
inline bool base64UrlDecode(std::string_view in, std::string* out) {
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

inline bool jwtClaim(std::string_view token, std::string_view claim, std::string* out) {
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

}  // namespace tether::balancer::reference
