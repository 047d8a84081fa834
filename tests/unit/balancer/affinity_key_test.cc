#include "balancer/affinity_key.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

namespace tether::balancer {
namespace {

using Source = KeySpec::Source;

KeySpec spec(std::string_view text) {
  std::string why;
  std::optional<KeySpec> k = parseKeySpec(text, &why);
  EXPECT_TRUE(k.has_value()) << text << ": " << why;
  return k.value_or(KeySpec{});
}

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

std::string jwt(std::string_view payload_json) {
  return base64Url(R"({"alg":"HS256","typ":"JWT"})") + "." + base64Url(payload_json) +
         ".c2lnbmF0dXJl";
}

// A request with headers; the vector backs the span.
struct Req {
  std::string method = "GET";
  std::string path = "/";
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string client_ip = "198.51.100.7";

  std::vector<HeaderField> fields;
  RequestView view() {
    fields.clear();
    for (auto& [n, v] : headers) fields.push_back({n, v});
    return {method, path, query, fields, client_ip};
  }
};

std::optional<std::string> extract(std::string_view spec_text, Req& r) {
  std::string out = "untouched";
  if (!extractKey(spec(spec_text), r.view(), &out)) {
    EXPECT_EQ(out, "untouched");
    return std::nullopt;
  }
  return out;
}

// --- parseKeySpec -------------------------------------------------------------

TEST(ParseKeySpec, AcceptsEveryForm) {
  EXPECT_EQ(spec("engineio_sid").source, Source::kEngineIoSid);
  EXPECT_EQ(spec("client_ip").source, Source::kClientIp);
  KeySpec c = spec("cookie:tether_affinity");
  EXPECT_EQ(c.source, Source::kCookie);
  EXPECT_EQ(c.name, "tether_affinity");
  KeySpec h = spec("header:X-User-Id");
  EXPECT_EQ(h.source, Source::kHeader);
  EXPECT_EQ(h.name, "x-user-id");  // header names are case-insensitive
  KeySpec q = spec("query:session");
  EXPECT_EQ(q.source, Source::kQuery);
  EXPECT_EQ(q.name, "session");
  KeySpec jc = spec("jwt:cookie:token:id");
  EXPECT_EQ(jc.source, Source::kJwtCookie);
  EXPECT_EQ(jc.name, "token");
  EXPECT_EQ(jc.claim, "id");
  KeySpec jh = spec("jwt:header:Authorization:sub");
  EXPECT_EQ(jh.source, Source::kJwtHeader);
  EXPECT_EQ(jh.name, "authorization");
  EXPECT_EQ(jh.claim, "sub");
}

TEST(ParseKeySpec, ClaimMayContainColons) {
  KeySpec k = spec("jwt:header:Authorization:https://example.com/claims:uid");
  EXPECT_EQ(k.claim, "https://example.com/claims:uid");
}

TEST(ParseKeySpec, TextRoundTrips) {
  for (std::string_view text :
       {"engineio_sid", "client_ip", "cookie:tether_affinity", "header:x-user", "query:sid",
        "jwt:cookie:token:id", "jwt:header:authorization:sub"}) {
    KeySpec k = spec(text);
    EXPECT_EQ(keySpecText(k), text);
    EXPECT_EQ(spec(keySpecText(k)), k);
  }
  EXPECT_EQ(keySpecText(spec("header:X-User")), "header:x-user");
}

TEST(ParseKeySpec, RejectsBadSpecsAndSaysWhy) {
  const std::vector<std::string_view> bads = {"",
                                              "cookie",
                                              "cookie:",
                                              "cookie:a b",
                                              "cookie:a;b",
                                              "cookie:a=b",
                                              "header:",
                                              "header:X:Y",
                                              "header:a b",
                                              "query:",
                                              "query:a&b",
                                              "query:a=b",
                                              "query:a#b",
                                              "jwt",
                                              "jwt:cookie",
                                              "jwt:cookie:token",
                                              "jwt:cookie:token:",
                                              "jwt:cookie::id",
                                              "jwt:body:token:id",
                                              "jwt:header:Auth orization:id",
                                              "engineio_sid:x",
                                              "client_ip:x",
                                              "Cookie:x",
                                              "foo:bar",
                                              "ENGINEIO_SID",
                                              std::string_view("cookie:a\0b", 10)};
  for (std::string_view bad : bads) {
    std::string why;
    EXPECT_FALSE(parseKeySpec(bad, &why).has_value()) << "accepted \"" << bad << "\"";
    EXPECT_FALSE(why.empty()) << bad;
  }
  EXPECT_FALSE(parseKeySpec("nope", nullptr).has_value());  // why is optional
}

// --- engineio_sid -----------------------------------------------------------

TEST(ExtractKey, EngineIoSidFromQuery) {
  Req r;
  r.path = "/ws/socket.io/";
  r.query = "EIO=4&transport=polling&t=Pabc&sid=Xy_z-12";
  EXPECT_EQ(extract("engineio_sid", r), "engineio_sid=Xy_z-12");
  r.query = "sid=first&EIO=4&transport=websocket&sid=second";
  EXPECT_EQ(extract("engineio_sid", r), "engineio_sid=first");  // first wins
}

TEST(ExtractKey, EngineIoSidNeedsEio) {
  Req r;
  r.query = "transport=polling&sid=abc";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIOx=4&sid=abc";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "xEIO=4&sid=abc";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
}

TEST(ExtractKey, EngineIoSidInOddPlacesIsNotAKey) {
  Req r;
  r.path = "/ws/socket.io/sid=abc";
  r.query = "EIO=4&transport=polling";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIO=4&transport=polling#sid=abc";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIO=4&xsid=abc&sidx=def&SID=ghi";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIO=4&sid=";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIO=4&sid";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "EIO=4&sid=&sid=later";  // the first occurrence decides
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = "&&&EIO=4&&sid=ok&";
  EXPECT_EQ(extract("engineio_sid", r), "engineio_sid=ok");
}

TEST(ExtractKey, HostileEngineIoQueriesAreSurvived) {
  Req r;
  // A sid longer than any real one (20 characters) but under the limit is a key;
  // over kMaxKeyValueBytes it is none.
  r.query = "EIO=4&sid=" + std::string(kMaxKeyValueBytes, 's');
  EXPECT_TRUE(extract("engineio_sid", r).has_value());
  r.query = "EIO=4&sid=" + std::string(kMaxKeyValueBytes + 1, 's');
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  // Thousands of repeated sids: the first decides.
  r.query = "EIO=4&transport=polling";
  for (int i = 0; i < 5000; ++i) r.query += "&sid=" + std::to_string(i);
  EXPECT_EQ(extract("engineio_sid", r), "engineio_sid=0");
  // Separators only, a megabyte of them.
  r.query = std::string(1 << 20, '&');
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  r.query = std::string(1 << 20, '=');
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
  // Bytes that are not text: opaque, taken as sent.
  r.query = std::string("EIO=4&sid=\xff\x00\x80", 13);
  std::optional<std::string> k = extract("engineio_sid", r);
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(*k, std::string("engineio_sid=\xff\x00\x80", 16));
  // A sid without EIO, in any position, is no key.
  r.query = "sid=a&sid=b&transport=websocket";
  EXPECT_EQ(extract("engineio_sid", r), std::nullopt);
}

TEST(IsEngineIoHandshake, RepeatedAndOddParameters) {
  Req r;
  r.query = "EIO=4&transport=polling&sid=&sid=abc";  // the first (empty) sid decides
  EXPECT_TRUE(isEngineIoHandshake(r.view()));
  r.query = "EIO=4&transport=websocket&transport=polling";  // the first transport decides
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
  r.query = "EIO&transport=polling";
  (void)isEngineIoHandshake(r.view());  // EIO without a value: either answer, no crash
  r.query = std::string(1 << 20, '&') + "EIO=4&transport=polling";
  EXPECT_TRUE(isEngineIoHandshake(r.view()));
  r.query = "";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
}

// --- cookie -------------------------------------------------------------------

TEST(ExtractKey, CookieValuesWithOddBytes) {
  Req r;
  r.headers = {{"Cookie", std::string("tether_affinity=\xc3\x28\xff; a=1", 24)}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=\xc3\x28\xff");
  r.headers = {{"Cookie", std::string("a=\0; tether_affinity=v", 22)}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=v");
  r.headers = {{"Cookie", "tether_affinity"}, {"Cookie", "=tether_affinity"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
  // Ten thousand cookies before ours.
  std::string many;
  for (int i = 0; i < 10000; ++i) many += "c" + std::to_string(i) + "=v; ";
  r.headers = {{"Cookie", many + "tether_affinity=found"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=found");
}

TEST(ExtractKey, CookieFoundAmongOthers) {
  Req r;
  r.headers = {{"Host", "chat"}, {"Cookie", "a=1; tether_affinity=abc; b=2"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=abc");
}

TEST(ExtractKey, CookieWhitespaceAndQuotes) {
  Req r;
  r.headers = {{"cookie", " \ta=1 ;\t tether_affinity \t=  \"q-v\" ;b=2"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=q-v");
  r.headers = {{"COOKIE", "tether_affinity=\"\""}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
  r.headers = {{"Cookie", "tether_affinity=\""}};  // a lone quote is kept
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=\"");
  r.headers = {{"Cookie", "tether_affinity=a=b=c"}};  // '=' in the value
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=a=b=c");
}

TEST(ExtractKey, CookieAcrossSeveralHeadersFirstWins) {
  Req r;
  r.headers = {{"Cookie", "a=1"},
               {"X", "tether_affinity=no"},
               {"Cookie", "tether_affinity=one"},
               {"Cookie", "tether_affinity=two"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=one");
  r.headers = {{"Cookie", "tether_affinity=one; tether_affinity=two"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=one");
}

TEST(ExtractKey, CookieNamesMatchExactly) {
  Req r;
  r.headers = {{"Cookie",
                "xtether_affinity=1; tether_affinityx=2; Tether_Affinity=3; "
                "tether_affinity; =4"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
}

// The name inside another pair's value, or a pair without '=' before the
// one that counts, is no match: the pair's own name is.
TEST(ExtractKey, CookieNameInValuesOrWithoutEqualsIsPassedOver) {
  Req r;
  r.headers = {{"Cookie", "x=tether_affinity=1; tether_affinity; y=a tether_affinity=2;tether_affinity\t =3"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=3");
  r.headers = {{"Cookie", "tether_affinity"}, {"Cookie", "tether_affinity=4"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=4");
  r.headers = {{"Cookie", "tether_affinit=5; tether_affinity= 6 "}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=6");
}

TEST(ExtractKey, EmptyCookieIsNoKey) {
  Req r;
  r.headers = {{"Cookie", "tether_affinity=; other=1"}, {"Cookie", "tether_affinity=late"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
  r.headers = {{"Cookie", ""}, {"Cookie", ";;;"}, {"Cookie", "   "}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
}

TEST(ExtractKey, HugeCookiesAreSurvived) {
  Req r;
  std::string huge(1 << 20, 'A');
  r.headers = {{"Cookie", "big=" + huge + "; tether_affinity=small"}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), "cookie:tether_affinity=small");
  r.headers = {{"Cookie", "tether_affinity=" + huge}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);  // over kMaxKeyValueBytes
  r.headers = {{"Cookie", "tether_affinity=" + std::string(kMaxKeyValueBytes, 'v')}};
  EXPECT_TRUE(extract("cookie:tether_affinity", r).has_value());
  r.headers = {{"Cookie", std::string(1 << 20, ';')}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
  r.headers = {{"Cookie", std::string(1 << 20, '=')}};
  EXPECT_EQ(extract("cookie:tether_affinity", r), std::nullopt);
}

// --- header -----------------------------------------------------------------

TEST(ExtractKey, HeaderCaseInsensitiveFirstOccurrenceTrimmed) {
  Req r;
  r.headers = {{"x-USER-id", "  u1 \t"}, {"X-User-Id", "u2"}};
  EXPECT_EQ(extract("header:X-User-Id", r), "header:x-user-id=u1");
  EXPECT_EQ(extract("header:x-user-id", r), "header:x-user-id=u1");
  r.headers = {{"X-User-Id", "   "}, {"X-User-Id", "u2"}};
  EXPECT_EQ(extract("header:X-User-Id", r), std::nullopt);
  r.headers = {{"X-User-Idx", "u"}, {"X-User", "u"}};
  EXPECT_EQ(extract("header:X-User-Id", r), std::nullopt);
}

// --- query ------------------------------------------------------------------

TEST(ExtractKey, QueryFirstOccurrenceRaw) {
  Req r;
  r.query = "a=1&room=r%20one&room=two";
  EXPECT_EQ(extract("query:room", r), "query:room=r%20one");  // not percent-decoded
  r.query = "room%3D=x&room";
  EXPECT_EQ(extract("query:room", r), std::nullopt);
  r.query = "";
  EXPECT_EQ(extract("query:room", r), std::nullopt);
}

TEST(QueryParam, PresentEmptyAndAbsent) {
  EXPECT_EQ(queryParam("a=1&b=&c", "a"), "1");
  EXPECT_EQ(queryParam("a=1&b=&c", "b"), "");
  EXPECT_EQ(queryParam("a=1&b=&c", "c"), "");
  EXPECT_EQ(queryParam("a=1&b=&c", "d"), std::nullopt);
  EXPECT_EQ(queryParam("a=1#d=2", "d"), std::nullopt);
  EXPECT_EQ(queryParam("a=x=y", "a"), "x=y");
}

// --- jwt ------------------------------------------------------------------------

TEST(ExtractKey, JwtCookieOpenWebUiUserId) {
  Req r;
  std::string token = jwt(R"({"id":"6f1c2d7e-aaaa-bbbb-cccc-0123456789ab","exp":1900000000})");
  r.headers = {{"Cookie", "token=" + token + "; other=1"}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r),
            "jwt:cookie:token:id=6f1c2d7e-aaaa-bbbb-cccc-0123456789ab");
  EXPECT_EQ(extract("jwt:cookie:token:exp", r), "jwt:cookie:token:exp=1900000000");
  EXPECT_EQ(extract("jwt:cookie:token:sub", r), std::nullopt);
}

TEST(ExtractKey, JwtHeaderBearerPrefixAnyCase) {
  std::string token = jwt(R"({"sub":"user-42"})");
  for (std::string prefix : {"Bearer ", "bearer ", "BEARER\t", "Bearer    ", ""}) {
    Req r;
    r.headers = {{"authorization", "  " + prefix + token + " "}};
    EXPECT_EQ(extract("jwt:header:Authorization:sub", r), "jwt:header:authorization:sub=user-42")
        << "prefix \"" << prefix << "\"";
  }
  Req r;
  r.headers = {{"Authorization", "Basic dXNlcjpwYXNz"}};
  EXPECT_EQ(extract("jwt:header:Authorization:sub", r), std::nullopt);
  r.headers = {{"Authorization", "Bearer sk-1234567890abcdef"}};  // an API key, not a JWT
  EXPECT_EQ(extract("jwt:header:Authorization:sub", r), std::nullopt);
  r.headers = {{"Authorization", "Bearer"}};
  EXPECT_EQ(extract("jwt:header:Authorization:sub", r), std::nullopt);
  r.headers = {{"Authorization", "Token " + token}};  // another scheme
  EXPECT_EQ(extract("jwt:header:Authorization:sub", r), std::nullopt);
}

TEST(ExtractKey, JwtClaimAsNumber) {
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(R"({"uid": -12.5e3 , "n":0})")}};
  EXPECT_EQ(extract("jwt:cookie:token:uid", r), "jwt:cookie:token:uid=-12.5e3");
  EXPECT_EQ(extract("jwt:cookie:token:n", r), "jwt:cookie:token:n=0");
}

TEST(ExtractKey, JwtClaimOfOtherTypesIsNoKey) {
  Req r;
  r.headers = {
      {"Cookie", "token=" + jwt(R"({"b":true,"z":null,"o":{"id":"x"},"a":["x"],"e":""})")}};
  for (std::string_view c : {"b", "z", "o", "a", "e"}) {
    EXPECT_EQ(extract("jwt:cookie:token:" + std::string(c), r), std::nullopt) << c;
  }
}

TEST(ExtractKey, JwtClaimOnlyAtTopLevel) {
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(R"({"user":{"id":"inner","deep":[{"id":"x"}]},)"
                                         R"("s":"{\"id\":\"str\"}","id":"outer"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=outer");
  r.headers = {{"Cookie", "token=" + jwt(R"({"user":{"id":"inner"}})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt);
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"first","id":"second"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=first");
}

TEST(ExtractKey, JwtStringEscapesAreDecoded) {
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(R"({"i\u0064":"a\"b\\c\/d\u00e9\ud83d\ude00"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r),
            "jwt:cookie:token:id=a\"b\\c/d\xC3\xA9\xF0\x9F\x98\x80");
}

TEST(ExtractKey, JwtPaddedPayloadIsAccepted) {
  std::string payload = base64Url(R"({"id":"p"})");
  while (payload.size() % 4) payload.push_back('=');
  Req r;
  r.headers = {{"Cookie", "token=h." + payload + ".s"}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=p");
  r.headers = {{"Cookie", "token=h." + base64Url(R"({"id":"p"})") + "."}};  // alg none
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=p");
}

TEST(ExtractKey, BrokenJwtsAreNoKey) {
  const std::string good = base64Url(R"({"id":"x"})");
  std::vector<std::string> bad = {
      "",
      "onlyonepart",
      "two." + good,
      "h." + good + ".s.extra",      // JWE-like, five parts would be too
      "." + good + ".s",             // no header
      "h..s",                        // no payload
      "h." + good.substr(1) + ".s",  // shifted: not base64 of JSON
      "h.!!!!.s",                    // not base64url
      "h." + good + "+/.s",          // standard alphabet
      "h.A.s",                       // impossible length
      "h." + base64Url("not json") + ".s",
      "h." + base64Url(R"(["id","x"])") + ".s",
      "h." + base64Url(R"({"id":"x)") + ".s",  // truncated string
      "h." + base64Url(R"({"id":12)") + ".s",  // truncated number
      "h." + base64Url(R"({"a":1 "id":"x"})") + ".s",
      "h." + base64Url(R"({"a" 1,"id":"x"})") + ".s",
      "h." + base64Url(R"({"id":"x\q"})") + ".s",
      "h." + base64Url(R"({"id":"\ud83d"})") + ".s",  // lone surrogate
      "h." + base64Url(R"({"id":"\udc00"})") + ".s",
      "h." + base64Url(R"({"id":"\u12"})") + ".s",
      "h." + base64Url(std::string("{\"id\":\"a\nb\"}")) + ".s",  // raw control char
      "h." + base64Url(std::string("{\"id\":\"a\0b\"}", 12)) + ".s",
  };
  for (const std::string& t : bad) {
    Req r;
    r.headers = {{"Cookie", "token=" + t}, {"Authorization", "Bearer " + t}};
    EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt) << t;
    EXPECT_EQ(extract("jwt:header:Authorization:id", r), std::nullopt) << t;
  }
}

TEST(ExtractKey, OddButValidJwtPayloads) {
  Req r;
  // Numbers as written, however large; whitespace everywhere JSON allows it.
  r.headers = {{"Cookie", "token=" + jwt(" \n{ \"id\" :\t1e400 } \r\n")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=1e400");
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":-0})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=-0");
  // An escaped NUL is a legal character of a claim: the key keeps it.
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"a\u0000b"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::string("jwt:cookie:token:id=a\0b", 23));
  // Raw non-ASCII (UTF-8) in a claim.
  r.headers = {{"Cookie", "token=" + jwt("{\"id\":\"\xc3\xa9l\xc3\xa8ve\"}")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=\xc3\xa9l\xc3\xa8ve");
  // Many other members before the claim.
  std::string members = "{";
  for (int i = 0; i < 2000; ++i) members += "\"k" + std::to_string(i) + "\":[1,{\"id\":0}],";
  r.headers = {{"Cookie", "token=" + jwt(members + "\"id\":\"late\"}")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=late");
  // What follows the object is not read (the claim is found first): no crash either way.
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"x"} trailing)")}};
  (void)extract("jwt:cookie:token:id", r);
  // A token cookie in quotes, as some frameworks write it.
  r.headers = {{"Cookie", "token=\"" + jwt(R"({"id":"q"})") + "\""}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=q");
}

TEST(ExtractKey, DeeplyNestedJwtPayloadIsSurvived) {
  std::string deep =
      R"({"a":)" + std::string(200000, '[') + std::string(200000, ']') + R"(,"id":"after"})";
  Req r;
  r.headers = {{"Authorization", "Bearer h." + base64Url(deep) + ".s"}};
  // Over kMaxJwtBytes: not even decoded.
  EXPECT_EQ(extract("jwt:header:Authorization:id", r), std::nullopt);

  std::string nested =
      R"({"a":)" + std::string(20000, '[') + std::string(20000, ']') + R"(,"id":"after"})";
  r.headers = {{"Authorization", "Bearer h." + base64Url(nested) + ".s"}};
  EXPECT_EQ(extract("jwt:header:Authorization:id", r), "jwt:header:authorization:id=after");

  std::string unclosed = R"({"a":)" + std::string(30000, '{');
  r.headers = {{"Authorization", "Bearer h." + base64Url(unclosed) + ".s"}};
  EXPECT_EQ(extract("jwt:header:Authorization:id", r), std::nullopt);
}

TEST(ExtractKey, HugeJwtCookieIsNoKey) {
  std::string token = jwt(R"({"id":"x","pad":")" + std::string(1 << 20, 'p') + "\"}");
  Req r;
  r.headers = {{"Cookie", "token=" + token}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt);
}

TEST(ExtractKey, JwtClaimValueTooLongIsNoKey) {
  Req r;
  r.headers = {
      {"Cookie", "token=" + jwt(R"({"id":")" + std::string(kMaxKeyValueBytes + 1, 'i') + "\"}")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt);
}

TEST(ExtractKey, JwtEscapedMemberNamesMatchTheirValue) {
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(R"({"\u0069d":"x"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=x");
  r.headers = {{"Cookie", "token=" + jwt(R"({"\u0069\u0044":"no","\u0069\u0064":"yes"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=yes");
  // Escaped names that only begin or end like the claim are other members.
  r.headers = {
      {"Cookie", "token=" + jwt(R"({"\u0069dx":"a","x\u0069d":"b","\u0069":"c","id":"d"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=d");
  // Every simple escape: in a name (parseKeySpec refuses controls in a claim) and a value.
  r.headers = {{"Cookie", "token=" + jwt(R"({"a\"\\\/b":"\t\"\\\/\b\f\n\r","id":"-"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:a\"\\/b", r), "jwt:cookie:token:a\"\\/b=\t\"\\/\b\f\n\r");
  // A claim written in UTF-8, its member name as a surrogate pair (either case of hex).
  r.headers = {{"Cookie", "token=" + jwt(R"({"\uD83D\ude00":"smile","\u00e9":"e"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:\xF0\x9F\x98\x80", r),
            "jwt:cookie:token:\xF0\x9F\x98\x80=smile");
  EXPECT_EQ(extract("jwt:cookie:token:\xC3\xA9", r), "jwt:cookie:token:\xC3\xA9=e");
}

TEST(ExtractKey, JwtEscapedValuesAndSurrogatePairs) {
  Req r;
  r.headers = {
      {"Cookie", "token=" + jwt(R"({"id":"\ud83d\ude00x\uD834\uDD1E\u0041\u07ff\uffff"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r),
            "jwt:cookie:token:id=\xF0\x9F\x98\x80x\xF0\x9D\x84\x9E"
            "A\xDF\xBF\xEF\xBF\xBF");
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"\udbff\udfff"})")}};  // the last code point
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=\xF4\x8F\xBF\xBF");
  // A bad escape anywhere before the answer makes the payload malformed,
  // in a member name as in a skipped value.
  for (std::string_view bad :
       {R"({"\ud800":1,"id":"x"})", R"({"\ud83dx":1,"id":"x"})", R"({"a":"\ud83d\u0041","id":"x"})",
        R"({"a":["\x"],"id":"x"})", R"({"id":"\ud83d\ud83d"})", R"({"id":"\uDC00\ud83d"})"}) {
    r.headers = {{"Cookie", "token=" + jwt(bad)}};
    EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt) << bad;
  }
}

TEST(ExtractKey, JwtClaimAfterALargeNestedValue) {
  std::string big = R"({"profile":{"groups":[)";
  for (int i = 0; i < 600; ++i) {
    big +=
        R"({"id":"g)" + std::to_string(i) + R"(","name":"a \"}]\" b","tags":[[1,2],{"x":null}]},)";
  }
  big += R"("last"]},"roles":["a","b"],"id":"after"})";
  ASSERT_GT(big.size(), 30000u);
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(big)}};
  ASSERT_LE(jwt(big).size(), kMaxJwtBytes);
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=after");
  EXPECT_EQ(extract("jwt:cookie:token:name", r), std::nullopt);
}

TEST(ExtractKey, JwtOfExactlyTheMaximumSize) {
  // "h." + payload + ".s": 65532 base64url characters, 49149 bytes of JSON.
  const std::size_t payload_chars = kMaxJwtBytes - 4;
  const std::size_t json_bytes = payload_chars / 4 * 3;
  std::string json = R"({"id":"max","pad":")";
  json += std::string(json_bytes - json.size() - 2, 'p') + "\"}";
  ASSERT_EQ(json.size(), json_bytes);
  std::string token = "h." + base64Url(json) + ".s";
  ASSERT_EQ(token.size(), kMaxJwtBytes);
  Req r;
  r.headers = {{"Authorization", "Bearer " + token}};
  EXPECT_EQ(extract("jwt:header:authorization:id", r), "jwt:header:authorization:id=max");
  // The claim last, read from the end of the buffer.
  json = R"({"pad":")" + std::string(json_bytes - 21, 'p') + R"(","id":"end"})";
  ASSERT_EQ(json.size(), json_bytes);
  r.headers = {{"Authorization", "Bearer h." + base64Url(json) + ".s"}};
  EXPECT_EQ(extract("jwt:header:authorization:id", r), "jwt:header:authorization:id=end");
  // One byte more is not decoded.
  r.headers = {{"Authorization", "Bearer " + token + "s"}};
  EXPECT_EQ(extract("jwt:header:authorization:id", r), std::nullopt);
}

TEST(ExtractKey, JwtPaddingVariants) {
  // {"id":"p"} is 10 bytes: 14 characters, 4n+2, so two '=' make it whole.
  const std::string bare = base64Url(R"({"id":"p"})");
  ASSERT_EQ(bare.size() % 4, 2u);
  // {"id":"pq"} is 11 bytes: 15 characters, 4n+3.
  const std::string bare3 = base64Url(R"({"id":"pq"})");
  ASSERT_EQ(bare3.size() % 4, 3u);
  Req r;
  for (std::string payload : {bare, bare + "=", bare + "==", bare + "===", bare + "====="}) {
    r.headers = {{"Cookie", "token=h=." + payload + ".s"}};
    EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=p") << payload;
  }
  for (std::string payload : {bare3, bare3 + "=", bare3 + "=="}) {
    r.headers = {{"Cookie", "token=h." + payload + ".s"}};
    EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=pq") << payload;
  }
  // '=' anywhere but at the end, a payload of padding only, or padding that
  // leaves 4n+1 characters: malformed.
  for (std::string payload : {bare.substr(0, 4) + "=" + bare.substr(4), "=" + bare,
                              std::string("===="), bare + "=A", bare.substr(0, 13) + "=="}) {
    r.headers = {{"Cookie", "token=h." + payload + ".s"}};
    EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt) << payload;
  }
  // Unused bits after the last byte are not checked: the next character ends it alike.
  std::string odd = bare;
  odd.back() = static_cast<char>(odd.back() + 1);
  r.headers = {{"Cookie", "token=h." + odd + ".s"}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=p");
}

TEST(ExtractKey, JwtNumericClaimsAsWritten) {
  Req r;
  r.headers = {
      {"Cookie", "token=" + jwt(R"({"a":1,"uid":9007199254740993,"f":1.50E+2 ,"w":1-2})")}};
  EXPECT_EQ(extract("jwt:cookie:token:uid", r), "jwt:cookie:token:uid=9007199254740993");
  EXPECT_EQ(extract("jwt:cookie:token:f", r), "jwt:cookie:token:f=1.50E+2");
  EXPECT_EQ(extract("jwt:cookie:token:w", r), "jwt:cookie:token:w=1-2");  // not judged
  // A number that ends the payload may not be complete.
  r.headers = {{"Cookie", "token=" + jwt(R"({"uid":42)")}};
  EXPECT_EQ(extract("jwt:cookie:token:uid", r), std::nullopt);
  r.headers = {{"Cookie", "token=" + jwt(R"({"uid":42})")}};
  EXPECT_EQ(extract("jwt:cookie:token:uid", r), "jwt:cookie:token:uid=42");
}

TEST(ExtractKey, JwtFirstDuplicateWins) {
  Req r;
  r.headers = {{"Cookie", "token=" + jwt(R"({"\u0069d":"first","id":"second"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=first");
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":7,"\u0069d":"second"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=7");
  // The first decides even when it gives no key.
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":true,"id":"second"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt);
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"","id":"second"})")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), std::nullopt);
  // What follows the first is not read, broken or not.
  r.headers = {{"Cookie", "token=" + jwt(R"({"id":"first","id":"\q" ]]] )")}};
  EXPECT_EQ(extract("jwt:cookie:token:id", r), "jwt:cookie:token:id=first");
}

// --- client_ip and collisions -------------------------------------------

TEST(ExtractKey, ClientIp) {
  Req r;
  EXPECT_EQ(extract("client_ip", r), "client_ip=198.51.100.7");
  r.client_ip = "";
  EXPECT_EQ(extract("client_ip", r), std::nullopt);
}

TEST(ExtractKey, KeysOfDifferentSourcesNeverCollide) {
  Req r;
  r.query = "EIO=4&sid=v&v=v";
  r.headers = {{"Cookie", "v=v"}, {"v", "v"}};
  r.client_ip = "v";
  std::set<std::string> keys;
  for (std::string_view s : {"engineio_sid", "cookie:v", "header:v", "query:v", "client_ip"}) {
    std::optional<std::string> k = extract(s, r);
    ASSERT_TRUE(k.has_value()) << s;
    keys.insert(*k);
  }
  EXPECT_EQ(keys.size(), 5u);
  EXPECT_EQ(makeKey(spec("cookie:tether_affinity"), "abc"), "cookie:tether_affinity=abc");
}

// --- Engine.IO handshake ----------------------------------------------------

TEST(IsEngineIoHandshake, OnlyAPollingGetWithoutSid) {
  Req r;
  r.path = "/ws/socket.io/";
  r.query = "EIO=4&transport=polling&t=OxYz";
  EXPECT_TRUE(isEngineIoHandshake(r.view()));
  r.query = "EIO=3&transport=polling&sid=";
  EXPECT_TRUE(isEngineIoHandshake(r.view()));
  r.query = "EIO=4&transport=polling&sid=abc";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
  r.query = "EIO=4&transport=websocket";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
  r.query = "transport=polling";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
  r.query = "EIO=4&transport=pollingx";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
  r.query = "EIO=4&transport=polling";
  r.method = "POST";
  EXPECT_FALSE(isEngineIoHandshake(r.view()));
}

// --- sid sniffer ------------------------------------------------------------

const std::string kEio4Body =
    R"(0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,)"
    R"("pingTimeout":20000,"maxPayload":1000000})";

TEST(EngineIoSidSniffer, FindsSidInOneChunk) {
  EngineIoSidSniffer s;
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNeedMore);
  s.feed(kEio4Body);
  ASSERT_EQ(s.state(), EngineIoSidSniffer::kFound);
  EXPECT_EQ(s.sid(), "lv_VI97HAXpY6yYWAAAC");
}

void expectSidAtEverySplit(const std::string& body, std::string_view sid) {
  for (std::size_t split = 0; split <= body.size(); ++split) {
    EngineIoSidSniffer s;
    s.feed(std::string_view(body).substr(0, split));
    s.feed(std::string_view(body).substr(split));
    ASSERT_EQ(s.state(), EngineIoSidSniffer::kFound) << "split=" << split;
    ASSERT_EQ(s.sid(), sid) << "split=" << split;
  }
  EngineIoSidSniffer bytewise;
  for (char c : body) bytewise.feed(std::string_view(&c, 1));
  EXPECT_EQ(bytewise.state(), EngineIoSidSniffer::kFound);
  EXPECT_EQ(bytewise.sid(), sid);
}

TEST(EngineIoSidSniffer, SameAnswerAtEverySplit) {
  expectSidAtEverySplit(kEio4Body, "lv_VI97HAXpY6yYWAAAC");
}

TEST(EngineIoSidSniffer, ToleratesEio3Framing) {
  std::string packet = R"(0{"sid":"eio3sid","upgrades":["websocket"],"pingInterval":25000})";
  expectSidAtEverySplit(std::to_string(packet.size()) + ":" + packet, "eio3sid");
  // And the binary (XHR2) framing: 0x00, length digits as bytes, 0xFF.
  std::string binary("\x00\x06\x04\xFF", 4);
  expectSidAtEverySplit(binary + packet, "eio3sid");
  // A socket.io CONNECT packet behind the open packet does not matter.
  expectSidAtEverySplit(std::to_string(packet.size()) + ":" + packet + "2:40", "eio3sid");
}

TEST(EngineIoSidSniffer, SidAfterOtherMembersAndEscaped) {
  expectSidAtEverySplit(R"(0{ "upgrades" : ["websocket", "x\"]"], "nested":{"sid":"no"},)"
                        R"( "sid" : "a\/b\u0063" })",
                        "a/bc");
}

TEST(EngineIoSidSniffer, EscapedSidNameAndNumericSid) {
  expectSidAtEverySplit(R"(0{"s\u0069d":"esc\u0061ped","sid":"second"})", "escaped");
  EngineIoSidSniffer s;
  s.feed(R"(0{"sid":12345,"upgrades":[]})");
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNotHandshake);  // a sid is a string
}

TEST(EngineIoSidSniffer, NeedsMoreUntilTheSidIsComplete) {
  EngineIoSidSniffer s;
  s.feed(R"(0{"sid":"abc)");
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNeedMore);
  s.finish();
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNotHandshake);
  EngineIoSidSniffer empty;
  empty.finish();
  EXPECT_EQ(empty.state(), EngineIoSidSniffer::kNotHandshake);
}

TEST(EngineIoSidSniffer, NonHandshakeBodies) {
  std::vector<std::string> bodies = {
      R"({"detail":"Invalid WebSocket upgrade request"})",
      "<!doctype html><html>",
      "\"Invalid session abc\"",
      "40",
      "40{\"sid\":\"x\"}",  // a Socket.IO CONNECT, not the Engine.IO open packet
      "1",
      "2probe",
      R"(0{"upgrades":[],"pingInterval":25000})",
      R"(0{"sid":""})",
      R"(0{"sid":12345})",
      R"(0{"sid":null})",
      R"(0["sid","x"])",
      "0 {\"sid\":\"x\"}",
      "96x0{\"sid\":\"x\"}",
      "96:4{\"sid\":\"x\"}",
      "12345678901234:0{\"sid\":\"x\"}",
      std::string("\x1f\x8b\x08\x00\x00\x00", 6),  // gzip
      std::string("\x00\xFF", 2),
      std::string("\x00\x01\x0A\xFF", 4),
      "0{\"sid\":\"a\nb\"}",
  };
  for (const std::string& body : bodies) {
    EngineIoSidSniffer s;
    s.feed(body);
    s.finish();
    EXPECT_EQ(s.state(), EngineIoSidSniffer::kNotHandshake) << body;
  }
}

TEST(EngineIoSidSniffer, GivesUpAfter512Bytes) {
  std::string body = R"(0{"pad":")" + std::string(600, 'p') + R"(","sid":"late"})";
  EngineIoSidSniffer s;
  s.feed(body.substr(0, 300));
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNeedMore);
  s.feed(body.substr(300));
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kNotHandshake);

  // Byte by byte, it stops at exactly 512.
  EngineIoSidSniffer t;
  std::size_t fed = 0;
  for (char c : body) {
    if (t.state() != EngineIoSidSniffer::kNeedMore) break;
    t.feed(std::string_view(&c, 1));
    ++fed;
  }
  EXPECT_EQ(t.state(), EngineIoSidSniffer::kNotHandshake);
  EXPECT_EQ(fed, EngineIoSidSniffer::kMaxBytes);

  // A sid that ends inside the first 512 bytes is found.
  std::string fits = R"(0{"pad":")" + std::string(480, 'p') + R"(","sid":"ok"})";
  EngineIoSidSniffer u;
  u.feed(fits + std::string(2000, ' '));
  EXPECT_EQ(u.state(), EngineIoSidSniffer::kFound);
  EXPECT_EQ(u.sid(), "ok");
}

TEST(EngineIoSidSniffer, IgnoresInputOnceSettled) {
  EngineIoSidSniffer s;
  s.feed(kEio4Body);
  s.feed("garbage");
  EXPECT_EQ(s.state(), EngineIoSidSniffer::kFound);
  EXPECT_EQ(s.sid(), "lv_VI97HAXpY6yYWAAAC");
  EngineIoSidSniffer n;
  n.feed("<html>");
  n.feed(kEio4Body);
  EXPECT_EQ(n.state(), EngineIoSidSniffer::kNotHandshake);
}

// --- cookies inserted and pins ------------------------------------------------

TEST(AffinityCookie, ValuesAreRandom128BitHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string v = makeAffinityCookieValue();
    ASSERT_EQ(v.size(), 32u);
    for (char c : v) ASSERT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << v;
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(AffinityCookie, SetCookieHeader) {
  EXPECT_EQ(setCookieHeader("tether_affinity", "abc", 3600000, false),
            "tether_affinity=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax");
  EXPECT_EQ(setCookieHeader("tether_affinity", "abc", 3600000, true),
            "tether_affinity=abc; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax; Secure");
  EXPECT_EQ(setCookieHeader("c", "v", 1500, false),
            "c=v; Path=/; Max-Age=2; HttpOnly; SameSite=Lax");  // rounded up
  EXPECT_EQ(setCookieHeader("c", "v", 1, false), "c=v; Path=/; Max-Age=1; HttpOnly; SameSite=Lax");
  EXPECT_EQ(setCookieHeader("c", "v", 0, false), "c=v; Path=/; HttpOnly; SameSite=Lax");
}

TEST(PinStoreKey, HashedTruncatedAndPrefixed) {
  // SHA-256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a3...
  EXPECT_EQ(pinStoreKey("abc"), "tether:pin:ba7816bf8f01cfea414140de5dae2223");
  std::string k = pinStoreKey("cookie:tether_affinity=secret-value");
  EXPECT_EQ(k.size(), 11u + 32u);
  EXPECT_EQ(k.find("secret"), std::string::npos);
  EXPECT_EQ(k, pinStoreKey("cookie:tether_affinity=secret-value"));
  EXPECT_NE(k, pinStoreKey("cookie:tether_affinity=secret-valuf"));
  EXPECT_EQ(pinStoreKey("").size(), 43u);
}

}  // namespace
}  // namespace tether::balancer
