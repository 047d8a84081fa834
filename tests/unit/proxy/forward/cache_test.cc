// The cache of immutable assets: Cache-Control parsing, which requests and
// responses qualify, conditional requests, and the LRU store's byte bound.
#include "proxy/forward/cache.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace tether::forward {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

http::ResponseHead response(int status, const Fields& fields) {
  http::ResponseHead r;
  r.status = static_cast<std::uint16_t>(status);
  r.framing = http::Framing::kLength;
  for (const auto& [n, v] : fields) r.headers.add(n, v);
  return r;
}

http::RequestHead request(std::uint8_t method, const Fields& fields) {
  http::RequestHead r;
  r.method = method;
  r.target = "/_app/immutable/app.js";
  for (const auto& [n, v] : fields) r.headers.add(n, v);
  return r;
}

CacheControl cc(std::string_view v) {
  CacheControl c;
  parseCacheControl(v, &c);
  return c;
}

TEST(CacheControl, ReadsTheDirectivesASharedCacheUses) {
  CacheControl c = cc("public, max-age=31536000, immutable");
  EXPECT_TRUE(c.is_public);
  EXPECT_TRUE(c.immutable);
  EXPECT_EQ(c.max_age, 31536000);
  EXPECT_EQ(cc("S-MAXAGE=\"60\", Private").s_maxage, 60);
  EXPECT_TRUE(cc("no-store").no_store);
  EXPECT_TRUE(cc("no-cache=\"set-cookie, x\"").no_cache);
  EXPECT_TRUE(cc("private=\"a,b\"").is_private);
  EXPECT_EQ(cc("max-age=99999999999").max_age, 2147483648);
  EXPECT_EQ(cc("max-age=10, max-age=5").max_age, 5);
}

TEST(CacheControl, HostileValuesAreIgnoredOrInvalid) {
  EXPECT_TRUE(cc("max-age=-1").invalid);
  EXPECT_TRUE(cc("max-age=").invalid);
  EXPECT_TRUE(cc("max-age=1e3").invalid);
  EXPECT_TRUE(cc("s-maxage").invalid);
  CacheControl c = cc(",,, ,\"unterminated, max-age=5");
  EXPECT_EQ(c.max_age, -1);  // inside the quoted string
  EXPECT_FALSE(cc("x-public, maxage=5").is_public);
  EXPECT_EQ(cc("").max_age, -1);
}

TEST(CacheLifetime, StorableResponses) {
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "public, max-age=600"}})), 600);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=600, s-maxage=30"}})), 30);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "immutable"}})), kImmutableLifetimeS);
  EXPECT_EQ(storableLifetime(response(200, {{"cache-control", "max-age=600"}, {"Age", "100"}})), 500);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=600"},
                                            {"Vary", "Accept-Encoding"}})),
            600);
}

TEST(CacheLifetime, NotStorableResponses) {
  EXPECT_EQ(storableLifetime(response(200, {})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "public"}})), -1);
  EXPECT_EQ(storableLifetime(response(404, {{"Cache-Control", "max-age=600"}})), -1);
  EXPECT_EQ(storableLifetime(response(206, {{"Cache-Control", "max-age=600"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "private, max-age=600"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "no-store, max-age=600"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "no-cache, max-age=600"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=0"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=x"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=600"}, {"Set-Cookie", "a=b"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=600"}, {"Vary", "Cookie"}})), -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=600"},
                                            {"Vary", "Accept-Encoding, *"}})),
            -1);
  EXPECT_EQ(storableLifetime(response(200, {{"Cache-Control", "max-age=60"}, {"Age", "60"}})), -1);
  http::ResponseHead close = response(200, {{"Cache-Control", "max-age=60"}});
  close.framing = http::Framing::kClose;
  EXPECT_EQ(storableLifetime(close), -1);
}

TEST(CacheRequest, BypassesWhatMustReachTheBackend) {
  conf::Cache c;
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {}), c), CacheBypass::kNone);
  EXPECT_EQ(requestBypass(request(http::kMethodHead, {}), c), CacheBypass::kNone);
  EXPECT_EQ(requestBypass(request(http::kMethodPost, {}), c), CacheBypass::kMethod);
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Cookie", "token=x"}}), c), CacheBypass::kCredentials);
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Authorization", "Bearer x"}}), c),
            CacheBypass::kCredentials);
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Range", "bytes=0-1"}}), c), CacheBypass::kRange);
  http::RequestHead body = request(http::kMethodGet, {});
  body.framing = http::Framing::kLength;
  EXPECT_EQ(requestBypass(body, c), CacheBypass::kBody);
  c.ignore_cookie = true;
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Cookie", "token=x"}}), c), CacheBypass::kNone);
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Authorization", "Bearer x"}}), c),
            CacheBypass::kCredentials);
  c.ignore_authorization = true;
  EXPECT_EQ(requestBypass(request(http::kMethodGet, {{"Authorization", "Bearer x"}}), c), CacheBypass::kNone);
}

