#include "proxy/forward/retry.h"

#include <gtest/gtest.h>

namespace tether::forward {
namespace {

Attempt base() {
  Attempt a;
  a.fault = Fault::kConnect;
  a.request_done = true;
  a.max_attempts = 2;
  return a;
}

TEST(Retry, ConnectFailureGoesToAnotherBackendWhateverTheMethod) {
  EXPECT_EQ(decideRetry(base()), Retry::kOtherBackend);
}

TEST(Retry, ResetOfANonIdempotentRequestIsNotRetried) {
  Attempt a = base();
  a.fault = Fault::kUpstreamReset;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
  a.idempotent = true;
  EXPECT_EQ(decideRetry(a), Retry::kOtherBackend);
}

TEST(Retry, StalePooledConnectionIsRetriedOnceOnTheSameBackend) {
  Attempt a = base();
  a.fault = Fault::kUpstreamReset;
  a.reused_connection = true;
  EXPECT_EQ(decideRetry(a), Retry::kSameBackend);
  a.request_done = false;  // still streaming the body: no replay on the same one
  EXPECT_EQ(decideRetry(a), Retry::kNo);
}

TEST(Retry, NothingAfterAResponseByteOrATrimmedRequest) {
  Attempt a = base();
  a.response_started = true;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
  a = base();
  a.request_trimmed = true;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
  a = base();
  a.client_eof = true;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
}

TEST(Retry, TimeoutsAreNotRetried) {
  Attempt a = base();
  a.fault = Fault::kFirstByteTimeout;
  a.idempotent = true;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
  EXPECT_EQ(failureStatus(Fault::kFirstByteTimeout), 504);
  EXPECT_EQ(failureStatus(Fault::kUpstreamTimeout), 504);
  EXPECT_EQ(failureStatus(Fault::kConnect), 502);
}

TEST(Retry, AttemptsAreBounded) {
  Attempt a = base();
  a.attempts = 2;
  EXPECT_EQ(decideRetry(a), Retry::kNo);
}

TEST(Retry, StrictPinsAreRefusedNotRedispatched) {
  Attempt a = base();
  a.strict_pin = true;
  EXPECT_EQ(decideRetry(a), Retry::kRefusePinned);
}

}  // namespace
}  // namespace tether::forward
