// Affinity keys: which value of a request chooses its backend (SPEC.md,
// "Affinity keys"), and the small helpers around pins.
//
// Everything here is pure and loop-free; the proxy calls it on a worker loop
// with string_views into its own read buffer, which must stay valid for the
// duration of the call only (nothing here keeps a view past its return).
// Input is from the network: any byte sequence is handled without a crash,
// an assertion or an unbounded allocation; malformed input means "no key".
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tether::balancer {

struct HeaderField {
  std::string_view name, value;
};

// One request as the proxy parsed it.
struct RequestView {
  std::string_view method;
  std::string_view path;   // without the query
  std::string_view query;  // what follows '?', without it; "" when none
  std::span<const HeaderField> headers;
  std::string_view client_ip;  // the client's address after trusted_proxies
};

// One configured key source, `SOURCE[:NAME[:CLAIM]]`.
struct KeySpec {
  enum class Source { kEngineIoSid, kCookie, kHeader, kQuery, kJwtCookie, kJwtHeader, kClientIp };
  Source source = Source::kClientIp;
  std::string name;   // cookie, header (lower-cased) or query parameter name
  std::string claim;  // jwt only: a top-level claim of the payload
  bool operator==(const KeySpec&) const = default;
};

// Parses one entry of affinity.keys:
//   engineio_sid | client_ip | cookie:NAME | header:NAME | query:NAME |
//   jwt:cookie:NAME:CLAIM | jwt:header:NAME:CLAIM
// NAME must be a token (RFC 9110 tchar) for cookies and headers; a query
// NAME may not hold '&', '=', '#', spaces or controls. CLAIM is the rest of
// the text and may contain ':' (claims are often URIs). Header names are
// case-insensitive and kept lower-cased. On error returns nullopt and, when
// why is not null, says what is wrong (without the config path: the caller
// prefixes it).
std::optional<KeySpec> parseKeySpec(std::string_view spec, std::string* why);

// The canonical text of a spec ("cookie:tether_affinity",
// "jwt:header:authorization:id"); parseKeySpec(keySpecText(s)) == s.
std::string keySpecText(const KeySpec& spec);

// The key for `value` found by `spec`: keySpecText(spec) + "=" + value, so
// that keys from different sources never collide. Used by extractKey, and by
// the proxy for a sid it sniffed from a handshake or a cookie it inserted.
std::string makeKey(const KeySpec& spec, std::string_view value);

// Longest value a key is made from. Longer values give no key (browsers keep
// a cookie under 4 KiB; an Engine.IO sid is 20 characters).
inline constexpr std::size_t kMaxKeyValueBytes = 4096;
// Longest JWT that is decoded. Longer tokens give no key.
inline constexpr std::size_t kMaxJwtBytes = 64 * 1024;

// Finds the key of `req` for `spec`. Returns false (out untouched) when the
// request has none: absent, empty, longer than kMaxKeyValueBytes or
// malformed. On success *out = makeKey(spec, value). Per source:
//   engineio_sid: the first `sid` query parameter, only when the query also
//     has an `EIO` parameter (an Engine.IO request).
//   cookie: the first cookie of that name over all Cookie headers, in order.
//     Pairs are split at ';', spaces and tabs around names and values are
//     dropped (RFC 6265 5.4 leniency), one pair of surrounding DQUOTEs is
//     removed from the value. The first occurrence decides, even when empty.
//   header: the first header of that name (case-insensitive), trimmed.
//   query: the first parameter of that name, raw: neither the name nor the
//     value is percent-decoded (a key is an opaque identifier; a client
//     sends it the same way every time). A '#' ends the query.
//   jwt: the token from the cookie or header (a "Bearer " prefix, any case,
//     is removed from a header); it must be header.payload.signature with
//     a header of base64url characters (so "Token x.y.z", another scheme,
//     is not a JWT); the payload is base64url-decoded (padding optional)
//     and must be a JSON object; the claim is looked up at its top level only; a string value
//     is unescaped, a number is taken as written; other types give no key.
//     The signature is never verified: a key only chooses a backend. The
//     payload is decoded on the caller's stack (up to 48 KiB, for a token of
//     kMaxJwtBytes); nothing is allocated but the key, and the claim's
//     unescaped text when it has escapes.
//   client_ip: the client's address.
bool extractKey(const KeySpec& spec, const RequestView& req, std::string* out);

// The first query parameter `name` (raw, see extractKey), or nullopt when
// absent. Present but empty gives "". Exposed for the proxy and tests.
std::optional<std::string_view> queryParam(std::string_view query, std::string_view name);

// Is this the first request of an Engine.IO session, whose response carries
// the new sid? A GET with an EIO parameter, transport=polling, and no sid
// (an empty sid counts as none, as python-engineio reads it).
bool isEngineIoHandshake(const RequestView& req);

// Reads the sid out of the body of an Engine.IO handshake response,
// `0{"sid":"...","upgrades":[...],"pingInterval":...}` (EIO 4), also with
// the EIO 3 payload framing `96:0{...}` or its binary form
// (0x00 <digits> 0xFF). Feed it the body as it arrives (de-chunked, not
// compressed: a compressed body is not a handshake to it); it looks at the
// first kMaxBytes bytes at most, then settles on kNotHandshake.
// Lives inside the session for one response; not copyable.
class EngineIoSidSniffer {
 public:
  static constexpr std::size_t kMaxBytes = 512;
  enum State { kNeedMore, kFound, kNotHandshake };

  EngineIoSidSniffer() = default;
  EngineIoSidSniffer(const EngineIoSidSniffer&) = delete;
  EngineIoSidSniffer& operator=(const EngineIoSidSniffer&) = delete;

  // Takes the next body bytes. Once the state is not kNeedMore, further
  // chunks are ignored.
  void feed(std::string_view chunk);
  // Call at the end of the body: kNeedMore becomes kNotHandshake.
  void finish();
  State state() const { return state_; }
  // The sid (unescaped), valid while state() == kFound and the sniffer lives.
  std::string_view sid() const { return sid_; }

 private:
  void scan();

  State state_ = kNeedMore;
  std::size_t size_ = 0;
  char buf_[kMaxBytes];
  std::string sid_;
};

// A fresh value for an inserted affinity cookie: 128 random bits from
// OpenSSL's RAND_bytes as 32 lower-case hex characters. Empty when the
// generator fails (then insert no cookie).
std::string makeAffinityCookieValue();

// The value of a Set-Cookie header (without "Set-Cookie: "):
// "name=value; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax[; Secure]".
// Max-Age is max_age_ms rounded up to whole seconds; max_age_ms <= 0 leaves
// it out (a browser-session cookie). name and value are not checked: pass a
// token and a value from makeAffinityCookieValue().
std::string setCookieHeader(std::string_view name, std::string_view value, std::int64_t max_age_ms,
                            bool secure);

// The store key of a pin: "tether:pin:" + the first 32 hex characters of
// SHA-256(key), so raw cookies and tokens are never stored or shared.
// Empty if OpenSSL fails (treat as no key).
std::string pinStoreKey(std::string_view key);

namespace detail {

// Test hooks: tests/fuzz/fuzz_affinity_key.cc holds them, input for input, to
// the code they replaced (tests/fuzz/jwt_reference.h). Not for the proxy.
//
// The payload decoder of jwt keys: the bytes, or nullopt when malformed.
std::optional<std::string> base64UrlDecodeForTest(std::string_view in);
// The claim of a JWT as extractKey reads it, before its checks of the value's
// length: false when there is none, else *out is the value (maybe empty).
bool jwtClaimForTest(std::string_view token, std::string_view claim, std::string* out);
// The JSON scanner of jwt keys and EngineIoSidSniffer on `json`, for the
// top-level member `name`: 0 found (*out is the value), 1 absent, 2 of
// another type, 3 malformed, 4 truncated.
int jsonFindMemberForTest(std::string_view json, std::string_view name, bool numbers,
                          std::string* out);

}  // namespace detail

}  // namespace tether::balancer