TEST(CacheKey, VariantsAndRoutesAreSeparate) {
  EXPECT_NE(cacheKey(0, Coding::kGzip, "/a"), cacheKey(0, Coding::kIdentity, "/a"));
  EXPECT_NE(cacheKey(0, Coding::kGzip, "/a"), cacheKey(1, Coding::kGzip, "/a"));
  EXPECT_NE(cacheKey(0, Coding::kGzip, "/a?x=1"), cacheKey(0, Coding::kGzip, "/a"));
  EXPECT_EQ(cacheKey(0, Coding::kGzip, "/a"), cacheKey(0, Coding::kGzip, "/a"));
}

CacheEntry entry(std::string etag, std::string last_modified) {
  CacheEntry e;
  e.etag = std::move(etag);
  e.last_modified = std::move(last_modified);
  return e;
}

TEST(CacheConditional, IfNoneMatchComparesWeakly) {
  CacheEntry e = entry("W/\"abc\"", "");
  EXPECT_TRUE(notModified(request(http::kMethodGet, {{"If-None-Match", "\"abc\""}}), e));
  EXPECT_TRUE(notModified(request(http::kMethodGet, {{"If-None-Match", "\"x\", W/\"abc\""}}), e));
  EXPECT_TRUE(notModified(request(http::kMethodGet, {{"If-None-Match", "*"}}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-None-Match", "\"abd\""}}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-None-Match", "\"abc\""}}), entry("", "")));
}

TEST(CacheConditional, IfModifiedSinceAgainstLastModified) {
  CacheEntry e = entry("", "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_TRUE(notModified(request(http::kMethodGet, {{"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}}), e));
  EXPECT_TRUE(notModified(request(http::kMethodGet, {{"If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"}}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-Modified-Since", "yesterday"}}), e));
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-Modified-Since", "Sun, 06 Foo 1994 08:49:37 GMT"}}), e));
  // If-None-Match decides when both are present.
  CacheEntry both = entry("\"v1\"", "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_FALSE(notModified(request(http::kMethodGet, {{"If-None-Match", "\"v2\""},
                                                     {"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}}),
                           both));
}

std::shared_ptr<CacheEntry> stored(std::string key, std::size_t body, std::int64_t expires_ms = 1'000'000) {
  auto e = std::make_shared<CacheEntry>();
  e->key = std::move(key);
  e->body.assign(body, 'x');
  e->expires_ms = expires_ms;
  return e;
}

TEST(CacheStore, HitsMissesAndExpiry) {
  CacheStore s(1 << 20, 1 << 16);
  EXPECT_EQ(s.lookup("0|identity|/a", 0), nullptr);
  ASSERT_TRUE(s.insert(stored("0|identity|/a", 100, 5'000)));
  auto hit = s.lookup("0|identity|/a", 4'999);
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(hit->body.size(), 100u);
  EXPECT_EQ(s.lookup("0|identity|/a", 5'000), nullptr);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.bytes(), 0u);
  // An entry being answered from outlives its removal.
  EXPECT_EQ(hit->body.size(), 100u);
}

TEST(CacheStore, RefusesObjectsAboveTheirBound) {
  CacheStore s(1 << 20, 1000);
  EXPECT_FALSE(s.insert(stored("k", 1001)));
  EXPECT_TRUE(s.insert(stored("k", 1000)));
  CacheStore tiny(500, 1000);
  EXPECT_FALSE(tiny.insert(stored("k", 400)));  // with its overhead, above max_size
}

TEST(CacheStore, EvictsTheLeastRecentlyUsedUnderAFlood) {
  const std::size_t max = 64 * 1024;
  CacheStore s(max, 8 * 1024);
  ASSERT_TRUE(s.insert(stored("0|identity|/keep", 1000)));
  for (int i = 0; i < 10'000; ++i) {
    ASSERT_TRUE(s.insert(stored("0|identity|/flood/" + std::to_string(i), 1000 + i % 3000)));
    EXPECT_LE(s.bytes(), max);
    if (i % 10 == 0) {
      EXPECT_NE(s.lookup("0|identity|/keep", 0), nullptr) << i;  // used: stays
    }
  }
  EXPECT_EQ(s.lookup("0|identity|/flood/0", 0), nullptr);
  EXPECT_NE(s.lookup("0|identity|/flood/9999", 0), nullptr);
}

TEST(CacheStore, ReplacingAKeyCountsItOnce) {
  CacheStore s(1 << 20, 1 << 16);
  ASSERT_TRUE(s.insert(stored("k", 100)));
  std::size_t one = s.bytes();
  ASSERT_TRUE(s.insert(stored("k", 100)));
  EXPECT_EQ(s.bytes(), one);
  EXPECT_EQ(s.size(), 1u);
}

TEST(CacheStore, PurgeByTargetPrefix) {
  CacheStore s(1 << 20, 1 << 16);
  s.insert(stored(cacheKey(0, Coding::kIdentity, "/_app/immutable/a.js"), 10));
  s.insert(stored(cacheKey(0, Coding::kGzip, "/_app/immutable/a.js"), 10));
  s.insert(stored(cacheKey(0, Coding::kGzip, "/static/b.css"), 10));
  EXPECT_EQ(s.purge("/_app/"), 2u);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.purge(""), 1u);
  EXPECT_EQ(s.bytes(), 0u);
}

}  // namespace
}  // namespace tether::forward
