// LoadLog and LoadCounter: what pickers learn of load changes.
#include "balancer/load_log.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace tether::balancer {
namespace {

std::multiset<std::uint32_t> drain(LoadLog::Reader& r, bool* complete = nullptr) {
  std::multiset<std::uint32_t> ids;
  bool ok = r.poll([&ids](std::uint32_t id) { ids.insert(id); });
  if (complete != nullptr) *complete = ok;
  return ids;
}

TEST(LoadLog, ReaderSeesChangesMadeAfterIt) {
  LoadLog log;
  log.record(1);  // no reader yet: not kept
  LoadLog::Reader r(log);
  log.record(2);
  log.record(3);
  log.record(2);
  bool complete = false;
  EXPECT_EQ(drain(r, &complete), (std::multiset<std::uint32_t>{2, 2, 3}));
  EXPECT_TRUE(complete);
  EXPECT_TRUE(drain(r).empty());
}

TEST(LoadLog, EveryReaderSeesEveryChange) {
  LoadLog log;
  LoadLog::Reader a(log);
  LoadLog::Reader b(log);
  log.record(7);
  EXPECT_EQ(drain(a).count(7), 1u);
  EXPECT_EQ(drain(b).count(7), 1u);
}

TEST(LoadLog, AReaderTooFarBehindIsToldToRereadEverything) {
  LoadLog log;
  LoadLog::Reader r(log);
  for (std::size_t i = 0; i < LoadLog::kRingSize + 1; ++i) log.record(5);
  bool complete = true;
  drain(r, &complete);
  EXPECT_FALSE(complete);
  log.record(6);  // and it is back in step after
  EXPECT_EQ(drain(r, &complete), (std::multiset<std::uint32_t>{6}));
  EXPECT_TRUE(complete);
}

TEST(LoadLog, ChangesFromManyThreadsAllArrive) {
  LoadLog log;
  LoadLog::Reader r(log);
  constexpr int kThreads = 4;
  constexpr int kEach = 1000;  // below the ring size: nothing lost
  std::vector<std::thread> ts;
  for (int t = 0; t < kThreads; ++t)
    ts.emplace_back([&log, t] {
      for (int i = 0; i < kEach; ++i) log.record(static_cast<std::uint32_t>(t));
    });
  for (auto& t : ts) t.join();
  bool complete = false;
  auto ids = drain(r, &complete);
  EXPECT_TRUE(complete);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_EQ(ids.count(static_cast<std::uint32_t>(t)), kEach + 0u);
}

TEST(LoadCounter, BehavesAsAnAtomicAndLogsEveryChange) {
  LoadLog log;
  LoadCounter c;
  c.attach(&log, 42);
  LoadLog::Reader r(log);
  c.fetch_add(1, std::memory_order_relaxed);
  c++;
  ++c;
  c--;
  c = 10;
  c.fetch_sub(3);
  EXPECT_EQ(c.load(), 7u);
  EXPECT_EQ(static_cast<std::uint32_t>(c), 7u);
  EXPECT_EQ(drain(r).count(42), 6u);
}

TEST(LoadCounter, WithoutALogCountsOnly) {
  LoadCounter c;
  c.fetch_add(2);
  EXPECT_EQ(c.load(), 2u);
}

}  // namespace
}  // namespace tether::balancer
