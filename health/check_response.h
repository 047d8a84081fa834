// Judging an active health check's answer: status range and body substring.
//
// Pure: the health checker (main loop, proxy/) sends GET health.path, then
// either streams the body through a BodyMatcher and calls evaluateMatched(),
// or, with the whole body at hand, calls evaluate(). A check that got no
// complete answer within health.timeout is CheckResult::kTimeout and is not
// evaluated here. The verdict's reason goes to the log and /admin/backends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace tether::health {

struct CheckExpect {
  std::uint16_t status_min = 200;
  std::uint16_t status_max = 299;
  std::string body_substring;  // empty: any body
};

CheckExpect checkExpectFrom(const conf::Health& health);

enum class CheckResult : std::uint8_t { kOk, kFail, kTimeout };
const char* toString(CheckResult r);  // "ok", "fail", "timeout": the metric's result label

struct CheckVerdict {
  CheckResult result = CheckResult::kFail;
  // "status 200" when ok; otherwise why not, e.g. "status 503 not in 200-299",
  // "body does not contain '\"status\":true'".
  std::string reason;
  bool ok() const { return result == CheckResult::kOk; }
};

// Only the first kMaxInspectedBodyBytes of a body are searched: a match must
// end within them. Bounds the work a misbehaving backend can cause.
inline constexpr std::size_t kMaxInspectedBodyBytes = 64 * 1024;

// Finds a needle in a body that arrives in pieces (Knuth-Morris-Pratt, so a
// needle split across chunks is found and no byte is looked at twice). Keeps
// no copy of the body. An empty needle is found at once.
class BodyMatcher {
 public:
  explicit BodyMatcher(std::string needle);

  void feed(std::string_view chunk);
  bool found() const { return found_; }
  // Found, or past the inspected bound: further feed() calls change nothing,
  // so the caller may stop reading.
  bool done() const { return found_ || seen_ >= kMaxInspectedBodyBytes; }

 private:
  std::string needle_;
  std::vector<std::uint32_t> fail_;  // KMP failure function of needle_
  std::uint32_t matched_ = 0;        // length of the needle prefix matched so far
  std::size_t seen_ = 0;             // body bytes inspected
  bool found_ = false;
};

// Status first (its reason wins), then the body.
CheckVerdict evaluate(const CheckExpect& expect, int status, std::string_view body);
// For a body streamed through a BodyMatcher built from expect.body_substring.
CheckVerdict evaluateMatched(const CheckExpect& expect, int status, bool body_matched);

}  // namespace tether::health
