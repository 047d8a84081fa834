// The HTTP/1 decoder fed byte strings: every framing rule of RFC 9112 tether
// enforces, the hostile cases of the codec issue, and each input cut at every
// byte (the same transcript whatever the cut).
#include "proxy/http/h1_decoder.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/unit/proxy/http/h1_test_util.h"

namespace tether::http {
namespace {

using testing::bytewise;
using testing::decode;
using testing::randomCuts;
using testing::Decoded;
using testing::splitAt;
using testing::whole;
using Type = H1Decoder::Type;

// Every cut of `in` gives the transcript of the whole.
void expectCutInvariant(Type type, const std::string& in, H1Decoder::Limits lim = {}, std::uint8_t method = kMethodGet,
                        bool upgrade = false, bool finish = false) {
  Decoded ref = decode(type, whole(in), lim, method, upgrade, finish);
  EXPECT_EQ(decode(type, bytewise(in), lim, method, upgrade, finish).transcript, ref.transcript) << "bytewise: " << in;
  for (unsigned seed = 0; seed < 8; ++seed)
    EXPECT_EQ(decode(type, randomCuts(in, seed), lim, method, upgrade, finish).transcript, ref.transcript) << "seed " << seed;
  if (in.size() <= 600) {
    for (std::size_t at = 1; at < in.size(); ++at)
      ASSERT_EQ(decode(type, splitAt(in, at), lim, method, upgrade, finish).transcript, ref.transcript) << "split at " << at << ": " << in;
  }
}

Decoded req(const std::string& in, H1Decoder::Limits lim = {}) {
  expectCutInvariant(Type::kRequest, in, lim);
  return decode(Type::kRequest, whole(in), lim);
}

Decoded resp(const std::string& in, std::uint8_t method = kMethodGet, bool upgrade = false, bool finish = false,
         H1Decoder::Limits lim = {}) {
  expectCutInvariant(Type::kResponse, in, lim, method, upgrade, finish);
  return decode(Type::kResponse, whole(in), lim, method, upgrade, finish);
}

// ---------------------------------------------------------------------------
// Requests: what is accepted, and how it reads.

TEST(H1Request, SimpleGetReadsAsOneMessageWithoutBody) {
  Decoded r = req("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_NE(r.transcript.find("HEAD GET /a?b=1 auth=x v1.1 none cl=0 ka [Host=x][Accept=*/*]"), std::string::npos) << r.transcript;
}

TEST(H1Request, ContentLengthBodyGoesToTheSink) {
  Decoded r = req("POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.messages, 2u);
  EXPECT_NE(r.transcript.find("length cl=5"), std::string::npos);
  EXPECT_NE(r.transcript.find("BODY hello\n"), std::string::npos);
}

TEST(H1Request, ChunkedBodyIsDecodedAndTrailersKeptApart) {
  Decoded r = req("POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\nContent-Length: 40\r\n\r\n");
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_NE(r.transcript.find("BODY hello world\n"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("TRAILERS [X-Sum=1][Content-Length=40]"), std::string::npos) << r.transcript;
  // The head holds exactly the head's fields: no trailer joined it.
  EXPECT_NE(r.transcript.find("chunked cl=0 ka [Host=a][Transfer-Encoding=chunked]\n"), std::string::npos) << r.transcript;
}

TEST(H1Request, LargeTrailersOfTheIssueStayOutOfTheHead) {
  std::string in = "POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Pad: " + std::string(17000, 'p') + "\r\n\r\n0\r\n";
  for (int i = 0; i < 10; ++i) in += "X-T" + std::to_string(i) + ": " + std::string(4000, 'A') + "\r\n";
  in += "\r\n";
  Decoded r = decode(Type::kRequest, whole(in));
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(decode(Type::kRequest, randomCuts(in, 3)).transcript, r.transcript);
  H1Decoder::Limits small;
  small.max_trailer_bytes = 8000;
  EXPECT_EQ(decode(Type::kRequest, whole(in), small).error, 431);
}

TEST(H1Request, TrailersChangeNeitherFramingNorTheConnection) {
  std::string one = "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
                    "Connection: close\r\nUpgrade: h2c\r\nContent-Length: 9\r\n\r\n";
  Decoded r = req(one + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_EQ(r.messages, 2u) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD GET /next"), std::string::npos) << r.transcript;
}

TEST(H1Request, PipelinedRequestsStopAtEachEnd) {
  std::string one = "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n";
  Decoded r = req(one + one + one);
  EXPECT_EQ(r.messages, 3u);
}

TEST(H1Request, OptionsAsteriskIsKept) {
  Decoded r = req("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.error, 0);
  EXPECT_NE(r.transcript.find("HEAD OPTIONS * auth=x"), std::string::npos);
}

TEST(H1Request, AbsoluteFormBecomesOriginFormWithItsAuthority) {
  Decoded r = req("GET http://Example.com:80/x?q=1 HTTP/1.1\r\nHost: example.com:80\r\n\r\n");
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD GET /x?q=1 auth=Example.com:80"), std::string::npos) << r.transcript;
  Decoded q = req("GET http://a?x HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(q.transcript.find("HEAD GET /?x auth=a"), std::string::npos) << q.transcript;
}

TEST(H1Request, Http10WithoutHostIsAccepted) {
  Decoded r = req("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.error, 0);
  EXPECT_NE(r.transcript.find("auth= v1.0 none cl=0 close"), std::string::npos) << r.transcript;
}

TEST(H1Request, UpgradeRequestEndsAndLeavesTheTunnelBytes) {
  Decoded r = decode(Type::kRequest, whole("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"));
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(r.leftover, 7u);
  EXPECT_NE(r.transcript.find(" upgrade "), std::string::npos);
}

TEST(H1Request, BlankAndEmptyValuesAreNotFolds) {
  Decoded r = req("GET / HTTP/1.1\r\nHost: x\r\nX-A: " + std::string(100, ' ') + "\r\nX-B:\r\nX-C:\t\r\n\r\n");
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_NE(r.transcript.find("[X-A=][X-B=][X-C=]"), std::string::npos) << r.transcript;
}

TEST(H1Request, ValuesAreTrimmed) {
  Decoded r = req("GET / HTTP/1.1\r\nHost:   x  \r\nA:\t b \t\r\n\r\n");
  EXPECT_NE(r.transcript.find("[Host=x][A=b]"), std::string::npos) << r.transcript;
}

// ---------------------------------------------------------------------------
// Requests: what is refused, with which status.

struct Refused {
  const char* name;
  std::string in;
  int status;
};

class H1RequestRefused : public ::testing::TestWithParam<Refused> {};

TEST_P(H1RequestRefused, AnswersItsStatus) {
  const Refused& c = GetParam();
  Decoded r = req(c.in);
  EXPECT_EQ(r.error, c.status) << c.name << "\n" << r.transcript;
  EXPECT_EQ(r.messages, 0u) << c.name;
}

const std::string kCl = "Content-Length: 44\r\n\r\nGET /hijacked HTTP/1.1\r\nHost: a\r\nX-Hijack: ";

INSTANTIATE_TEST_SUITE_P(
    Cases, H1RequestRefused,
    ::testing::Values(
        Refused{"ConnectionNamesContentLength", "POST /a HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n" + kCl, 400},
        Refused{"ConnectionNamesTransferEncoding", "POST /a HTTP/1.1\r\nHost: a\r\nConnection: close, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"ConnectionNamesHost", "GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n", 400},
        Refused{"ObsFoldEmptyFirstLineTe", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"ObsFoldEmptyFirstLineCl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello", 400},
        Refused{"ObsFoldDouble", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\tc\r\n\r\n", 400},
        Refused{"ObsFoldTab", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\tb\r\n\r\n", 400},
        // A fold of blanks only, after an empty value: llhttp hands it over
        // as that empty value, on the next line.
        Refused{"ObsFoldBlankAfterEmptyValue", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n \r\n\r\n", 400},
        Refused{"ObsFoldTabAfterEmptyValue", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n\t\r\n\r\n", 400},
        Refused{"ObsFoldBlankAfterBlankValue", "GET / HTTP/1.1\r\nHost: a\r\nX: \r\n \r\n\r\n", 400},
        Refused{"ObsFoldBlanksTwiceThenField", "GET / HTTP/1.1\r\nHost: a\r\nX:\r\n \r\n \r\nY: z\r\n\r\n", 400},
        Refused{"ObsFoldBlankBeforeHost", "GET / HTTP/1.1\r\nX:\r\n \r\nHost: a\r\n\r\n", 400},
        Refused{"TeIdentityChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeGzipChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeCowChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: cow, chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeLeadingComma", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeTwice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeNotChunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        Refused{"TeAndCl", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TeInHttp10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
        Refused{"TwoContentLengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
        Refused{"ContentLengthList", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\na", 400},
        Refused{"ContentLengthSigned", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\na", 400},
        Refused{"EmptyFieldName", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
        Refused{"EmptyNameColonTe", "POST / HTTP/1.1\r\nHost: a\r\n:transfer-encoding: chunked\r\n\r\n", 400},
        Refused{"SpaceBeforeColon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400},
        Refused{"NoHost", "GET / HTTP/1.1\r\n\r\n", 400},
        Refused{"TwoHosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        Refused{"AbsoluteFormHostMismatch", "GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n", 400},
        Refused{"AbsoluteFormOtherScheme", "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"AbsoluteFormUserinfo", "GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"NoVersion", "GET /\r\n\r\n", 400},
        Refused{"Http09", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
        Refused{"Http20", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        Refused{"Http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505},
        Refused{"Connect", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405},
        Refused{"GetAsterisk", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"Fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"BareLfLineEnd", "GET / HTTP/1.1\nHost: a\n\n", 400},
        Refused{"CrInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400},
        Refused{"NulInValue", std::string("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", 35), 400},
        Refused{"ChunkSizeOverflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 400},
        Refused{"ChunkSize17Digits", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000005\r\nhello\r\n0\r\n\r\n", 400},
        Refused{"ChunkSize17DigitsWithExtension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n00000000000000005;a=b\r\nhello\r\n0\r\n\r\n", 400},
        Refused{"ChunkSizeNotHex", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        Refused{"ChunkLongExtension", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=" + std::string(5000, 'x') + "\r\nx\r\n0\r\n\r\n", 400},
        Refused{"ChunkLongZeroPadding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(5000, '0') + "1\r\nx\r\n0\r\n\r\n", 400},
        Refused{"ChunkDataWithoutCrlf", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", 400},
        Refused{"TrailerWithoutColon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBroken\r\n\r\n", 400},
        Refused{"TrailerFolded", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n", 400},
        Refused{"InvalidMethodChars", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"SpaceInTarget", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"DoubleSpaceAfterMethod", "GET  /v HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"DoubleSpaceBeforeVersion", "GET /v  HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        Refused{"TextAfterVersion", "GET /v HTTP/1.1 extra\r\nHost: a\r\n\r\n", 400},
        Refused{"HostList", "GET / HTTP/1.1\r\nHost: a.test, b.test\r\n\r\n", 400},
        Refused{"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        Refused{"HostWithPath", "GET / HTTP/1.1\r\nHost: foo/bar\r\n\r\n", 400},
        Refused{"HostWithUserinfo", "GET / HTTP/1.1\r\nHost: a.test@evil.test\r\n\r\n", 400},
        Refused{"HostNotAscii", "GET / HTTP/1.1\r\nHost: \xff" "a\xff\r\n\r\n", 400},
        Refused{"SeventeenConnectionOptions", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,Content-Length\r\nContent-Length: 0\r\n\r\n", 400},
        Refused{"HostBadPort", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400}));

TEST(H1Request, HostForms) {
  for (const char* host : {"a", "a.example:8080", "[::1]:80", "[2001:db8::1]", "xn--bcher-kva.example", "1.2.3.4"}) {
    Decoded r = req(std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n");
    EXPECT_EQ(r.error, 0) << host << " " << r.transcript;
  }
  EXPECT_EQ(req("GET / HTTP/1.1\r\nHost:\r\n\r\n").error, 0);  // no authority: empty Host
}

TEST(H1Request, ChunkSizesOfSixteenDigitsAreRead) {
  Decoded r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000005\r\nhello\r\n"
                  "000000000000003;e=1\r\nabc\r\n0\r\n\r\n");
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_NE(r.transcript.find("BODY helloabc"), std::string::npos) << r.transcript;
}

TEST(H1Request, ChunkedLongExtensionAcrossReadsIsRefusedBeforeItEnds) {
  std::string in = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a=" + std::string(1 << 20, 'x');
  Decoded r = decode(Type::kRequest, randomCuts(in, 1));
  EXPECT_EQ(r.error, 400);
}

TEST(H1Request, HeadOverTheLimitIs431WhetherOrNotItCompletes) {
  H1Decoder::Limits lim;
  lim.max_head_bytes = 1024;
  std::string big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  EXPECT_EQ(decode(Type::kRequest, whole(big), lim).error, 431);
  EXPECT_EQ(decode(Type::kRequest, bytewise(big), lim).error, 431);
  EXPECT_EQ(decode(Type::kRequest, whole(big.substr(0, 1500)), lim).error, 431);
}

// A fault beyond a section's bound is never reached, whatever the cut: the
// section is too large (found by fuzz_h1_request: 400 whole, 431 cut).
TEST(H1Request, AFaultPastTheHeadBoundIs431WhateverTheCut) {
  H1Decoder::Limits lim;
  lim.max_head_bytes = 256;
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(400, 'a') + "\r\nBad Name: x\r\n\r\n";
  EXPECT_EQ(decode(Type::kRequest, whole(in), lim).error, 431);
  expectCutInvariant(Type::kRequest, in, lim);
  // Within the bound the fault is what is answered.
  lim.max_head_bytes = 4096;
  EXPECT_EQ(decode(Type::kRequest, whole(in), lim).error, 400);
  expectCutInvariant(Type::kRequest, in, lim);
}

TEST(H1Request, AFaultPastTheTrailerBoundIs431WhateverTheCut) {
  H1Decoder::Limits lim;
  lim.max_trailer_bytes = 128;
  std::string in = "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " +
                   std::string(300, 'b') + "\r\nBad Name: x\r\n\r\n";
  EXPECT_EQ(decode(Type::kRequest, whole(in), lim).error, 431);
  expectCutInvariant(Type::kRequest, in, lim);
  lim.max_trailer_bytes = 4096;
  EXPECT_EQ(decode(Type::kRequest, whole(in), lim).error, 400);
  expectCutInvariant(Type::kRequest, in, lim);
}

TEST(H1Request, ATrailerSectionOfExactlyItsBoundIsRead) {
  std::string head = "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
  std::string trailers = "X-T: " + std::string(100, 'b') + "\r\n\r\n";
  H1Decoder::Limits lim;
  lim.max_trailer_bytes = trailers.size();
  EXPECT_EQ(decode(Type::kRequest, whole(head + trailers), lim).error, 0);
  lim.max_trailer_bytes = trailers.size() - 1;
  EXPECT_EQ(decode(Type::kRequest, whole(head + trailers), lim).error, 431);
  expectCutInvariant(Type::kRequest, head + trailers, lim);
}

TEST(H1Request, BodyOverTheLimitIs413) {
  H1Decoder::Limits lim;
  lim.max_body_bytes = 4;
  EXPECT_EQ(decode(Type::kRequest, whole("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"), lim).error, 413);
  EXPECT_EQ(decode(Type::kRequest, whole("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), lim).error, 413);
}

TEST(H1Request, UnderscoreNamesAreMarkedForPolicy) {
  H1Decoder d(Type::kRequest, {});
  std::string in = "GET / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n";
  std::size_t used = 0;
  ASSERT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead);
  ASSERT_EQ(d.request().headers.size(), 2u);
  EXPECT_FALSE(d.request().headers.underscore(0));
  EXPECT_TRUE(d.request().headers.underscore(1));
}

TEST(H1Request, UnderscoresAreFoundAnywhereInNamesOfEveryLength) {
  for (std::size_t len = 1; len <= 24; ++len) {
    for (std::size_t at = 0; at <= len; ++at) {
      // A name of `len` bytes with '_' at `at` (none when at == len).
      std::string name(len, 'a');
      if (at < len) name[at] = '_';
      H1Decoder d(Type::kRequest, {});
      std::string in = "GET / HTTP/1.1\r\nHost: a\r\n" + name + ": v\r\n\r\n";
      std::size_t used = 0;
      ASSERT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead) << name;
      ASSERT_EQ(d.request().headers.size(), 2u);
      EXPECT_EQ(d.request().headers.underscore(1), at < len) << name;
    }
  }
}

// The kept lines go upstream as they arrived (one copy of a run), whatever
// the cut: in particular a cut between a line's CR and its LF, or inside the
// blank line, neither of which a field value may keep.
TEST(H1Request, FieldLinesAreWrittenAsTheyArrivedWhateverTheCut) {
  const std::string lines = "Host: a\r\nX-Spaced:  v  \r\nY:\r\nZ:\t\r\nLast: w\r\n";
  const std::string in = "\r\nGET / HTTP/1.1\r\n" + lines + "\r\nGET /next HTTP/1.1\r\nHost: b\r\n\r\n";
  for (std::size_t cut = 0; cut < in.size(); ++cut) {
    H1Decoder d(Type::kRequest, {});
    std::size_t used = 0, off = 0;
    std::vector<std::string> pieces = {in.substr(0, cut), in.substr(cut)};
    H1Decoder::Event ev = H1Decoder::Event::kNeedMore;
    for (const std::string& piece : pieces) {
      ev = d.execute(piece.data(), piece.size(), &used);
      if (ev == H1Decoder::Event::kHead) {
        off += used;
        break;
      }
      ASSERT_EQ(ev, H1Decoder::Event::kNeedMore) << "cut " << cut;
      off += used;
    }
    ASSERT_EQ(ev, H1Decoder::Event::kHead) << "cut " << cut;
    const HeaderList& h = d.request().headers;
    ASSERT_EQ(h.size(), 5u) << "cut " << cut;
    EXPECT_EQ(h.value(1), "v");
    EXPECT_EQ(h.value(2), "");
    EXPECT_EQ(h.value(3), "");
    EXPECT_EQ(h.value(4), "w");
    std::string out(h.lineBytes(), '\0');
    ASSERT_EQ(h.writeLines(out.data()), lines.size()) << "cut " << cut;
    EXPECT_EQ(out, lines) << "cut " << cut;
  }
}

TEST(H1Request, MidMessageAndFinish) {
  H1Decoder d(Type::kRequest, {});
  std::string in = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc";
  std::size_t used = 0;
  EXPECT_FALSE(d.midMessage());
  ASSERT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead);
  EXPECT_TRUE(d.midMessage());
  EXPECT_EQ(d.finish(), H1Decoder::Event::kError);
}

// ---------------------------------------------------------------------------
// Responses.

TEST(H1Response, ContentLengthAndKeepAlive) {
  Decoded r = resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(r.error, 0);
  EXPECT_NE(r.transcript.find("HEAD 200 OK length cl=2 ka"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("BODY ok"), std::string::npos);
}

TEST(H1Response, ManyFieldsUpToTheLimit) {
  std::string in = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 300; ++i) in += "X-F" + std::to_string(i) + ": v\r\n";
  in += "Content-Length: 0\r\n\r\n";
  Decoded r = decode(Type::kResponse, whole(in));
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.messages, 1u);
  H1Decoder::Limits lim;
  lim.max_head_bytes = 1000;
  EXPECT_EQ(decode(Type::kResponse, whole(in), lim).error, 502);
  EXPECT_EQ(decode(Type::kResponse, bytewise(in), lim).error, 502);
}

TEST(H1Response, ChunkedTrailersStayInTheirOwnList) {
  Decoded r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Leak: secret\r\n\r\n"
               "HTTP/1.1 204 No Content\r\n\r\n");
  EXPECT_EQ(r.messages, 2u);
  EXPECT_NE(r.transcript.find("TRAILERS [X-Leak=secret]"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD 204 No Content none cl=0 ka \n"), std::string::npos) << r.transcript;
}

// Blank lines after a message with trailers belong to no trailer section
// (found by fuzz_h1_response: the 204 read whole, "trailer section too
// large" when cut after the trailers).
TEST(H1Response, BlankLinesAfterTrailersAreNotTrailerBytesWhateverTheCut) {
  H1Decoder::Limits lim;
  lim.max_trailer_bytes = 64;
  std::string crlf;
  for (int i = 0; i < 60; ++i) crlf += "\r\n";
  std::string in = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: t\r\n\r\n" + crlf +
                   "HTTP/1.1 204 No Content\r\n\r\n";
  Decoded r = decode(Type::kResponse, whole(in), lim);
  EXPECT_EQ(r.error, 0) << r.transcript;
  EXPECT_EQ(r.messages, 2u) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD 204 No Content"), std::string::npos) << r.transcript;
  expectCutInvariant(Type::kResponse, in, lim);
}

TEST(H1Response, HeadAnswerHasNoBodyWhateverItSays) {
  Decoded r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", kMethodHead);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(r.leftover, 5u);
  EXPECT_NE(r.transcript.find("BODY \n"), std::string::npos) << r.transcript;
}

TEST(H1Response, NoContentAndNotModifiedEndAtTheirBlankLine) {
  Decoded a = resp("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(a.messages, 1u);
  EXPECT_EQ(a.leftover, 5u);
  Decoded b = resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(b.messages, 1u);
  EXPECT_EQ(b.leftover, 5u);
}

TEST(H1Response, ExtraBytesAfterTheFramingAreLeftUnconsumed) {
  Decoded r = decode(Type::kResponse, whole("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"));
  EXPECT_EQ(r.messages, 1u);
  EXPECT_EQ(r.transcript.find("EXTRA"), std::string::npos);
}

TEST(H1Response, InformationalHeadsComeFirst) {
  Decoded r = resp("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx");
  EXPECT_EQ(r.messages, 1u);
  EXPECT_NE(r.transcript.find("HEAD 100 Continue"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD 103 Early Hints none cl=0 ka [Link=</a>]"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("HEAD 200 OK length"), std::string::npos) << r.transcript;
}

TEST(H1Response, SwitchingProtocolsOnlyWhenAsked) {
  std::string in = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x01x";
  EXPECT_EQ(decode(Type::kResponse, whole(in), {}, kMethodGet, false).error, 502);
  Decoded ok = decode(Type::kResponse, whole(in), {}, kMethodGet, true);
  EXPECT_EQ(ok.error, 0);
  EXPECT_EQ(ok.messages, 1u);
  EXPECT_EQ(ok.leftover, 3u);
}

TEST(H1Response, CloseDelimitedEndsAtFinish) {
  Decoded r = resp("HTTP/1.1 200 OK\r\n\r\nstream until close", kMethodGet, false, true);
  EXPECT_EQ(r.error, 0);
  EXPECT_EQ(r.messages, 1u);
  EXPECT_NE(r.transcript.find("close cl=0 close"), std::string::npos) << r.transcript;
  EXPECT_NE(r.transcript.find("BODY stream until close"), std::string::npos);
}

TEST(H1Response, TruncatedIsAnErrorAtFinish) {
  Decoded r = decode(Type::kResponse, whole("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"), {}, kMethodGet, false, true);
  EXPECT_EQ(r.error, 502);
}

TEST(H1Response, RefusedShapes) {
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\n: x\r\nContent-Length: 0\r\n\r\n").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nX:\r\n \r\nContent-Length: 1\r\n\r\nx").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nX:\r\n\t\r\n\r\nx").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nX:\r\n \r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").error, 502);
  EXPECT_EQ(resp("HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n").error, 502);
  EXPECT_EQ(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + std::string(5000, 'e') + "\r\nx\r\n0\r\n\r\n").error, 502);
}

// A name longer than a field's length can say (65,535 bytes, reachable only
// with a head bound raised past it) is refused, never read as a shorter one
// ("Content-Length" + 65,536 bytes wrapped to "Content-Length").
TEST(H1Request, ANameLongerThanAFieldCanHoldIsRefused) {
  H1Decoder::Limits lim;
  lim.max_head_bytes = 1 << 20;
  const std::string name = "Content-Length" + std::string(65536, 'a');
  const std::string in = "POST / HTTP/1.1\r\nHost: a\r\n" + name + ":\r\nContent-Length: 3\r\n\r\nabc";
  for (const auto& pieces : {whole(in), splitAt(in, 4096), splitAt(in, 65536 + 20), randomCuts(in, 7)}) {
    Decoded r = decode(Type::kRequest, pieces, lim);
    EXPECT_EQ(r.error, 400) << r.transcript.substr(0, 200);
    EXPECT_EQ(r.messages, 0u);
  }
  const std::string longest = "X" + std::string(65534, 'a');  // 65,535 bytes: still a field
  Decoded ok = decode(Type::kRequest, whole("GET / HTTP/1.1\r\nHost: a\r\n" + longest + ": v\r\n\r\n"), lim);
  EXPECT_EQ(ok.error, 0);
  EXPECT_EQ(ok.messages, 1u);
}

TEST(H1Response, ConnectionNamingFramingFieldsKeepsThem) {
  Decoded r = resp("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(r.error, 0);
  EXPECT_NE(r.transcript.find("length cl=2"), std::string::npos) << r.transcript;
}

TEST(H1Response, NonChunkedTransferCodingReadsToClose) {
  Decoded r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", kMethodGet, false, true);
  EXPECT_NE(r.transcript.find("close cl=0 close"), std::string::npos) << r.transcript;
}

}  // namespace
}  // namespace tether::http
