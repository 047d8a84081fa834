#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "balancer/picker.h"
#include "tests/unit/balancer/fixtures.h"

namespace tether::balancer {
namespace {

using testing::acceptAll;
using testing::Backends;

TEST(LeastConn, PrefersLowerLoad) {
  Backends bs({100, 100, 100});
  bs[0].active_requests = 5;
  bs[1].active_tunnels = 1;
  bs[2].active_requests = 3;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[1]);
}

TEST(LeastConn, CountsTunnelsAsLoad) {
  Backends bs({100, 100});
  bs[0].active_tunnels = 2;
  bs[1].active_requests = 1;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[1]);
}

TEST(LeastConn, RespectsWeights) {
  Backends bs({100, 300});
  bs[0].active_requests = 1;  // (1+1)/100 = 0.02
  bs[1].active_requests = 2;  // (2+1)/300 = 0.01
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[1]);
  bs[1].active_requests = 6;  // 7/300 > 0.02
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[0]);
}

TEST(LeastConn, PrefersTheHeavierIdleBackend) {
  Backends bs({100, 200});
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[1]);
}

TEST(LeastConn, EqualBackendsTakeTurns) {
  Backends bs({100, 100, 100});
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  std::set<Backend*> seen;
  for (int i = 0; i < 3; ++i) seen.insert(lc->pick(bs.span(), acceptAll, {}));
  EXPECT_EQ(seen.size(), 3u);
}

TEST(LeastConn, SkipsDrainingBackends) {
  Backends bs({100, 100});
  bs[1].active_requests = 50;
  bs[0].admin_drain = true;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  auto available = [](const Backend& b) { return b.available(0); };
  EXPECT_EQ(lc->pick(bs.span(), available, {}), &bs[1]);
}

TEST(LeastConn, SkipsEjectedBackendsUntilTheEjectionEnds) {
  Backends bs({100, 100});
  bs[1].active_requests = 50;
  bs[0].ejected_until_ms = 1000;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  std::int64_t now = 999;
  auto available = [&now](const Backend& b) { return b.available(now); };
  EXPECT_EQ(lc->pick(bs.span(), available, {}), &bs[1]);
  now = 1000;
  EXPECT_EQ(lc->pick(bs.span(), available, {}), &bs[0]);
}

// The lowest (load + 1) / weight among the accepted backends in rotation, by
// a look at every one: what least_conn's choice must always equal.
bool isLightestAccepted(Backends& bs, const Backend* chosen, Accept accept) {
  for (Backend* b : bs.span()) {
    if (!inRotation(*b) || !accept(*b)) continue;
    if ((std::uint64_t{b->load()} + 1) * chosen->weight.load() <
        (std::uint64_t{chosen->load()} + 1) * b->weight.load())
      return false;
  }
  return true;
}

// Random request starts and ends, weights, health flaps and retries on 500 or
// 1000 backends; after every change the pick is the lightest accepted one.
void churn(Backends& bs, std::uint64_t seed, int steps) {
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  std::uint64_t x = seed;
  auto rnd = [&x](std::uint64_t n) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % n;
  };
  std::vector<Backend*> running;
  for (int i = 0; i < steps; ++i) {
    std::uint64_t r = rnd(100);
    if (r < 2) {
      Backend& b = bs[rnd(bs.size())];
      b.state = b.state.load() == BackendState::kUp ? BackendState::kDown : BackendState::kUp;
    } else if (r < 3) {
      bs[rnd(bs.size())].weight = static_cast<std::uint32_t>(1 + rnd(300));
    } else if (r < 40 && !running.empty()) {
      std::size_t k = rnd(running.size());
      running[k]->active_requests--;
      running[k] = running.back();
      running.pop_back();
    }
    std::uint32_t tried = static_cast<std::uint32_t>(rnd(bs.size()));
    bool retry = r % 7 == 0;
    auto accept = [&](const Backend& b) { return !retry || b.id != tried; };
    Backend* b = lc->pick(bs.span(), accept, {});
    bool any = std::any_of(bs.span().begin(), bs.span().end(),
                           [&](const Backend* c) { return inRotation(*c) && accept(*c); });
    ASSERT_EQ(b != nullptr, any) << "step " << i;
    if (b == nullptr) continue;
    ASSERT_TRUE(inRotation(*b));
    ASSERT_TRUE(accept(*b));
    ASSERT_TRUE(isLightestAccepted(bs, b, accept)) << "step " << i;
    b->active_requests++;
    running.push_back(b);
  }
  for (Backend* b : running) b->active_requests--;
}

