// Header names: one classification, compiled to word compares, and the
// helpers every layer shares (case-insensitive compare, Connection tokens).
// No state, no allocation; safe on any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace tether::http {

// OWS (RFC 9110 §5.6.3): the blanks around a field value.
inline bool blank(char c) { return c == ' ' || c == '\t'; }

// ASCII case-insensitive comparison (header names, DNS names).
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

// The header names tether acts on, recognised in one pass (by length first).
enum class HeaderKind : std::uint8_t {
  kOther, kConnection, kKeepAlive, kTe, kTrailer, kUpgrade, kProxyConnection, kTransferEncoding,
  kHost, kXForwardedFor, kXForwardedProto, kXForwardedHost, kXRequestId, kContentType,
  kContentLength, kContentEncoding, kContentRange, kAuthorization, kProxyAuthorization, kCookie,
  kSetCookie, kExpect, kMaxForwards,
};

namespace detail {
// A lower-case name as a template argument, split at compile time into 8-byte
// words and, for each, the mask with 0x20 under each letter: OR-ing that mask
// folds exactly the two cases of those letters onto the lower one and leaves
// every other byte ('-' included) to compare as it is.
template <std::size_t N>
struct Name {
  static constexpr std::size_t kLen = N - 1;
  static constexpr std::size_t kWords = (kLen + 7) / 8;
  std::uint64_t word[kWords] = {};
  std::uint64_t mask[kWords] = {};
  consteval Name(const char (&s)[N]) {
    for (std::size_t i = 0; i < kLen; ++i) {
      word[i / 8] |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * (i % 8));
      if (s[i] >= 'a' && s[i] <= 'z') mask[i / 8] |= std::uint64_t{0x20} << (8 * (i % 8));
    }
  }
};

// Whether `n`, of the name's length, is that name in any ASCII case.
template <Name L>
inline bool is(std::string_view n) {
  constexpr std::size_t len = decltype(L)::kLen;
  for (std::size_t w = 0; w < decltype(L)::kWords; ++w) {
    std::uint64_t v = 0;
    std::memcpy(&v, n.data() + 8 * w, (w + 1) * 8 <= len ? 8 : len % 8);
    if ((v | L.mask[w]) != L.word[w]) return false;
  }
  return true;
}
}  // namespace detail

// Called for every header of every request and response: by length first,
// then eight bytes at a time.
inline HeaderKind classifyHeader(std::string_view n) {
  using detail::is;
  switch (n.size()) {
    case 2: return is<"te">(n) ? HeaderKind::kTe : HeaderKind::kOther;
    case 4: return is<"host">(n) ? HeaderKind::kHost : HeaderKind::kOther;
    case 6:
      if (is<"cookie">(n)) return HeaderKind::kCookie;
      return is<"expect">(n) ? HeaderKind::kExpect : HeaderKind::kOther;
    case 7:
      if (is<"trailer">(n)) return HeaderKind::kTrailer;
      return is<"upgrade">(n) ? HeaderKind::kUpgrade : HeaderKind::kOther;
    case 10:
      if (is<"connection">(n)) return HeaderKind::kConnection;
      if (is<"set-cookie">(n)) return HeaderKind::kSetCookie;
      return is<"keep-alive">(n) ? HeaderKind::kKeepAlive : HeaderKind::kOther;
    case 12:
      if (is<"content-type">(n)) return HeaderKind::kContentType;
      if (is<"max-forwards">(n)) return HeaderKind::kMaxForwards;
      return is<"x-request-id">(n) ? HeaderKind::kXRequestId : HeaderKind::kOther;
    case 13:
      if (is<"authorization">(n)) return HeaderKind::kAuthorization;
      return is<"content-range">(n) ? HeaderKind::kContentRange : HeaderKind::kOther;
    case 14: return is<"content-length">(n) ? HeaderKind::kContentLength : HeaderKind::kOther;
    case 15: return is<"x-forwarded-for">(n) ? HeaderKind::kXForwardedFor : HeaderKind::kOther;
    case 16:
      if (is<"proxy-connection">(n)) return HeaderKind::kProxyConnection;
      if (is<"content-encoding">(n)) return HeaderKind::kContentEncoding;
      return is<"x-forwarded-host">(n) ? HeaderKind::kXForwardedHost : HeaderKind::kOther;
    case 17:
      if (is<"transfer-encoding">(n)) return HeaderKind::kTransferEncoding;
      return is<"x-forwarded-proto">(n) ? HeaderKind::kXForwardedProto : HeaderKind::kOther;
    case 19: return is<"proxy-authorization">(n) ? HeaderKind::kProxyAuthorization : HeaderKind::kOther;
    default: return HeaderKind::kOther;
  }
}

