#include "health/ejector.h"

#include <gtest/gtest.h>

#include <memory>
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

// n backends in a table, as the worker's Runtime holds them.
struct Fleet {
  balancer::BackendTable table;
  explicit Fleet(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      auto b = std::make_unique<balancer::Backend>();
      b->id = static_cast<std::uint32_t>(i);
      b->name = "10.0.0." + std::to_string(i + 1) + ":8080";
      b->state = balancer::BackendState::kUp;
      table.add(std::move(b));
    }
  }
  balancer::Backend& operator[](std::size_t i) { return *table.at(i); }
  std::size_t ejected() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < table.size(); ++i) n += table.at(i)->ejected.load() ? 1 : 0;
    return n;
  }
};

// Fails `n` times at now_ms; returns what the last failure returned.
std::int64_t failTimes(const PassiveEjector& e, balancer::Backend& b, int n, std::int64_t now_ms) {
  std::int64_t r = 0;
  for (int i = 0; i < n; ++i) r = e.onFailure(b, now_ms);
  return r;
}

TEST(PassiveEjector, EjectsAfterConsecutiveFailures) {
  Fleet fleet(2);  // ejecting one of two keeps the default floor (50 %)
  PassiveEjector e(passive(5), fleet.table);
  balancer::Backend& b = fleet[0];
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e.onFailure(b, 1000), 0);
  EXPECT_EQ(e.onFailure(b, 1000), 1000 + kFor);
  EXPECT_TRUE(b.ejected.load());
  EXPECT_EQ(b.ejected_until_ms.load(), 1000 + kFor);
  EXPECT_FALSE(b.available(1000)) << "refused while ejected";
}

TEST(PassiveEjector, SuccessResetsTheStreak) {
  Fleet fleet(2);
  PassiveEjector e(passive(3), fleet.table);
  balancer::Backend& b = fleet[0];
  failTimes(e, b, 2, 1000);
  PassiveEjector::onSuccess(b);
  EXPECT_EQ(failTimes(e, b, 2, 1000), 0);
  EXPECT_EQ(b.consecutive_failures.load(), 2u);
  EXPECT_NE(e.onFailure(b, 1000), 0);
}

