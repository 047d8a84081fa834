// CheckReader (proxy/health_checker.h): a health check's answer as byte
// strings, cut every way, and the verdict it gives. No sockets.
#include "proxy/health_checker.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tether::proxy {
namespace {

conf::Health config(std::string expect_body = "") {
  conf::Health h;
  h.expect_body = std::move(expect_body);
  return h;
}

struct Outcome {
  bool done = false;
  health::CheckVerdict verdict;
  int status = 0;
};

// Feeds `pieces` in order, then EOF when `eof` (and the verdict is not known).
Outcome read(const conf::Health& cfg, const std::vector<std::string>& pieces, bool eof = true) {
  CheckReader r(cfg);
  for (const std::string& p : pieces)
    if (r.feed(p.data(), p.size())) break;
  if (eof && !r.done()) r.eof();
  return {r.done(), r.verdict(), r.status()};
}

std::vector<std::string> whole(const std::string& s) { return {s}; }

// Every two-piece cut, byte by byte, and some random cuts.
std::vector<std::vector<std::string>> cuts(const std::string& s) {
  std::vector<std::vector<std::string>> all{whole(s)};
  for (std::size_t i = 1; i < s.size(); ++i) all.push_back({s.substr(0, i), s.substr(i)});
  std::vector<std::string> bytes;
  for (char c : s) bytes.emplace_back(1, c);
  all.push_back(bytes);
  for (unsigned seed = 1; seed <= 8; ++seed) {
    std::mt19937 rng(seed);
    std::vector<std::string> v;
    for (std::size_t i = 0; i < s.size();) {
      std::size_t n = 1 + rng() % 17;
      v.push_back(s.substr(i, n));
      i += n;
    }
    all.push_back(v);
  }
  return all;
}

// The same verdict whatever the cuts.
void expectEveryCut(const conf::Health& cfg, const std::string& bytes, health::CheckResult want,
                    const std::string& reason_has, bool eof = true) {
  for (const auto& pieces : cuts(bytes)) {
    Outcome o = read(cfg, pieces, eof);
    ASSERT_TRUE(o.done) << "pieces: " << pieces.size();
    ASSERT_EQ(o.verdict.result, want) << o.verdict.reason << " (pieces: " << pieces.size() << ")";
    ASSERT_NE(o.verdict.reason.find(reason_has), std::string::npos)
        << o.verdict.reason << " (pieces: " << pieces.size() << ")";
  }
}

TEST(CheckRequest, IsOneGetWithTheBackendsHost) {
  EXPECT_EQ(checkRequest("/health?x=1", "app.internal:8080"),
            "GET /health?x=1 HTTP/1.1\r\nHost: app.internal:8080\r\nUser-Agent: tether-health-check\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n");
}

TEST(CheckReader, ContentLengthAnswerPassesAtItsEndWithoutEof) {
  Outcome o = read(config(), whole("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), false);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.verdict.ok()) << o.verdict.reason;
  EXPECT_EQ(o.status, 200);
}

TEST(CheckReader, ChunkedBodyWithTheNeedleSplitAcrossChunksPasses) {
  // '"status": true' arrives in three chunks, with an extension and a trailer.
  const std::string answer =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
      "5\r\n{\"sta\r\n"
      "6;ext=1\r\ntus\": \r\n"
      "5\r\ntrue}\r\n"
      "0\r\nX-Trailer: t\r\n\r\n";
  expectEveryCut(config("\"status\": true"), answer, health::CheckResult::kOk, "status 200");
  // Found before the end: the verdict does not wait for the last chunk.
  Outcome o = read(config("\"status\": true"), whole(answer.substr(0, answer.find("0\r\nX-Trailer"))), false);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.verdict.ok()) << o.verdict.reason;
}

TEST(CheckReader, ChunkedBodyWithoutTheNeedleFails) {
  const std::string answer =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n{\"sta\r\n"
      "6\r\ntus\": \r\n"
      "6\r\nfalse}\r\n"
      "0\r\n\r\n";
  expectEveryCut(config("\"status\": true"), answer, health::CheckResult::kFail,
                 "body does not contain '\"status\": true'", false);
}

TEST(CheckReader, NeedleBeyondTheInspectedBoundFailsAndSaysSo) {
  std::string body(health::kMaxInspectedBodyBytes + 1000, 'x');
  body += "\"status\": true";
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (auto pieces : {whole(answer), std::vector<std::string>{answer.substr(0, 100), answer.substr(100)}}) {
    Outcome o = read(config("\"status\": true"), pieces, false);
    ASSERT_TRUE(o.done);
    EXPECT_EQ(o.verdict.result, health::CheckResult::kFail);
    EXPECT_EQ(o.verdict.reason, "body does not contain '\"status\": true' in its first 65536 bytes");
    EXPECT_EQ(o.status, 200);
  }
  // The bound decides before the body ends: the rest need not arrive.
  Outcome o = read(config("\"status\": true"), whole(answer.substr(0, answer.size() - 100)), false);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.verdict.result, health::CheckResult::kFail);
}

TEST(CheckReader, AnswerWithoutLengthIsReadToEof) {
  const std::string answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall good";
  Outcome before = read(config("good"), whole(answer.substr(0, answer.size() - 4)), false);
  EXPECT_FALSE(before.done);
  expectEveryCut(config("good"), answer, health::CheckResult::kOk, "status 200");
  expectEveryCut(config(), "HTTP/1.0 204 No Content\r\n\r\n", health::CheckResult::kOk, "status 204");
}

TEST(CheckReader, StatusOutsideTheRangeFails) {
  expectEveryCut(config(), "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", health::CheckResult::kFail,
                 "status 503 not in 200-299");
}

TEST(CheckReader, InformationalHeadIsSkipped) {
  expectEveryCut(config("ok"), "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                 health::CheckResult::kOk, "status 200");
}

TEST(CheckReader, MalformedHeadsFailWithAReasonNamingIt) {
  struct Case {
    const char* bytes;
    const char* reason;
  };
  const Case cases[] = {
      {"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "bad response: obsolete line folding"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       "bad response: malformed response (HPE_UNEXPECTED_CONTENT_LENGTH)"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", "bad response: malformed response"},
      {"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok", "bad response: malformed response"},
      {"SSH-2.0-OpenSSH_9.2\r\n", "bad response: malformed response"},
      {"HTTP/2.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "bad response: unsupported response version"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
       "bad response: 101 to a request that did not ask to upgrade"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n", "bad response: malformed response"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bytes);
    expectEveryCut(config(), c.bytes, health::CheckResult::kFail, c.reason);
    Outcome o = read(config(), whole(c.bytes));
    EXPECT_EQ(o.verdict.reason.rfind(c.reason, 0), 0u) << o.verdict.reason;
  }
}

TEST(CheckReader, HeadOverItsBoundFails) {
  std::string answer = "HTTP/1.1 200 OK\r\nX-Pad: " + std::string(70 * 1024, 'p') + "\r\nContent-Length: 0\r\n\r\n";
  Outcome o = read(config(), whole(answer), false);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.verdict.result, health::CheckResult::kFail);
  EXPECT_EQ(o.verdict.reason, "bad response: response head too large");
  EXPECT_EQ(o.status, 0);
}

TEST(CheckReader, ClosedEarlyFails) {
  Outcome none = read(config(), {});
  EXPECT_EQ(none.verdict.reason, "connection closed before a response");
  for (std::string cut : {"HTTP/1.1 200 OK\r\nContent-Le", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok",
                          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n"}) {
    SCOPED_TRACE(cut);
    Outcome o = read(config(), whole(cut));
    EXPECT_TRUE(o.done);
    EXPECT_EQ(o.verdict.result, health::CheckResult::kFail);
    EXPECT_EQ(o.verdict.reason, "connection closed mid-response");
  }
  CheckReader r(config());
  r.eof("read: connection reset by peer");
  EXPECT_EQ(r.verdict().reason, "read: connection reset by peer");
}

TEST(CheckReader, BytesAfterTheVerdictAreNotLookedAt) {
  // The needle decides; garbage behind it in the same read does not turn the verdict.
  expectEveryCut(config("ready"), "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nready\r\nzz\r\n",
                 health::CheckResult::kOk, "status 200");
  // Past the response's end (a second response, stray bytes).
  expectEveryCut(config(), "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE\r\n\r\n", health::CheckResult::kOk,
                 "status 200", false);
}

}  // namespace
}  // namespace tether::proxy
