#include "health/ejector.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace tether::health {
namespace {

constexpr std::int64_t kFor = 30'000;
constexpr std::int64_t kMax = 300'000;

conf::Passive passive(std::uint32_t failures, std::int64_t eject_for = kFor, std::int64_t eject_max = kMax) {
  conf::Passive p;
  p.consecutive_failures = failures;
  p.eject_for = eject_for;
  p.eject_max = eject_max;
  return p;
}

// Fails `n` times at now_ms; returns what the last failure returned.
std::int64_t failTimes(const PassiveEjector& e, balancer::Backend& b, int n, std::int64_t now_ms) {
  std::int64_t r = 0;
  for (int i = 0; i < n; ++i) r = e.onFailure(b, now_ms);
  return r;
}

TEST(PassiveEjector, EjectsAfterConsecutiveFailures) {
  PassiveEjector e(passive(5));
  balancer::Backend b;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e.onFailure(b, 1000), 0);
  EXPECT_EQ(e.onFailure(b, 1000), 1000 + kFor);
  EXPECT_TRUE(b.ejected.load());
  EXPECT_EQ(b.ejected_until_ms.load(), 1000 + kFor);
  EXPECT_FALSE(b.available(1000)) << "refused while ejected";
}

TEST(PassiveEjector, SuccessResetsTheStreak) {
  PassiveEjector e(passive(3));
  balancer::Backend b;
  failTimes(e, b, 2, 1000);
  PassiveEjector::onSuccess(b);
  EXPECT_EQ(failTimes(e, b, 2, 1000), 0);
  EXPECT_EQ(b.consecutive_failures.load(), 2u);
  EXPECT_NE(e.onFailure(b, 1000), 0);
}

TEST(PassiveEjector, FailuresWhileEjectedDoNotCount) {
  PassiveEjector e(passive(2));
  balancer::Backend b;
  std::int64_t until = failTimes(e, b, 2, 1000);
  // Requests that were in flight fail after the ejection, even past its end
  // (the active checks have not brought the backend back yet).
  EXPECT_EQ(failTimes(e, b, 10, until - 1), 0);
  EXPECT_EQ(failTimes(e, b, 10, until + 5000), 0);
  EXPECT_EQ(b.consecutive_failures.load(), 0u);
  PassiveEjector::onRecovered(b);
  EXPECT_EQ(e.onFailure(b, until + 6000), 0) << "back up: a new streak starts from zero";
  EXPECT_NE(e.onFailure(b, until + 6000), 0);
}

// Ejected, back up through the active checks soon after, failing again.
std::vector<std::int64_t> ejectionDurations(const PassiveEjector& e, balancer::Backend& b, int n,
                                            std::int64_t gap) {
  std::vector<std::int64_t> durations;
  std::int64_t now = 1000;
  for (int i = 0; i < n; ++i) {
    std::int64_t until = e.onFailure(b, now);
    EXPECT_NE(until, 0);
    durations.push_back(until - now);
    PassiveEjector::onRecovered(b);
    now = until + gap;
  }
  return durations;
}

TEST(PassiveEjector, RepeatsDoubleUpToTheCap) {
  PassiveEjector e(passive(1));
  balancer::Backend b;
  EXPECT_EQ(ejectionDurations(e, b, 7, 1000),
            (std::vector<std::int64_t>{30'000, 60'000, 120'000, 240'000, 300'000, 300'000, 300'000}));
}

TEST(PassiveEjector, MultiplierResetsAfterStayingHealthyForEjectMax) {
  PassiveEjector e(passive(1));
  balancer::Backend b;
  std::int64_t until = e.onFailure(b, 1000);
  PassiveEjector::onRecovered(b);
  until = e.onFailure(b, until + 1000);
  PassiveEjector::onRecovered(b);
  std::int64_t now = until + kMax - 1;
  until = e.onFailure(b, now);
  EXPECT_EQ(until - now, 120'000) << "not long enough";
  PassiveEjector::onRecovered(b);
  EXPECT_EQ(e.onFailure(b, until + kMax) - (until + kMax), kFor);
}

TEST(PassiveEjector, CapBelowBaseUsesBase) {
  PassiveEjector e(passive(1, 10'000, 5'000));
  balancer::Backend b;
  EXPECT_EQ(ejectionDurations(e, b, 3, 20'000), (std::vector<std::int64_t>{10'000, 10'000, 10'000}));
}

TEST(PassiveEjector, ZeroThresholdNeverEjects) {
  PassiveEjector e(passive(0));
  balancer::Backend b;
  EXPECT_EQ(failTimes(e, b, 1000, 1000), 0);
  EXPECT_FALSE(b.ejected.load());
}

TEST(PassiveEjector, HugeCapDoesNotOverflow) {
  PassiveEjector e(passive(1, 1, INT64_MAX / 256));
  balancer::Backend b;
  std::int64_t now = 1;
  for (int i = 0; i < 100; ++i) {
    std::int64_t until = e.onFailure(b, now);
    ASSERT_GT(until, now);
    PassiveEjector::onRecovered(b);
    now = until;
  }
}

TEST(PassiveEjector, WorkersFailingAtOnceEjectOnce) {
  // Every worker reports failures for the same backend: exactly one ejection.
  PassiveEjector e(passive(5));
  balancer::Backend b;
  std::atomic<int> ejections{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 4; ++w) {
    workers.emplace_back([&] {
      for (int i = 0; i < 1000; ++i)
        if (e.onFailure(b, 1000)) ejections.fetch_add(1);
    });
  }
  for (std::thread& t : workers) t.join();
  EXPECT_EQ(ejections.load(), 1);
  EXPECT_EQ(b.ejected_until_ms.load(), 1000 + kFor);
}

}  // namespace
}  // namespace tether::health
