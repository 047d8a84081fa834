#include <gtest/gtest.h>

#include <set>

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

}  // namespace
}  // namespace tether::balancer
