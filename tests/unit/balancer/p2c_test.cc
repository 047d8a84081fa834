#include <gtest/gtest.h>

#include <set>

#include "balancer/picker.h"
#include "tests/unit/balancer/fixtures.h"

namespace tether::balancer {
namespace {

using testing::acceptAll;
using testing::Backends;

TEST(P2c, NeverPicksTheMostLoaded) {
  // Two distinct candidates: the most loaded one always loses its duel.
  Backends bs({100, 100, 100, 100});
  bs[2].active_requests = 100;
  bs[0].active_requests = 1;
  auto p2c = makePicker(conf::Balance::kP2c, 1);
  for (int i = 0; i < 10'000; ++i) ASSERT_NE(p2c->pick(bs.span(), acceptAll, {}), &bs[2]);
}

TEST(P2c, PicksTheOnlyAcceptedBackend) {
  Backends bs({100, 100, 100});
  bs[1].active_requests = 1000;
  auto only_b = [](const Backend& b) { return b.id == 1; };
  auto p2c = makePicker(conf::Balance::kP2c, 1);
  EXPECT_EQ(p2c->pick(bs.span(), only_b, {}), &bs[1]);
}

TEST(P2c, SameSeedSameChoices) {
  Backends bs({100, 100, 100, 100, 100});
  auto a = makePicker(conf::Balance::kP2c, 99);
  auto b = makePicker(conf::Balance::kP2c, 99);
  for (int i = 0; i < 1000; ++i)
    ASSERT_EQ(a->pick(bs.span(), acceptAll, {}), b->pick(bs.span(), acceptAll, {}));
}

TEST(P2c, KeepsLoadsLevelUnderLoad) {
  Backends bs({100, 100, 100, 100});
  auto p2c = makePicker(conf::Balance::kP2c, 3);
  testing::sharesUnderLoad(*p2c, bs, 400,
                           20'000);  // warm up, then look at the loads live
  std::uint32_t worst_spread = 0;
  for (int i = 0; i < 400; ++i) {
    Backend* b = p2c->pick(bs.span(), acceptAll, {});
    b->active_requests++;
    std::uint32_t lo = UINT32_MAX, hi = 0;
    for (Backend* x : bs.span()) {
      lo = std::min(lo, x->load());
      hi = std::max(hi, x->load());
    }
    worst_spread = std::max(worst_spread, hi - lo);
  }
  // 400 requests on 4 backends: p2c keeps the spread small (random would
  // drift to tens).
  EXPECT_LE(worst_spread, 6u);
}

TEST(P2c, LargeFleetNeverPicksTheMostLoadedNorARefused) {
  Backends bs = Backends::many(500);
  for (Backend* b : bs.span()) b->active_requests = 1;
  bs[250].active_requests = 1000;
  auto p2c = makePicker(conf::Balance::kP2c, 5);
  auto not_7 = [](const Backend& b) { return b.id != 7; };
  std::set<Backend*> seen;
  for (int i = 0; i < 20'000; ++i) {
    Backend* b = p2c->pick(bs.span(), not_7, {});
    ASSERT_NE(b, &bs[250]);
    ASSERT_NE(b, &bs[7]);
    seen.insert(b);
  }
  EXPECT_EQ(seen.size(), 498u);  // everyone else, sooner or later
}

TEST(P2c, DrawsOnlyAmongThoseInRotation) {
  Backends bs = Backends::many(1000);
  for (std::size_t i = 0; i < bs.size(); ++i)
    if (i % 100 != 0) bs[i].state = BackendState::kDown;
  auto p2c = makePicker(conf::Balance::kP2c, 5);
  int asked = 0;
  auto count = [&asked](const Backend&) {
    ++asked;
    return true;
  };
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(p2c->pick(bs.span(), count, {})->id % 100, 0u);
  EXPECT_EQ(asked, 2000);  // two questions per pick
}

TEST(P2c, FindsTheOnlyAcceptedOfMany) {
  Backends bs = Backends::many(1000);
  auto p2c = makePicker(conf::Balance::kP2c, 5);
  auto only = [](const Backend& b) { return b.id == 600; };
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p2c->pick(bs.span(), only, {}), &bs[600]);
  auto two = [](const Backend& b) { return b.id == 600 || b.id == 601; };
  bs[601].active_requests = 10;
  for (int i = 0; i < 10; ++i) EXPECT_EQ(p2c->pick(bs.span(), two, {}), &bs[600]);
}

}  // namespace
}  // namespace tether::balancer