// Hop-by-hop headers of RFC 9110 §7.6.1 (Upgrade included: the caller keeps
// it when upgrading). Transfer-Encoding is not among them: bodies travel
// with their framing.
inline bool isHopByHop(HeaderKind k) {
  return k == HeaderKind::kConnection || k == HeaderKind::kKeepAlive || k == HeaderKind::kTe ||
         k == HeaderKind::kTrailer || k == HeaderKind::kUpgrade || k == HeaderKind::kProxyConnection;
}

// The header names a Connection header lists: hop-by-hop too (RFC 9110
// §7.6.1). Views into the head's buffer; at most 16 are kept, and close,
// keep-alive and upgrade are not (their fields are hop-by-hop anyway).
struct ConnectionTokens {
  // Left uninitialised: built twice per request, and only [0, count) is read.
  struct Token {
    const char* data;
    std::uint32_t size;
  };
  Token list[16];
  int count = 0;
  bool overflow = false;  // more than 16 options: a caller refuses or closes

  // Adds the comma-separated tokens of one Connection header value.
  void add(std::string_view value) {
    std::size_t i = 0;
    if (count == 16 && !value.empty()) overflow = true;
    // The usual whole value, at once.
    if ((value.size() == 10 && detail::is<"keep-alive">(value)) || (value.size() == 5 && detail::is<"close">(value))) return;
    while (i <= value.size() && count < 16) {
      std::size_t j = value.find(',', i);
      if (j == std::string_view::npos) j = value.size();
      std::string_view t = value.substr(i, j - i);
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      // close, keep-alive and upgrade name no field that is not hop-by-hop
      // already: not kept, so that a list of only those costs no scan.
      bool common = (t.size() == 10 && detail::is<"keep-alive">(t)) || (t.size() == 5 && detail::is<"close">(t)) ||
                    (t.size() == 7 && detail::is<"upgrade">(t));
      if (!t.empty() && !common) list[count++] = Token{t.data(), static_cast<std::uint32_t>(t.size())};
      if (count == 16 && j < value.size()) overflow = true;
      i = j + 1;
    }
  }
  bool names(std::string_view header) const {
    for (int k = 0; k < count; ++k)
      if (iequals(std::string_view(list[k].data, list[k].size), header)) return true;
    return false;
  }
};


// Fields that may not travel in a trailer section (RFC 9110 §6.5.1: framing,
// routing, authentication, content description and hop-by-hop fields), nor be
// carried onward by tether from one.
inline bool forbiddenInTrailer(HeaderKind k) {
  switch (k) {
    case HeaderKind::kConnection: case HeaderKind::kKeepAlive: case HeaderKind::kTe:
    case HeaderKind::kTrailer: case HeaderKind::kUpgrade: case HeaderKind::kProxyConnection:
    case HeaderKind::kTransferEncoding: case HeaderKind::kHost: case HeaderKind::kXForwardedFor:
    case HeaderKind::kXForwardedProto: case HeaderKind::kXForwardedHost: case HeaderKind::kXRequestId:
    case HeaderKind::kContentType: case HeaderKind::kContentLength: case HeaderKind::kContentEncoding:
    case HeaderKind::kContentRange: case HeaderKind::kAuthorization: case HeaderKind::kProxyAuthorization:
    case HeaderKind::kCookie: case HeaderKind::kSetCookie: case HeaderKind::kExpect:
    case HeaderKind::kMaxForwards:
      return true;
    case HeaderKind::kOther:
      return false;
  }
  return true;
}

// Whether a Connection header naming this field would change how the message
// is framed or routed: such options are refused (requests) or ignored
// (responses), never honoured by dropping the field.
inline bool framingOrRouting(HeaderKind k) {
  return k == HeaderKind::kContentLength || k == HeaderKind::kTransferEncoding || k == HeaderKind::kHost;
}

}  // namespace tether::http
