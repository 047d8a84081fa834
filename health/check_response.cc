#include "health/check_response.h"

#include <utility>

namespace tether::health {

CheckExpect checkExpectFrom(const conf::Health& health) {
  return CheckExpect{health.expect_status_min, health.expect_status_max, health.expect_body};
}

const char* toString(CheckResult r) {
  switch (r) {
    case CheckResult::kOk:
      return "ok";
    case CheckResult::kFail:
      return "fail";
    case CheckResult::kTimeout:
      return "timeout";
  }
  return "fail";
}

BodyMatcher::BodyMatcher(std::string needle) : needle_(std::move(needle)) {
  found_ = needle_.empty();
  fail_.assign(needle_.size(), 0);
  std::uint32_t k = 0;
  for (std::size_t i = 1; i < needle_.size(); ++i) {
    while (k > 0 && needle_[i] != needle_[k]) k = fail_[k - 1];
    if (needle_[i] == needle_[k]) ++k;
    fail_[i] = k;
  }
}

void BodyMatcher::feed(std::string_view chunk) {
  if (done()) return;
  if (chunk.size() > kMaxInspectedBodyBytes - seen_)
    chunk = chunk.substr(0, kMaxInspectedBodyBytes - seen_);
  seen_ += chunk.size();
  for (char c : chunk) {
    while (matched_ > 0 && c != needle_[matched_]) matched_ = fail_[matched_ - 1];
    if (c == needle_[matched_]) ++matched_;
    if (matched_ == needle_.size()) {
      found_ = true;
      return;
    }
  }
}

CheckVerdict evaluateMatched(const CheckExpect& expect, int status, bool body_matched) {
  if (status < expect.status_min || status > expect.status_max) {
    std::string want =
        expect.status_min == expect.status_max
            ? std::to_string(expect.status_min)
            : "in " + std::to_string(expect.status_min) + "-" + std::to_string(expect.status_max);
    return {CheckResult::kFail, "status " + std::to_string(status) + " not " + want};
  }
  if (!expect.body_substring.empty() && !body_matched)
    return {CheckResult::kFail, "body does not contain '" + expect.body_substring + "'"};
  return {CheckResult::kOk, "status " + std::to_string(status)};
}

CheckVerdict evaluate(const CheckExpect& expect, int status, std::string_view body) {
  BodyMatcher matcher(expect.body_substring);
  matcher.feed(body);
  return evaluateMatched(expect, status, matcher.found());
}

}  // namespace tether::health