TEST(PassiveEjector, FailuresWhileEjectedDoNotCount) {
  Fleet fleet(2);
  PassiveEjector e(passive(2), fleet.table);
  balancer::Backend& b = fleet[0];
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
  Fleet fleet(2);
  PassiveEjector e(passive(1), fleet.table);
  balancer::Backend& b = fleet[0];
  EXPECT_EQ(ejectionDurations(e, b, 7, 1000),
            (std::vector<std::int64_t>{30'000, 60'000, 120'000, 240'000, 300'000, 300'000, 300'000}));
}

TEST(PassiveEjector, MultiplierResetsAfterStayingHealthyForEjectMax) {
  Fleet fleet(2);
  PassiveEjector e(passive(1), fleet.table);
  balancer::Backend& b = fleet[0];
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
  Fleet fleet(2);
  PassiveEjector e(passive(1, 10'000, 5'000), fleet.table);
  balancer::Backend& b = fleet[0];
  EXPECT_EQ(ejectionDurations(e, b, 3, 20'000), (std::vector<std::int64_t>{10'000, 10'000, 10'000}));
}

TEST(PassiveEjector, ZeroThresholdNeverEjects) {
  Fleet fleet(2);
  PassiveEjector e(passive(0), fleet.table);
  balancer::Backend& b = fleet[0];
  EXPECT_EQ(failTimes(e, b, 1000, 1000), 0);
  EXPECT_FALSE(b.ejected.load());
}

TEST(PassiveEjector, HugeCapDoesNotOverflow) {
  Fleet fleet(2);
  PassiveEjector e(passive(1, 1, INT64_MAX / 256), fleet.table);
  balancer::Backend& b = fleet[0];
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
  Fleet fleet(2);
  PassiveEjector e(passive(5), fleet.table);
  balancer::Backend& b = fleet[0];
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

TEST(PassiveFailure, OnlyTheListedBackendStatusesCount) {
  conf::Passive p;  // default: 502 and 504
  EXPECT_TRUE(countsAsPassiveFailure(p, 502));
  EXPECT_TRUE(countsAsPassiveFailure(p, 504));
  EXPECT_FALSE(countsAsPassiveFailure(p, 503)) << "the application's 503 is not a health signal";
  EXPECT_FALSE(countsAsPassiveFailure(p, 500));
  EXPECT_FALSE(countsAsPassiveFailure(p, 200));
  EXPECT_FALSE(countsAsPassiveFailure(p, 0));
  p.failure_statuses = {500, 503};
  EXPECT_TRUE(countsAsPassiveFailure(p, 503));
  EXPECT_TRUE(countsAsPassiveFailure(p, 500));
  EXPECT_FALSE(countsAsPassiveFailure(p, 502));
  p.failure_statuses.clear();
  EXPECT_FALSE(countsAsPassiveFailure(p, 502));
}

TEST(EjectionFloor, Arithmetic) {
  EXPECT_TRUE(ejectionKeepsFloor(1, 2, 50));
  EXPECT_FALSE(ejectionKeepsFloor(2, 2, 50));
  EXPECT_TRUE(ejectionKeepsFloor(1, 3, 50));
  EXPECT_FALSE(ejectionKeepsFloor(2, 3, 50));
  EXPECT_TRUE(ejectionKeepsFloor(5, 10, 50));
  EXPECT_FALSE(ejectionKeepsFloor(6, 10, 50));
  EXPECT_TRUE(ejectionKeepsFloor(1, 10, 10));
  EXPECT_FALSE(ejectionKeepsFloor(2, 10, 10));
  EXPECT_FALSE(ejectionKeepsFloor(1, 9, 10));
  EXPECT_TRUE(ejectionKeepsFloor(2, 2, 100));
  EXPECT_FALSE(ejectionKeepsFloor(1, 2, 0));
  EXPECT_FALSE(ejectionKeepsFloor(1, 1, 100)) << "one backend alone is never ejected";
  EXPECT_FALSE(ejectionKeepsFloor(1, 0, 100));
}

TEST(EjectionFloor, OneBackendAloneIsNeverEjected) {
  for (std::uint32_t percent : {50u, 100u}) {
    Fleet fleet(1);
    conf::Passive p = passive(5);
    p.max_ejection_percent = percent;
    PassiveEjector e(p, fleet.table);
    bool held = false;
    for (int i = 0; i < 100; ++i) EXPECT_EQ(e.onFailure(fleet[0], 1000, &held), 0);
    EXPECT_TRUE(held);
    EXPECT_FALSE(fleet[0].ejected.load());
    EXPECT_TRUE(fleet[0].available(1000));
  }
}

TEST(EjectionFloor, DefaultKeepsHalfTheFleet) {
  Fleet fleet(4);
  PassiveEjector e(passive(5), fleet.table);
  for (std::size_t i = 0; i < 4; ++i) failTimes(e, fleet[i], 5, 1000);
  EXPECT_EQ(fleet.ejected(), 2u);
  EXPECT_TRUE(fleet[0].ejected.load());
  EXPECT_TRUE(fleet[1].ejected.load());
  EXPECT_TRUE(fleet[2].available(1000));
  EXPECT_TRUE(fleet[3].available(1000));
}

TEST(EjectionFloor, AHeldStreakStartsOver) {
  Fleet fleet(2);
  PassiveEjector e(passive(3), fleet.table);
  failTimes(e, fleet[0], 3, 1000);
  ASSERT_TRUE(fleet[0].ejected.load());
  bool held = false;
  EXPECT_EQ(e.onFailure(fleet[1], 1000, &held), 0);
  EXPECT_EQ(e.onFailure(fleet[1], 1000, &held), 0);
  EXPECT_FALSE(held) << "below the threshold the floor is not asked";
  EXPECT_EQ(e.onFailure(fleet[1], 1000, &held), 0);
  EXPECT_TRUE(held);
  EXPECT_EQ(fleet[1].consecutive_failures.load(), 0u);
  EXPECT_FALSE(fleet[1].ejected.load());
}

TEST(EjectionFloor, ARecoveredBackendMakesRoom) {
  Fleet fleet(2);
  PassiveEjector e(passive(2), fleet.table);
  failTimes(e, fleet[0], 2, 1000);
  EXPECT_EQ(failTimes(e, fleet[1], 2, 1000), 0);
  PassiveEjector::onRecovered(fleet[0]);
  EXPECT_EQ(failTimes(e, fleet[1], 2, 2000), 2000 + kFor);
  EXPECT_TRUE(fleet[1].ejected.load());
  EXPECT_FALSE(fleet[0].ejected.load());
}

TEST(EjectionFloor, RemovedBackendsAreNotPartOfTheFleet) {
  Fleet fleet(4);
  fleet[2].state = balancer::BackendState::kRemoved;
  fleet[3].state = balancer::BackendState::kRemoved;
  fleet[3].ejected = true;  // ejected before it was removed: no longer counts
  PassiveEjector e(passive(1), fleet.table);
  EXPECT_NE(e.onFailure(fleet[0], 1000), 0);
  EXPECT_EQ(e.onFailure(fleet[1], 1000), 0) << "two live backends: one stays";
}

TEST(EjectionFloor, DownAndDrainingBackendsStillCountInTheFleet) {
  Fleet fleet(3);
  fleet[1].state = balancer::BackendState::kDown;
  fleet[2].state = balancer::BackendState::kDraining;
  PassiveEjector e(passive(1), fleet.table);
  EXPECT_NE(e.onFailure(fleet[0], 1000), 0) << "1 of 3 ejected is within 50 %";
}

TEST(EjectionFloor, PercentBoundsAreHonoured) {
  {
    Fleet fleet(3);
    conf::Passive p = passive(1);
    p.max_ejection_percent = 0;
    PassiveEjector e(p, fleet.table);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(e.onFailure(fleet[i], 1000), 0);
    EXPECT_EQ(fleet.ejected(), 0u);
  }
  {
    Fleet fleet(3);
    conf::Passive p = passive(1);
    p.max_ejection_percent = 100;
    PassiveEjector e(p, fleet.table);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_NE(e.onFailure(fleet[i], 1000), 0);
    EXPECT_EQ(fleet.ejected(), 3u) << "100 % is an explicit choice to allow emptying the pool";
  }
  {
    Fleet fleet(10);
    conf::Passive p = passive(1);
    p.max_ejection_percent = 10;  // Envoy's default
    PassiveEjector e(p, fleet.table);
    for (std::size_t i = 0; i < 10; ++i) e.onFailure(fleet[i], 1000);
    EXPECT_EQ(fleet.ejected(), 1u);
  }
}

TEST(EjectionFloor, WorkersEjectingDifferentBackendsAtOnceKeepTheFloor) {
  for (int round = 0; round < 50; ++round) {
    Fleet fleet(2);
    PassiveEjector e(passive(3), fleet.table);
    std::vector<std::thread> workers;
    for (std::size_t w = 0; w < 4; ++w) {
      workers.emplace_back([&, w] {
        for (int i = 0; i < 200; ++i) e.onFailure(fleet[w % 2], 1000);
      });
    }
    for (std::thread& t : workers) t.join();
    ASSERT_EQ(fleet.ejected(), 1u) << "round " << round;
  }
}

}  // namespace
}  // namespace tether::health
