// libFuzzer target: affinity keys (balancer/affinity_key.h): extractKey for
// every KeySpec source over a request built from the input, parseKeySpec,
// queryParam, isEngineIoHandshake and pinStoreKey.
//
// Input, as text lines (a trailing CR is dropped):
//   METHOD TARGET             the target is split at its first '?'
//   CLIENT_IP
//   name:value                headers, up to an empty line; in a value,
//   ...                       b64(TEXT) stands for TEXT in base64url, so that
//                             JWTs can be written (and mutated) as JSON
//
//   SPEC                      more key specs to parse and extract, one a line
// Checked, each from what affinity_key.h promises:
//   - a spec that parses prints back to itself (parseKeySpec(keySpecText(s)) == s),
//     and the config loader accepts exactly the specs parseKeySpec does
//     (conf::checkAffinityKey: the worker skips a spec it cannot parse);
//   - extractKey leaves *out untouched on failure, and on success gives
//     makeKey(spec, value) with 0 < |value| <= kMaxKeyValueBytes, the value
//     being what the header says for that source (cookie, header, query,
//     engineio_sid and client_ip from a plain reading of the contract; a JWT
//     claim as a JSON parser reads the payload, when it reads it as JSON);
//   - pinStoreKey is "tether:pin:" and 32 hex characters;
//   - the JWT reader is the one it replaced (tests/fuzz/jwt_reference.h),
//     result for result: for every jwt spec, extractKey gives the key the old
//     reader gives; the base64url decoder, the JSON scanner (its verdict:
//     found, absent, wrong type, malformed, truncated) and the claim reader
//     agree with theirs on the whole input and on each line of it as a
//     payload, the lines and the input also wrapped into valid JWTs so that
//     the scanner sees fuzzer-made JSON whole.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/affinity_key.h"
#include "conf/loader.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/jwt_reference.h"

namespace {

namespace b = tether::balancer;
namespace ref = tether::balancer::reference;
using Source = b::KeySpec::Source;

std::string base64Url(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3F]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3F]);
  return out;
}

