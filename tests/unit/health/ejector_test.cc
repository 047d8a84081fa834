#include "health/ejector.h"

#include <gtest/gtest.h>

#include <vector>

namespace tether::health {
namespace {

constexpr std::int64_t kFor = 30'000;
constexpr std::int64_t kMax = 300'000;

// Fails `n` times at now_ms; returns what the last failure returned.
std::int64_t failTimes(PassiveEjector& e, int n, std::int64_t now_ms) {
  std::int64_t r = 0;
  for (int i = 0; i < n; ++i) r = e.onFailure(now_ms);
  return r;
}

TEST(PassiveEjector, EjectsAfterConsecutiveFailures) {
  PassiveEjector e(5, kFor, kMax);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e.onFailure(1000), 0);
  EXPECT_EQ(e.onFailure(1000), 1000 + kFor);
  EXPECT_TRUE(e.ejected(1000));
  EXPECT_FALSE(e.ejected(1000 + kFor));
  EXPECT_EQ(e.ejections(), 1);
}

TEST(PassiveEjector, SuccessResetsTheStreak) {
  PassiveEjector e(3, kFor, kMax);
  failTimes(e, 2, 1000);
  e.onSuccess();
  EXPECT_EQ(failTimes(e, 2, 1000), 0);
  EXPECT_EQ(e.consecutiveFailures(), 2u);
  EXPECT_NE(e.onFailure(1000), 0);
}

TEST(PassiveEjector, FailuresWhileEjectedDoNotCount) {
  PassiveEjector e(2, kFor, kMax);
  std::int64_t until = failTimes(e, 2, 1000);
  EXPECT_EQ(failTimes(e, 10, until - 1), 0);
  EXPECT_EQ(e.ejections(), 1);
  EXPECT_EQ(e.consecutiveFailures(), 0u);
}

TEST(PassiveEjector, RepeatsDoubleUpToTheCap) {
  PassiveEjector e(1, kFor, kMax);
  std::vector<std::int64_t> durations;
  std::int64_t now = 1000;
  for (int i = 0; i < 7; ++i) {
    std::int64_t until = e.onFailure(now);
    ASSERT_NE(until, 0);
    durations.push_back(until - now);
    now = until + 1000;  // back in rotation, fails again soon
  }
  EXPECT_EQ(durations, (std::vector<std::int64_t>{30'000, 60'000, 120'000, 240'000, 300'000,
                                                  300'000, 300'000}));
}

TEST(PassiveEjector, MultiplierResetsAfterStayingHealthyForEjectMax) {
  PassiveEjector e(1, kFor, kMax);
  std::int64_t until = e.onFailure(1000);
  until = e.onFailure(until + 1000);
  EXPECT_EQ(e.onFailure(until + kMax - 1) - (until + kMax - 1),
            120'000);  // not long enough
  until = e.ejectedUntil();
  EXPECT_EQ(e.onFailure(until + kMax) - (until + kMax), kFor);
}

TEST(PassiveEjector, RecoveryEndsTheEjectionButKeepsTheMultiplier) {
  PassiveEjector e(1, kFor, kMax);
  EXPECT_EQ(e.onFailure(1000), 1000 + kFor);
  e.onRecovered();
  EXPECT_FALSE(e.ejected(1001));
  EXPECT_EQ(e.onFailure(2000), 2000 + 2 * kFor);
}

TEST(PassiveEjector, CapBelowBaseUsesBase) {
  PassiveEjector e(1, 10'000, 5'000);
  EXPECT_EQ(e.onFailure(0 + 1), 1 + 10'000);
  EXPECT_EQ(e.onFailure(20'000), 20'000 + 10'000);
}

TEST(PassiveEjector, ZeroThresholdNeverEjects) {
  PassiveEjector e(0, kFor, kMax);
  EXPECT_EQ(failTimes(e, 1000, 1000), 0);
  EXPECT_EQ(e.ejections(), 0);
}

TEST(PassiveEjector, HugeCapDoesNotOverflow) {
  PassiveEjector e(1, 1, INT64_MAX / 256);
  std::int64_t now = 1;
  for (int i = 0; i < 100; ++i) {
    std::int64_t until = e.onFailure(now);
    ASSERT_GT(until, now);
    now = until;
  }
}

}  // namespace
}  // namespace tether::health
