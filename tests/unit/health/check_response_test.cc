#include "health/check_response.h"

#include <gtest/gtest.h>

#include <string>

namespace tether::health {
namespace {

CheckExpect expect(std::string body = "") { return CheckExpect{200, 299, std::move(body)}; }

TEST(Evaluate, StatusInRangeIsOk) {
  for (int s : {200, 204, 299}) {
    CheckVerdict v = evaluate(expect(), s, "");
    EXPECT_TRUE(v.ok()) << s;
    EXPECT_EQ(v.result, CheckResult::kOk);
    EXPECT_EQ(v.reason, "status " + std::to_string(s));
  }
}

TEST(Evaluate, StatusOutOfRangeFailsWithReason) {
  CheckVerdict v = evaluate(expect(), 503, "");
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.result, CheckResult::kFail);
  EXPECT_EQ(v.reason, "status 503 not in 200-299");
  EXPECT_FALSE(evaluate(expect(), 199, "").ok());
  EXPECT_FALSE(evaluate(expect(), 300, "").ok());
  EXPECT_FALSE(evaluate(expect(), 0, "").ok());
}

TEST(Evaluate, SingleStatusReadsAsOne) {
  CheckVerdict v = evaluate(CheckExpect{204, 204, ""}, 200, "");
  EXPECT_EQ(v.reason, "status 200 not 204");
}

TEST(Evaluate, BodyMustContainTheSubstring) {
  // Open WebUI's SPA answers 200 with HTML to any path; /health says JSON.
  EXPECT_TRUE(evaluate(expect("\"status\":true"), 200, "{\"status\":true}").ok());
  CheckVerdict v = evaluate(expect("\"status\":true"), 200, "<!doctype html><html>");
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.reason, "body does not contain '\"status\":true'");
}

TEST(Evaluate, StatusReasonWinsOverBody) {
  CheckVerdict v = evaluate(expect("ok"), 500, "not ok");
  EXPECT_EQ(v.reason, "status 500 not in 200-299");
}

TEST(Evaluate, EmptyExpectedBodyAcceptsAnyBody) {
  EXPECT_TRUE(evaluate(expect(), 200, "whatever").ok());
}

TEST(Evaluate, MatchedVariantForStreamedBodies) {
  EXPECT_TRUE(evaluateMatched(expect("x"), 200, true).ok());
  EXPECT_FALSE(evaluateMatched(expect("x"), 200, false).ok());
  EXPECT_TRUE(evaluateMatched(expect(), 200, false).ok());
}

TEST(Evaluate, FromConfig) {
  conf::Health h;
  h.expect_status_min = 200;
  h.expect_status_max = 399;
  h.expect_body = "up";
  CheckExpect e = checkExpectFrom(h);
  EXPECT_EQ(e.status_min, 200);
  EXPECT_EQ(e.status_max, 399);
  EXPECT_EQ(e.body_substring, "up");
}

TEST(CheckResult, MetricLabels) {
  EXPECT_STREQ(toString(CheckResult::kOk), "ok");
  EXPECT_STREQ(toString(CheckResult::kFail), "fail");
  EXPECT_STREQ(toString(CheckResult::kTimeout), "timeout");
}

bool foundInTwo(const std::string& needle, const std::string& body, std::size_t split) {
  BodyMatcher m(needle);
  m.feed(std::string_view(body).substr(0, split));
  m.feed(std::string_view(body).substr(split));
  return m.found();
}

TEST(BodyMatcher, FindsANeedleSplitAtEveryPoint) {
  const std::string needle = "\"status\":true";
  const std::string body = "{\"version\":\"0.6\",\"status\":true}";
  for (std::size_t i = 0; i <= body.size(); ++i) EXPECT_TRUE(foundInTwo(needle, body, i)) << i;
}

TEST(BodyMatcher, FindsANeedleSplitIntoThreeAtEveryPair) {
  const std::string needle = "abcab";
  const std::string body = "xxabcabcabyy";
  for (std::size_t i = 0; i <= body.size(); ++i) {
    for (std::size_t j = i; j <= body.size(); ++j) {
      BodyMatcher m(needle);
      m.feed(std::string_view(body).substr(0, i));
      m.feed(std::string_view(body).substr(i, j - i));
      m.feed(std::string_view(body).substr(j));
      EXPECT_TRUE(m.found()) << i << "," << j;
    }
  }
}

TEST(BodyMatcher, FindsOneByteAtATime) {
  BodyMatcher m("aab");
  for (char c : std::string("aaaaab")) m.feed(std::string_view(&c, 1));
  EXPECT_TRUE(m.found());
}

TEST(BodyMatcher, HandlesSelfOverlappingNeedles) {
  // Naive restart after a partial match misses these.
  EXPECT_TRUE(foundInTwo("aab", "aaab", 2));
  EXPECT_TRUE(foundInTwo("abab", "abaabab", 3));
  EXPECT_TRUE(foundInTwo("abcabd", "abcabcabd", 5));
}

TEST(BodyMatcher, DoesNotFindWhatIsNotThere) {
  for (std::size_t i = 0; i <= 9; ++i) EXPECT_FALSE(foundInTwo("status", "statu stat", i)) << i;
  BodyMatcher m("abc");
  m.feed("ab");
  m.feed("");
  m.feed("xc");
  EXPECT_FALSE(m.found());
}

TEST(BodyMatcher, EmptyNeedleIsFoundAtOnce) {
  BodyMatcher m("");
  EXPECT_TRUE(m.found());
  EXPECT_TRUE(m.done());
}

TEST(BodyMatcher, InspectsOnlyTheFirst64KiB) {
  const std::string needle = "NEEDLE";
  std::string pad(kMaxInspectedBodyBytes - needle.size(), '.');

  BodyMatcher fits(needle);  // ends exactly at the bound
  fits.feed(pad);
  fits.feed(needle);
  EXPECT_TRUE(fits.found());

  BodyMatcher straddles(needle);  // last byte is past the bound
  straddles.feed(pad + ".");
  straddles.feed(needle);
  EXPECT_FALSE(straddles.found());
  EXPECT_TRUE(straddles.done());

  BodyMatcher beyond(needle);
  beyond.feed(std::string(kMaxInspectedBodyBytes, '.') + needle);
  EXPECT_FALSE(beyond.found());
  EXPECT_TRUE(beyond.done());
}

TEST(BodyMatcher, StopsWorkingOnceFound) {
  BodyMatcher m("ok");
  m.feed("ok");
  EXPECT_TRUE(m.done());
  m.feed("anything");
  EXPECT_TRUE(m.found());
}

}  // namespace
}  // namespace tether::health
