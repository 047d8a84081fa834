// Parsed HTTP heads as offsets into the buffer they were read into.
//
// Offsets, not pointers: a request head may outgrow its first buffer and be
// moved into a larger one while it is still arriving.
#pragma once

#include <cstdint>
#include <string_view>

namespace tether::proxy {

struct Span {
  std::uint32_t off = 0;
  std::uint32_t len = 0;
  std::string_view in(const char* base) const { return {base + off, len}; }
};

struct HeaderRef {
  Span name;
  Span value;
};

// Scratch for one head being parsed. Borrowed from the worker for the time of
// one parse (and, for requests, until the upstream head is built).
struct HeadScratch {
  static constexpr int kMaxHeaders = 128;
  HeaderRef headers[kMaxHeaders];
  std::uint32_t count = 0;
  Span url;      // request target
  Span status;   // reason phrase
  bool too_many = false;
  bool in_value = false;
  HeadScratch* next_free = nullptr;
  // A piece of a field name at `off` (llhttp may split one across reads).
  // False when the head has more than kMaxHeaders fields.
  bool addName(std::uint32_t off, std::uint32_t len) {
    if (in_value || count == 0) {
      if (count == kMaxHeaders) {
        too_many = true;
        return false;
      }
      headers[count++] = HeaderRef{{off, 0}, {0, 0}};
      in_value = false;
    }
    headers[count - 1].name.len += len;
    return true;
  }
  // A piece of the current field's value. False for a detached piece: llhttp
  // 8 reports an obs-fold continuation that way (the CRLF between the pieces
  // is in neither), and RFC 9112 §5.2 lets us refuse it.
  bool addValue(std::uint32_t off, std::uint32_t len) {
    if (count == 0 || too_many) return true;
    HeaderRef& r = headers[count - 1];
    if (!in_value) {
      r.value.off = off;
      in_value = true;
    } else if (off != r.value.off + r.value.len) {
      return false;
    }
    r.value.len += len;
    return true;
  }
  void reset() {
    count = 0;
    url = {};
    status = {};
    too_many = false;
    in_value = false;
  }
};

// ASCII case-insensitive comparison for header names.
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

// The header names a Connection header lists: hop-by-hop too (RFC 9110
// §7.6.1). Views into the head's buffer; at most 16 are kept.
struct ConnectionTokens {
  std::string_view list[16];
  int count = 0;

  // Adds the comma-separated tokens of one Connection header value.
  void add(std::string_view value) {
    std::size_t i = 0;
    while (i <= value.size() && count < 16) {
      std::size_t j = value.find(',', i);
      if (j == std::string_view::npos) j = value.size();
      std::string_view t = value.substr(i, j - i);
      while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
      if (!t.empty()) list[count++] = t;
      i = j + 1;
    }
  }
  bool names(std::string_view header) const {
    for (int k = 0; k < count; ++k)
      if (iequals(list[k], header)) return true;
    return false;
  }
};

}  // namespace tether::proxy

namespace tether::proxy {

// The header names tether acts on, recognised in one pass (by length first).
enum class HeaderKind : std::uint8_t {
  kOther, kConnection, kKeepAlive, kTe, kTrailer, kUpgrade, kProxyConnection, kTransferEncoding,
  kHost, kXForwardedFor, kXForwardedProto, kXForwardedHost, kXRequestId, kContentType,
};

inline HeaderKind classifyHeader(std::string_view n) {
  switch (n.size()) {
    case 2: return iequals(n, "TE") ? HeaderKind::kTe : HeaderKind::kOther;
    case 4: return iequals(n, "Host") ? HeaderKind::kHost : HeaderKind::kOther;
    case 7:
      if (iequals(n, "Trailer")) return HeaderKind::kTrailer;
      return iequals(n, "Upgrade") ? HeaderKind::kUpgrade : HeaderKind::kOther;
    case 10:
      if (iequals(n, "Connection")) return HeaderKind::kConnection;
      return iequals(n, "Keep-Alive") ? HeaderKind::kKeepAlive : HeaderKind::kOther;
    case 12:
      if (iequals(n, "Content-Type")) return HeaderKind::kContentType;
      return iequals(n, "X-Request-Id") ? HeaderKind::kXRequestId : HeaderKind::kOther;
    case 15: return iequals(n, "X-Forwarded-For") ? HeaderKind::kXForwardedFor : HeaderKind::kOther;
    case 16:
      if (iequals(n, "Proxy-Connection")) return HeaderKind::kProxyConnection;
      return iequals(n, "X-Forwarded-Host") ? HeaderKind::kXForwardedHost : HeaderKind::kOther;
    case 17:
      if (iequals(n, "Transfer-Encoding")) return HeaderKind::kTransferEncoding;
      return iequals(n, "X-Forwarded-Proto") ? HeaderKind::kXForwardedProto : HeaderKind::kOther;
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

}  // namespace tether::proxy