// base64url, padding optional; nullopt on any other character, and on a
// length no encoding has: 4n+1 characters leave 6 bits, not a byte (the
// decoder of affinity_key.cc refuses it; reading the 4n characters instead
// let the oracle find a claim in a payload tether rightly calls malformed,
// regress-jwt-payload-nul-after-object-is-no-json).
std::optional<std::string> unBase64Url(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '-'             ? 62
            : c == '_'             ? 63
                                   : -1;
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string expandB64(std::string_view v) {
  std::string out;
  for (;;) {
    std::size_t at = v.find("b64(");
    if (at == std::string_view::npos) break;
    std::size_t end = v.find(')', at + 4);
    if (end == std::string_view::npos) break;
    out.append(v.substr(0, at));
    out += base64Url(v.substr(at + 4, end - at - 4));
    v.remove_prefix(end + 1);
  }
  out.append(v);
  return out;
}

bool isOws(char c) { return c == ' ' || c == '\t'; }
std::string_view trimOws(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}
bool iequals(std::string_view a, std::string_view c) {
  if (a.size() != c.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    char y = c[i] >= 'A' && c[i] <= 'Z' ? static_cast<char>(c[i] + 32) : c[i];
    if (x != y) return false;
  }
  return true;
}

struct Request {
  std::string method, path, query, client_ip;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<b::HeaderField> fields;
  std::vector<std::string> specs;
  b::RequestView view() {
    fields.clear();
    for (auto& [n, v] : headers) fields.push_back({n, v});
    return {method, path, query, fields, client_ip};
  }
};

Request parse(std::string_view in) {
  Request r;
  std::vector<std::string_view> lines;
  for (std::size_t at = 0; at <= in.size();) {
    std::size_t nl = in.find('\n', at);
    if (nl == std::string_view::npos) nl = in.size();
    std::string_view line = in.substr(at, nl - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    at = nl + 1;
  }
  std::size_t i = 0;
  if (i < lines.size()) {
    std::string_view first = lines[i++];
    std::size_t sp = first.find(' ');
    r.method = std::string(first.substr(0, sp));
    std::string_view target =
        sp == std::string_view::npos ? std::string_view{} : first.substr(sp + 1);
    std::size_t q = target.find('?');
    r.path = std::string(target.substr(0, q));
    r.query = q == std::string_view::npos ? "" : std::string(target.substr(q + 1));
  }
  if (i < lines.size()) r.client_ip = std::string(lines[i++]);
  for (; i < lines.size() && !lines[i].empty(); ++i) {
    std::size_t colon = lines[i].find(':');
    std::string_view name = lines[i].substr(0, colon);
    std::string_view value =
        colon == std::string_view::npos ? std::string_view{} : lines[i].substr(colon + 1);
    r.headers.emplace_back(std::string(name), expandB64(value));
  }
  for (++i; i < lines.size(); ++i)
    if (!lines[i].empty()) r.specs.emplace_back(lines[i]);
  return r;
}

// What affinity_key.h says each source reads; nullopt: absent. For JWTs,
// `checked` is false when the reading here cannot be compared.
std::optional<std::string> cookieValue(const Request& r, std::string_view name) {
  for (const auto& [n, v] : r.headers) {
    if (!iequals(n, "cookie")) continue;
    std::string_view rest = v;
    for (;;) {
      std::size_t semi = rest.find(';');
      std::string_view pair = rest.substr(0, semi);
      std::size_t eq = pair.find('=');
      if (eq != std::string_view::npos && trimOws(pair.substr(0, eq)) == name) {
        std::string_view value = trimOws(pair.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
          value = value.substr(1, value.size() - 2);
        return std::string(value);
      }
      if (semi == std::string_view::npos) break;
      rest.remove_prefix(semi + 1);
    }
  }
  return std::nullopt;
}

std::optional<std::string> headerValue(const Request& r, std::string_view name) {
  for (const auto& [n, v] : r.headers)
    if (iequals(n, name)) return std::string(trimOws(v));
  return std::nullopt;
}

std::optional<std::string> queryValue(std::string_view query, std::string_view name) {
  query = query.substr(0, query.find('#'));
  for (;;) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    std::size_t eq = pair.find('=');
    if (!pair.empty() && pair.substr(0, eq) == name)
      return std::string(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1));
    if (amp == std::string_view::npos) return std::nullopt;
    query.remove_prefix(amp + 1);
  }
}

// A JWT claim as nlohmann::json reads the payload. nullopt when it is no
// JSON object with that claim as a string (numbers are "taken as written",
// which a JSON parser does not keep); *comparable says whether the reading
// here decides at all.
std::optional<std::string> jwtClaim(std::string_view token, const std::string& claim,
                                    bool* comparable) {
  *comparable = false;
  std::size_t d1 = token.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  std::size_t d2 = token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return std::nullopt;
  // The JOSE header: base64url characters (then padding), not decoded
  // (affinity_key.h).
  std::string_view jose = token.substr(0, d1);
  while (!jose.empty() && jose.back() == '=') jose.remove_suffix(1);
  if (jose.empty() ||
      jose.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
          std::string_view::npos)
    return std::nullopt;
  // A payload that is no base64url gives no key: the contract says so.
  std::optional<std::string> payload = unBase64Url(token.substr(d1 + 1, d2 - d1 - 1));
  *comparable = true;
  if (!payload) return std::nullopt;
  *comparable = false;
  // nlohmann::json ends its input at a NUL byte; JSON has none outside a
  // string and none unescaped inside one, so a payload with one is no JSON,
  // and no JSON is not judged here (as below when the parser refuses it):
  // tether's scanner stops at the first member of that name and need not
  // read the rest ({"id":"a",<NUL>...} gives "a").
  if (payload->find('\0') != std::string::npos) return std::nullopt;
  // Duplicate members: a parser keeps one of them (nlohmann::json the last,
  // tether's scanner the first); which one is not said. They are counted as
  // the parser reads member names, unescaped: counting the claim's raw text
  // missed {"id":"a","\u0069d":"b"} (tether "a", nlohmann "b", both right).
  std::size_t mentions = 0;
  auto count = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& parsed) {
    if (depth == 1 && ev == nlohmann::json::parse_event_t::key && parsed == claim) ++mentions;
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(*payload, count, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  if (mentions > 1) return std::nullopt;
  auto it = j.find(claim);
  if (it == j.end() || it->is_number()) return std::nullopt;
  *comparable = true;
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

void checkSpec(const b::KeySpec& spec, Request& r) {
  const b::RequestView view = r.view();
  std::string out = "\x01untouched";
  const bool found = b::extractKey(spec, view, &out);
  const std::string prefix = b::keySpecText(spec) + "=";
  std::string value;
  if (found) {
    FUZZ_CHECK(out.compare(0, prefix.size(), prefix) == 0);
    value = out.substr(prefix.size());
    FUZZ_CHECK(!value.empty() && value.size() <= b::kMaxKeyValueBytes);
    FUZZ_CHECK(out == b::makeKey(spec, value));
    std::string pin = b::pinStoreKey(out);
    FUZZ_CHECK(pin.empty() || pin.size() == 11 + 32);
    FUZZ_CHECK(pin.empty() || pin.compare(0, 11, "tether:pin:") == 0);
    for (std::size_t i = 11; i < pin.size(); ++i)
      FUZZ_CHECK((pin[i] >= '0' && pin[i] <= '9') || (pin[i] >= 'a' && pin[i] <= 'f'));
  } else {
    FUZZ_CHECK(out == "\x01untouched");
  }
  // The reading of the contract, where it says exactly what the value is.
  std::optional<std::string> want;
  bool comparable = true;
  switch (spec.source) {
    case Source::kEngineIoSid:
      if (queryValue(r.query, "EIO")) want = queryValue(r.query, "sid");
      break;
    case Source::kCookie:
      want = cookieValue(r, spec.name);
      break;
    case Source::kHeader:
      want = headerValue(r, spec.name);
      break;
    case Source::kQuery:
      want = queryValue(r.query, spec.name);
      break;
    case Source::kClientIp:
      want = r.client_ip;
      break;
    case Source::kJwtCookie:
    case Source::kJwtHeader: {
      std::optional<std::string> token =
          spec.source == Source::kJwtCookie ? cookieValue(r, spec.name) : headerValue(r, spec.name);
      if (!token) break;
      std::string_view t = *token;
      if (spec.source == Source::kJwtHeader && t.size() > 7 && iequals(t.substr(0, 6), "bearer") &&
          isOws(t[6]))
        t = trimOws(t.substr(7));
      want = jwtClaim(t, spec.claim, &comparable);
      // Exactly what the reader tether had before gives.
      std::string old_value;
      bool old_found = ref::jwtClaim(t, spec.claim, &old_value);
      old_found = old_found && !old_value.empty() && old_value.size() <= b::kMaxKeyValueBytes;
      if (found != old_found || (found && value != old_value)) {
        std::fprintf(stderr, "%s: extractKey %s \"%s\", the old reader %s \"%s\"\n", prefix.c_str(),
                     found ? "found" : "found no key", value.c_str(),
                     old_found ? "found" : "found no key", old_value.c_str());
        __builtin_trap();
      }
      break;
    }
  }
  if (want && (want->empty() || want->size() > b::kMaxKeyValueBytes)) want.reset();
  if (!comparable) return;
  if (found != want.has_value() || (found && value != *want)) {
    std::fprintf(stderr, "%s: extractKey %s \"%s\", the contract says %s \"%s\"\n", prefix.c_str(),
                 found ? "found" : "found no key", value.c_str(), want ? "a key" : "none",
                 want ? want->c_str() : "");
    __builtin_trap();
  }
}

// The new decoder, scanner and claim reader against the old ones on `text`,
// for each name in `claims`; `text` is also wrapped into a JWT as its payload.
void checkAgainstReference(std::string_view text, const std::vector<std::string>& claims) {
  std::optional<std::string> got = b::detail::base64UrlDecodeForTest(text);
  std::string want;
  const bool want_ok = ref::base64UrlDecode(text, &want);
  if (got.has_value() != want_ok || (got && *got != want)) {
    std::fprintf(stderr, "base64url \"%.*s\": %s, the old decoder %s\n",
                 static_cast<int>(text.size()), text.data(), got ? "decoded" : "refused",
                 want_ok ? "decoded" : "refused");
    __builtin_trap();
  }
  const std::string token = "eyJhbGciOiJIUzI1NiJ9." + base64Url(text) + ".c2ln";
  for (const std::string& claim : claims) {
    for (bool numbers : {true, false}) {
      std::string got_value = "\x01unset", want_value = "\x01unset";
      const int got_r = b::detail::jsonFindMemberForTest(text, claim, numbers, &got_value);
      const int want_r =
          static_cast<int>(ref::JsonScanner(text).findMember(claim, numbers, &want_value));
      if (got_r != want_r || (got_r == 0 && got_value != want_value)) {
        std::fprintf(stderr,
                     "JSON member \"%s\" (numbers %d): %d \"%s\", the old scanner %d \"%s\"\n",
                     claim.c_str(), numbers, got_r, got_value.c_str(), want_r, want_value.c_str());
        __builtin_trap();
      }
    }
    for (std::string_view t : {text, std::string_view(token)}) {
      std::string got_value, want_value;
      const bool got_ok = b::detail::jwtClaimForTest(t, claim, &got_value);
      const bool want_ok = ref::jwtClaim(t, claim, &want_value);
      if (got_ok != want_ok || (got_ok && got_value != want_value)) {
        std::fprintf(stderr, "JWT claim \"%s\": %s \"%s\", the old reader %s \"%s\"\n",
                     claim.c_str(), got_ok ? "found" : "none", got_value.c_str(),
                     want_ok ? "found" : "none", want_value.c_str());
        __builtin_trap();
      }
    }
  }
}

const char* const kSpecs[] = {
    "engineio_sid",
    "client_ip",
    "cookie:tether_affinity",
    "cookie:token",
    "cookie:sid",
    "header:authorization",
    "header:x-user-id",
    "query:session",
    "query:sid",
    "query:EIO",
    "jwt:cookie:token:id",
    "jwt:cookie:token:sub",
    "jwt:header:authorization:id",
    "jwt:header:authorization:sub",
    "jwt:header:x-token:https://example.com/claims/user",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Request r = parse(std::string_view(reinterpret_cast<const char*>(data), size));
  std::vector<b::KeySpec> specs;
  for (const char* text : kSpecs) specs.push_back(*b::parseKeySpec(text, nullptr));
  for (const std::string& text : r.specs) {
    std::string why;
    std::optional<b::KeySpec> spec = b::parseKeySpec(text, &why);
    if (spec) {
      FUZZ_CHECK(why.empty());
      std::optional<b::KeySpec> again = b::parseKeySpec(b::keySpecText(*spec), nullptr);
      FUZZ_CHECK(again && *again == *spec);
      specs.push_back(*spec);
    } else {
      FUZZ_CHECK(!why.empty());
    }
  }
  for (const b::KeySpec& spec : specs) checkSpec(spec, r);

  // The JWT reader against the old one, on the input and each of its lines
  // taken as a token and as a payload (the sniffer's "sid" too).
  std::vector<std::string> claims = {"sid"};
  for (const b::KeySpec& spec : specs) {
    if (!spec.claim.empty() && std::find(claims.begin(), claims.end(), spec.claim) == claims.end())
      claims.push_back(spec.claim);
  }
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  checkAgainstReference(input, claims);
  for (std::size_t at = 0; at < input.size();) {
    std::size_t nl = input.find('\n', at);
    if (nl == std::string_view::npos) nl = input.size();
    std::string_view line = input.substr(at, nl - at);
    if (std::size_t colon = line.find(':'); colon != std::string_view::npos) {
      checkAgainstReference(line.substr(colon + 1), claims);  // a header's value
    }
    checkAgainstReference(line, claims);
    at = nl + 1;
  }

  const b::RequestView view = r.view();
  const bool handshake = b::isEngineIoHandshake(view);
  std::optional<std::string> sid = queryValue(r.query, "sid");
  FUZZ_CHECK(handshake ==
             (r.method == "GET" && queryValue(r.query, "EIO") &&
              queryValue(r.query, "transport") == std::optional<std::string>("polling") &&
              (!sid || sid->empty())));
  for (std::string_view name : {"sid", "EIO", "transport", "session"}) {
    std::optional<std::string_view> got = b::queryParam(r.query, name);
    std::optional<std::string> want = queryValue(r.query, name);
    FUZZ_CHECK(got.has_value() == want.has_value() && (!got || *got == *want));
  }

  // Last, as it stops the run at the first disagreement: the config loader
  // validates affinity.keys, and the worker skips what parseKeySpec refuses.
  for (const std::string& text : r.specs) {
    const bool balancer_ok = b::parseKeySpec(text, nullptr).has_value();
    const bool conf_ok = tether::conf::checkAffinityKey(text, nullptr);
    if (balancer_ok != conf_ok) {
      std::fprintf(stderr, "key spec \"%s\": parseKeySpec %s it, conf::checkAffinityKey %s it\n",
                   text.c_str(), balancer_ok ? "accepts" : "refuses",
                   conf_ok ? "accepts" : "refuses");
      __builtin_trap();
    }
  }
  return 0;
}
