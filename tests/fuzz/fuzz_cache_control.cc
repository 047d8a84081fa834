// The cache's parsers of hostile input (proxy/forward/cache.h): Cache-Control
// values, Vary and Age on a response head, If-None-Match and
// If-Modified-Since against an entry. Input: lines "Name: value"; the first
// half of the lines is a response head, the rest a request head.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/forward/cache.h"
#include "tests/fuzz/fuzz_check.h"

using namespace tether;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  forward::CacheControl cc;
  forward::parseCacheControl(in, &cc);
  FUZZ_CHECK(cc.max_age >= -1 && cc.max_age <= 2'147'483'648);
  FUZZ_CHECK(cc.s_maxage >= -1 && cc.s_maxage <= 2'147'483'648);

  http::ResponseHead resp;
  resp.status = 200;
  resp.framing = http::Framing::kLength;
  http::RequestHead req;
  req.method = http::kMethodGet;
  std::size_t line = 0;
  while (!in.empty()) {
    std::size_t nl = in.find('\n');
    std::string_view l = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    std::size_t colon = l.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon > 60000) continue;
    http::HeaderList& h = (line++ % 2 == 0) ? resp.headers : req.headers;
    h.add(l.substr(0, colon), l.substr(colon + 1));
  }
  std::int64_t life = forward::storableLifetime(resp);
  FUZZ_CHECK(life == -1 || (life > 0 && life <= 2'147'483'648));
  bool has_cc = false, has_cookie = false;
  for (std::size_t i = 0; i < resp.headers.size(); ++i) {
    has_cc |= http::iequals(resp.headers.name(i), "cache-control");
    has_cookie |= resp.headers.kind(i) == http::HeaderKind::kSetCookie;
  }
  FUZZ_CHECK(life == -1 || (has_cc && !has_cookie));
  bool conditional = false;
  for (std::size_t i = 0; i < req.headers.size(); ++i) {
    conditional |= http::iequals(req.headers.name(i), "if-none-match") ||
                   http::iequals(req.headers.name(i), "if-modified-since");
  }
  forward::CacheEntry e;
  for (std::size_t i = 0; i < resp.headers.size(); ++i) {
    if (http::iequals(resp.headers.name(i), "etag")) e.etag = resp.headers.value(i);
    if (http::iequals(resp.headers.name(i), "last-modified")) e.last_modified = resp.headers.value(i);
  }
  FUZZ_CHECK(!forward::notModified(req, e) || conditional);
  conf::Cache c;
  (void)forward::requestBypass(req, c);
  return 0;
}
