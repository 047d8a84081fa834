// Response compression: Accept-Encoding negotiation, which responses are
// eligible, the head a compressed response gets, and encoders whose output
// the reference decoders (libzstd, libbrotlidec, zlib; decode_body.h) turn
// back into the input, whole and after each flush.
#include "proxy/forward/compression.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "proxy/http/h1_decoder.h"
#include "proxy/http/h1_encoder.h"
#include "tests/unit/proxy/forward/decode_body.h"

namespace tether::forward {
namespace {

using conf::Coding;
using http::H1Decoder;

constexpr Coding kAll[] = {Coding::kZstd, Coding::kBrotli, Coding::kGzip};

Coding pick(std::string_view ae) { return negotiate(ae, kAll); }

TEST(Negotiate, ServerPreferenceAmongEquals) {
  EXPECT_EQ(pick("gzip, deflate, br, zstd"), Coding::kZstd);  // Chrome's
  EXPECT_EQ(pick("gzip, deflate, br"), Coding::kBrotli);      // Firefox's, Safari's
  EXPECT_EQ(pick("gzip"), Coding::kGzip);
  EXPECT_EQ(pick("x-gzip"), Coding::kGzip);
  EXPECT_EQ(pick("GZIP"), Coding::kGzip);
  const Coding gzip_first[] = {Coding::kGzip, Coding::kBrotli};
  EXPECT_EQ(negotiate("br, gzip", gzip_first), Coding::kGzip);
}

TEST(Negotiate, QValuesRank) {
  EXPECT_EQ(pick("zstd;q=0.5, gzip;q=0.8"), Coding::kGzip);
  EXPECT_EQ(pick("zstd;q=0.8, gzip;q=0.8, br;q=0.9"), Coding::kBrotli);
  EXPECT_EQ(pick("br ; q=1.000 , zstd;q=0.999"), Coding::kBrotli);
  EXPECT_EQ(pick("gzip;Q=0.1"), Coding::kGzip);  // the parameter name is case-insensitive
}

TEST(Negotiate, ZeroRefuses) {
  EXPECT_EQ(pick("gzip;q=0"), Coding::kIdentity);
  EXPECT_EQ(pick("gzip;q=0.000, br;q=0"), Coding::kIdentity);
  EXPECT_EQ(pick("*;q=0"), Coding::kIdentity);
  EXPECT_EQ(pick("*, zstd;q=0"), Coding::kBrotli);  // named beats the wildcard
  EXPECT_EQ(pick("zstd;q=0, *;q=0.5"), Coding::kBrotli);
}

TEST(Negotiate, Wildcard) {
  EXPECT_EQ(pick("*"), Coding::kZstd);
  EXPECT_EQ(pick("gzip;q=0.9, *;q=0.1"), Coding::kGzip);
}

TEST(Negotiate, NothingAcceptable) {
  EXPECT_EQ(pick(""), Coding::kIdentity);
  EXPECT_EQ(pick("identity"), Coding::kIdentity);
  EXPECT_EQ(pick("deflate, compress"), Coding::kIdentity);
  EXPECT_EQ(pick(" , ,"), Coding::kIdentity);
  EXPECT_EQ(negotiate("gzip, br, zstd", {}), Coding::kIdentity);
}

TEST(Negotiate, MalformedElementsAreIgnored) {
  EXPECT_EQ(pick("gzip;q=2"), Coding::kIdentity);       // above 1
  EXPECT_EQ(pick("gzip;q=1.5"), Coding::kIdentity);
  EXPECT_EQ(pick("gzip;q=0.1234"), Coding::kIdentity);  // four decimals
  EXPECT_EQ(pick("gzip;q="), Coding::kIdentity);
  EXPECT_EQ(pick("gzip;q=-1"), Coding::kIdentity);
  EXPECT_EQ(pick("gzip;q"), Coding::kIdentity);
  EXPECT_EQ(pick("gz ip"), Coding::kIdentity);
  EXPECT_EQ(pick("\"gzip\""), Coding::kIdentity);
  EXPECT_EQ(pick("gzip;q=0.5;q=bad, br;q=0.1"), Coding::kBrotli);
  EXPECT_EQ(pick(std::string("gz\0ip, br", 9)), Coding::kBrotli);
  EXPECT_EQ(pick("gzipx, brr, zstd2"), Coding::kIdentity);  // whole tokens only
  EXPECT_EQ(pick(std::string(100'000, ',') + "gzip"), Coding::kGzip);
}

// --- heads -----------------------------------------------------------------

struct Request {
  H1Decoder d{H1Decoder::Type::kRequest, {}};
  explicit Request(const std::string& in) {
    std::size_t used = 0;
    EXPECT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead) << in;
  }
};

Coding requestOf(const std::string& fields, const conf::Compression& c = {}) {
  Request r("GET / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n");
  return requestCoding(r.d.request(), c);
}

TEST(RequestCoding, FromEveryAcceptEncodingField) {
  EXPECT_EQ(requestOf("Accept-Encoding: gzip, br\r\n"), Coding::kBrotli);
  EXPECT_EQ(requestOf("Accept-Encoding: gzip\r\naccept-encoding: zstd\r\n"), Coding::kZstd);
  EXPECT_EQ(requestOf("Accept-Encoding: gzip;q=0.5\r\nAccept-Encoding: br;q=0.4\r\n"), Coding::kGzip);
  EXPECT_EQ(requestOf(""), Coding::kIdentity);
  EXPECT_EQ(requestOf("Accept-Encoding:\r\n"), Coding::kIdentity);
}

TEST(RequestCoding, ARangeRequestIsNotCompressed) {
  EXPECT_EQ(requestOf("Accept-Encoding: gzip\r\nRange: bytes=0-99\r\n"), Coding::kIdentity);
}

TEST(RequestCoding, HonoursTheConfiguredAlgorithms) {
  conf::Compression c;
  c.algorithms = {Coding::kGzip};
  EXPECT_EQ(requestOf("Accept-Encoding: zstd, br, gzip\r\n", c), Coding::kGzip);
  EXPECT_EQ(requestOf("Accept-Encoding: zstd, br\r\n", c), Coding::kIdentity);
}

struct Response {
  H1Decoder d{H1Decoder::Type::kResponse, {}};
  Response(const std::string& in, std::uint8_t method = http::kMethodGet) {
    d.expectResponseTo(method, false);
    std::size_t used = 0;
    EXPECT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead) << in;
  }
  http::ResponseHead& head() { return d.response(); }
};

bool eligible(const std::string& status_and_fields, const conf::Compression& c = {},
              std::uint8_t method = http::kMethodGet) {
  Response r("HTTP/1.1 " + status_and_fields + "\r\n", method);
  return responseEligible(r.head(), c);
}

TEST(ResponseEligible, CompressibleTypesOfSufficientLength) {
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5000\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: APPLICATION/JavaScript\r\nContent-Length: 2000\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: application/manifest+json\r\nContent-Length: 2000\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: image/svg+xml\r\nContent-Length: 2000\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: application/wasm\r\nContent-Length: 2000\r\n"));
  EXPECT_TRUE(eligible("404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 2000\r\n"));
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"));  // to close
}

TEST(ResponseEligible, NeverCompressed) {
  const std::string json = "Content-Type: application/json\r\n";
  EXPECT_FALSE(eligible("200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("200 OK\r\nContent-Length: 5000\r\n"));  // no type
  EXPECT_FALSE(eligible("200 OK\r\n" + json + "Content-Length: 1023\r\n"));  // min_length
  EXPECT_FALSE(eligible("200 OK\r\n" + json + "Content-Encoding: gzip\r\nContent-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("200 OK\r\n" + json + "Content-Encoding: identity\r\nContent-Encoding: br\r\n"
                        "Content-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("200 OK\r\n" + json + "Cache-Control: public, No-Transform\r\n"
                        "Content-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("206 Partial Content\r\n" + json + "Content-Range: bytes 0-99/5000\r\n"
                        "Content-Length: 100\r\n"));
  EXPECT_FALSE(eligible("200 OK\r\n" + json + "Content-Range: bytes 0-4999/5000\r\n"
                        "Content-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("204 No Content\r\n" + json));
  EXPECT_FALSE(eligible("304 Not Modified\r\n" + json + "Content-Length: 5000\r\n"));
  EXPECT_FALSE(eligible("200 OK\r\nContent-Type: text/event-stream\r\n\r\n"));
  conf::Compression everything;
  everything.content_types = {"text/*"};
  EXPECT_FALSE(eligible("200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n", everything));
}

TEST(ResponseEligible, IdentityContentEncodingIsNoCoding) {
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: text/css\r\nContent-Encoding: identity\r\n"
                       "Content-Length: 5000\r\n"));
}

TEST(ResponseEligible, AHeadAnswerIsJudgedAsTheGetAnswer) {
  EXPECT_TRUE(eligible("200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n", {},
                       http::kMethodHead));
  EXPECT_FALSE(eligible("200 OK\r\nContent-Type: text/html\r\nContent-Length: 50\r\n", {},
                        http::kMethodHead));
}

TEST(ContentTypeMatches, Patterns) {
  std::vector<std::string> p{"text/*", "application/json", "application/*+xml"};
  EXPECT_TRUE(contentTypeMatches("text/x-anything", p));
  EXPECT_TRUE(contentTypeMatches(" application/json ; charset=utf-8", p));
  EXPECT_TRUE(contentTypeMatches("application/atom+xml", p));
  EXPECT_FALSE(contentTypeMatches("application/+xml", p));
  EXPECT_FALSE(contentTypeMatches("application/xml", p));
  EXPECT_FALSE(contentTypeMatches("application/jsonp", p));
  EXPECT_FALSE(contentTypeMatches("textual/plain", p));
  EXPECT_FALSE(contentTypeMatches("text", p));
  EXPECT_FALSE(contentTypeMatches("text/", p));
  EXPECT_FALSE(contentTypeMatches("/plain", p));
  EXPECT_FALSE(contentTypeMatches("", p));
}

std::string compressedHead(const std::string& status_and_fields, Coding coding) {
  Response r("HTTP/1.1 " + status_and_fields + "\r\n");
  http::ExtraFields extra;
  std::string scratch;
  compressFields(r.head(), coding, extra, scratch);
  std::string out(http::responseHeadSize(r.head(), extra), '\0');
  out.resize(http::writeResponseHead(r.head(), extra, out.data()));
  return out;
}

TEST(CompressFields, ACompressedResponse) {
  std::string h = compressedHead(
      "200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\nETag: \"abc\"\r\n", Coding::kBrotli);
  EXPECT_EQ(h.find("Content-Length"), std::string::npos) << h;
  EXPECT_NE(h.find("Content-Encoding: br\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("Vary: Accept-Encoding\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("ETag: W/\"abc\"\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("ETag: \"abc\""), std::string::npos) << h;
}

TEST(CompressFields, VaryIsExtendedOrKept) {
  std::string h = compressedHead("200 OK\r\nContent-Type: text/html\r\nVary: Origin\r\n"
                                 "vary: Cookie\r\nContent-Length: 5000\r\n", Coding::kGzip);
  EXPECT_NE(h.find("Vary: Origin, Cookie, Accept-Encoding\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Vary: Origin\r\n"), std::string::npos) << h;
  h = compressedHead("200 OK\r\nContent-Type: text/html\r\nVary: accept-encoding, Origin\r\n"
                     "Content-Length: 5000\r\n", Coding::kGzip);
  EXPECT_NE(h.find("Vary: accept-encoding, Origin\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Vary: Accept-Encoding"), std::string::npos) << h;
  h = compressedHead("200 OK\r\nContent-Type: text/html\r\nVary: *\r\nContent-Length: 5000\r\n",
                     Coding::kGzip);
  EXPECT_NE(h.find("Vary: *\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Accept-Encoding"), std::string::npos) << h;
}

TEST(CompressFields, AWeakETagStaysAsItIs) {
  std::string h = compressedHead("200 OK\r\nContent-Type: text/html\r\nETag: W/\"abc\"\r\n"
                                 "Content-Length: 5000\r\n", Coding::kZstd);
  EXPECT_NE(h.find("ETag: W/\"abc\"\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("W/W/"), std::string::npos) << h;
}

TEST(CompressFields, UncompressedButEligibleSaysItVaries) {
  std::string h = compressedHead("200 OK\r\nContent-Type: text/html\r\nETag: \"abc\"\r\n"
                                 "Content-Length: 5000\r\n", Coding::kIdentity);
  EXPECT_NE(h.find("Content-Length: 5000\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("ETag: \"abc\"\r\n"), std::string::npos) << h;
  EXPECT_NE(h.find("Vary: Accept-Encoding\r\n"), std::string::npos) << h;
  EXPECT_EQ(h.find("Content-Encoding"), std::string::npos) << h;
}

// --- encoders --------------------------------------------------------------

std::string decode(Coding c, const std::string& in, bool* complete) {
  bool error = false;
  std::string out = bodies::decodeBody(c, in, complete, &error);
  EXPECT_FALSE(error) << codingToken(c);
  return out;
}

std::string sampleText(std::size_t n) {
  std::string s;
  std::mt19937 rng(7);
  const char* words[] = {"tether ", "backend ", "{\"id\":", "42,", "\"name\":\"open\"}", "\n", "socket "};
  while (s.size() < n) s += words[rng() % 7];
  s.resize(n);
  return s;
}

class Encoders : public testing::TestWithParam<Coding> {};

TEST_P(Encoders, RoundTripWholeAndCompresses) {
  conf::Compression c;
  std::string text = sampleText(200'000);
  auto e = makeEncoder(GetParam(), c.level(GetParam()), 0);
  ASSERT_NE(e, nullptr);
  std::string out;
  for (std::size_t at = 0; at < text.size(); at += 7'000)
    ASSERT_TRUE(e->write(std::string_view(text).substr(at, 7'000), &out));
  ASSERT_TRUE(e->finish(&out));
  bool complete = false;
  EXPECT_EQ(decode(GetParam(), out, &complete), text);
  EXPECT_TRUE(complete);
  EXPECT_LT(out.size(), text.size() / 4);
}

TEST_P(Encoders, EachFlushMakesEverythingSoFarDecodable) {
  // An event stream of JSON lines, flushed after each as when the backend
  // pauses: the client decodes every line as soon as it arrives.
  auto e = makeEncoder(GetParam(), conf::Compression{}.level(GetParam()), 0);
  ASSERT_NE(e, nullptr);
  std::string out, sent;
  for (int i = 0; i < 50; ++i) {
    std::string line = "{\"delta\":\"token " + std::to_string(i) + "\"}\n";
    sent += line;
    ASSERT_TRUE(e->write(line, &out));
    ASSERT_TRUE(e->flush(&out));
    bool complete = true;
    EXPECT_EQ(decode(GetParam(), out, &complete), sent) << "after line " << i;
    EXPECT_FALSE(complete);
  }
  ASSERT_TRUE(e->flush(&out));  // a flush with nothing new is harmless
  ASSERT_TRUE(e->finish(&out));
  bool complete = false;
  EXPECT_EQ(decode(GetParam(), out, &complete), sent);
  EXPECT_TRUE(complete);
}

TEST_P(Encoders, EmptyBodyAndSmallHintAndIncompressibleBytes) {
  conf::Compression c;
  for (std::uint64_t hint : {std::uint64_t{0}, std::uint64_t{1}, std::uint64_t{1500}}) {
    auto e = makeEncoder(GetParam(), c.level(GetParam()), hint);
    ASSERT_NE(e, nullptr);
    std::string out;
    ASSERT_TRUE(e->finish(&out));
    bool complete = false;
    EXPECT_EQ(decode(GetParam(), out, &complete), "");
    EXPECT_TRUE(complete);
  }
  std::string noise(300'000, '\0');
  std::mt19937_64 rng(3);
  for (char& ch : noise) ch = static_cast<char>(rng());
  // The hint is smaller than the body: still correct, only the window is smaller.
  auto e = makeEncoder(GetParam(), c.level(GetParam()), 2000);
  ASSERT_NE(e, nullptr);
  std::string out;
  ASSERT_TRUE(e->write(noise, &out));
  ASSERT_TRUE(e->finish(&out));
  bool complete = false;
  EXPECT_EQ(decode(GetParam(), out, &complete), noise);
  EXPECT_TRUE(complete);
}

TEST_P(Encoders, EveryLevelWorks) {
  std::string text = sampleText(20'000);
  int lo = GetParam() == Coding::kBrotli ? 0 : 1;
  int hi = GetParam() == Coding::kZstd ? 19 : GetParam() == Coding::kBrotli ? 11 : 9;
  for (int level = lo; level <= hi; ++level) {
    auto e = makeEncoder(GetParam(), level, text.size());
    ASSERT_NE(e, nullptr) << level;
    std::string out;
    ASSERT_TRUE(e->write(text, &out));
    ASSERT_TRUE(e->finish(&out));
    bool complete = false;
    EXPECT_EQ(decode(GetParam(), out, &complete), text) << level;
  }
}

INSTANTIATE_TEST_SUITE_P(Codings, Encoders, testing::ValuesIn(kAll),
                         [](const testing::TestParamInfo<Coding>& i) {
                           return std::string(codingToken(i.param) == "br" ? "brotli"
                                                                            : codingToken(i.param));
                         });

TEST(MakeEncoder, IdentityHasNone) { EXPECT_EQ(makeEncoder(Coding::kIdentity, 1, 0), nullptr); }

}  // namespace
}  // namespace tether::forward