TEST(LeastConn, IsTheLightestAcceptedOnLargeFleets) {
  for (std::size_t n : {500u, 1000u}) {
    Backends bs = Backends::many(n);
    churn(bs, n, 20'000);
  }
}

TEST(LeastConn, IsTheLightestAcceptedAsTheRotationCrossesTheScanThreshold) {
  // Ten backends flapping: the rotation keeps moving across the 8 up to which
  // a pick scans the live loads instead of keeping heaps.
  Backends bs = Backends::many(10);
  churn(bs, 11, 20'000);
}

TEST(LeastConn, IsExactWithoutALoadLogToo) {
  Backends bs = Backends::many(500, Backends::Loads::kUnlogged);
  churn(bs, 3, 5'000);
}

TEST(LeastConn, RereadsEveryLoadAfterLosingChanges) {
  Backends bs = Backends::many(500);
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  lc->pick(bs.span(), acceptAll, {});
  // More changes than a ring keeps, between two picks.
  for (std::size_t i = 0; i < LoadLog::kRingSize + 10; ++i) bs[i % 500].active_requests++;
  bs[321].active_requests = 0;
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[321]);
}

TEST(LeastConn, SeesLoadsChangedOnAnotherThread) {
  Backends bs = Backends::many(500);
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  lc->pick(bs.span(), acceptAll, {});
  std::thread([&bs] {
    for (Backend* b : bs.span()) b->active_requests.fetch_add(5, std::memory_order_relaxed);
    bs[99].active_requests.fetch_sub(5, std::memory_order_relaxed);
  }).join();
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[99]);
}

TEST(LeastConn, CatchesUpWithWorkersThatChangeLoadsMeanwhile) {
  // Two other "workers" start and end requests while this loop picks; once
  // they stop, the next pick is exact again.
  Backends bs = Backends::many(500);
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w)
    workers.emplace_back([&bs, &stop, w] {
      std::uint64_t x = 7 + w;
      std::vector<Backend*> mine;
      while (!stop.load(std::memory_order_relaxed) || !mine.empty()) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (!stop.load(std::memory_order_relaxed) && mine.size() < 200) {
          Backend* b = &bs[x % bs.size()];
          b->active_requests.fetch_add(1, std::memory_order_relaxed);
          mine.push_back(b);
        } else {
          mine.back()->active_requests.fetch_sub(1, std::memory_order_relaxed);
          mine.pop_back();
        }
      }
    });
  for (int i = 0; i < 20'000; ++i) ASSERT_NE(lc->pick(bs.span(), acceptAll, {}), nullptr);
  stop = true;
  for (auto& t : workers) t.join();
  bs[250].active_requests = 0;
  for (Backend* b : bs.span())
    if (b != &bs[250]) b->active_requests = 1;
  EXPECT_EQ(lc->pick(bs.span(), acceptAll, {}), &bs[250]);
}

TEST(LeastConn, AllDownPicksNothingWithoutAsking) {
  Backends bs = Backends::many(500);
  for (Backend* b : bs.span()) b->state = BackendState::kDown;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  int asked = 0;
  auto count = [&asked](const Backend&) {
    ++asked;
    return true;
  };
  EXPECT_EQ(lc->pick(bs.span(), count, {}), nullptr);
  EXPECT_EQ(asked, 0);
}

TEST(LeastConn, FindsTheOnlyAcceptedOfMany) {
  Backends bs = Backends::many(1000);
  bs[5].active_requests = 100;
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  auto only = [](const Backend& b) { return b.id == 5; };
  EXPECT_EQ(lc->pick(bs.span(), only, {}), &bs[5]);
  EXPECT_EQ(lc->pick(bs.span(), [](const Backend&) { return false; }, {}), nullptr);
}

TEST(LeastConn, EqualBackendsTakeTurnsOnALargeFleet) {
  Backends bs = Backends::many(500);
  auto lc = makePicker(conf::Balance::kLeastConn, 0);
  std::set<Backend*> seen;
  for (int i = 0; i < 500; ++i) seen.insert(lc->pick(bs.span(), acceptAll, {}));
  EXPECT_EQ(seen.size(), 500u);
}

}  // namespace
}  // namespace tether::balancer
