// Behaviour every algorithm shares: accept() is honoured, weight 0 is never
// picked, weights set the shares, slow start ramps.
#include "balancer/picker.h"

#include <gtest/gtest.h>

#include <set>

#include "tests/unit/balancer/fixtures.h"

namespace tether::balancer {
namespace {

using testing::acceptAll;
using testing::Backends;
using testing::shares;
using testing::sharesUnderLoad;

class EveryPicker : public ::testing::TestWithParam<conf::Balance> {
 protected:
  std::unique_ptr<Picker> picker_ = makePicker(GetParam(), 7);
};

TEST_P(EveryPicker, PicksNothingFromAnEmptyList) {
  Backends none({});
  EXPECT_EQ(picker_->pick(none.span(), acceptAll, {}), nullptr);
}

TEST_P(EveryPicker, PicksNothingWhenAcceptRefusesAll) {
  Backends bs({100, 100, 100});
  int asked = 0;
  auto refuse = [&asked](const Backend&) {
    ++asked;
    return false;
  };
  EXPECT_EQ(picker_->pick(bs.span(), refuse, {}), nullptr);
  PickContext keyed;
  keyed.has_key = true;
  keyed.key_hash = hashKey("k");
  EXPECT_EQ(picker_->pick(bs.span(), refuse, keyed), nullptr);
  EXPECT_GE(asked, 3);
}

TEST_P(EveryPicker, NeverPicksARefusedBackend) {
  Backends bs({100, 100, 100});
  bs[1].admin_drain = true;
  auto available = [](const Backend& b) { return b.available(0); };
  for (int i = 0; i < 1000; ++i) {
    PickContext ctx;
    ctx.has_key = i % 2 == 0;
    ctx.key_hash = hashKey(std::to_string(i));
    Backend* b = picker_->pick(bs.span(), available, ctx);
    ASSERT_NE(b, nullptr);
    EXPECT_NE(b, &bs[1]);
  }
}

TEST_P(EveryPicker, NeverPicksWeightZero) {
  Backends bs({0, 100, 0, 50});
  for (int i = 0; i < 2000; ++i) {
    PickContext ctx;
    ctx.has_key = i % 2 == 0;
    ctx.key_hash = hashKey(std::to_string(i));
    Backend* b = picker_->pick(bs.span(), acceptAll, ctx);
    ASSERT_NE(b, nullptr);
    EXPECT_NE(b->weight.load(), 0u) << b->name;
  }
  Backends zeros({0, 0});
  EXPECT_EQ(picker_->pick(zeros.span(), acceptAll, {}), nullptr);
}

TEST_P(EveryPicker, EqualWeightsShareEvenlyAtZeroLoad) {
  Backends bs({100, 100, 100, 100});
  auto s = shares(*picker_, bs.span(), 100'000);
  ASSERT_EQ(s.size(), 4u);
  for (auto& [name, share] : s) EXPECT_NEAR(share, 0.25, 0.02) << name;
}

TEST_P(EveryPicker, UnequalWeightsShareByWeightUnderLoad) {
  Backends bs({100, 200, 300});
  auto s = sharesUnderLoad(*picker_, bs, 600, 100'000);
  EXPECT_NEAR(s[bs[0].name], 1.0 / 6, 0.02);
  EXPECT_NEAR(s[bs[1].name], 2.0 / 6, 0.02);
  EXPECT_NEAR(s[bs[2].name], 3.0 / 6, 0.02);
}

TEST_P(EveryPicker, SlowStartRampsWeight) {
  Backends bs({100, 100});
  PickContext ctx;
  ctx.now_ms = 1'000'000;
  ctx.slow_start_ms = 30'000;
  bs[1].up_since_ms = ctx.now_ms - 3'000;  // a tenth into the window: weight 10
  auto early = sharesUnderLoad(*picker_, bs, 220, 100'000, ctx);
  EXPECT_NEAR(early[bs[1].name], 10.0 / 110, 0.02);

  ctx.now_ms += 27'000;  // window over: full weight
  auto later = sharesUnderLoad(*picker_, bs, 220, 100'000, ctx);
  EXPECT_NEAR(later[bs[1].name], 0.5, 0.02);
}

// 500 and 1000 backends, a random third of them down, drained or ejected
// (refused by accept), some tried: never one of those, nullptr only when all
// are, and every one of the others sooner or later.
TEST_P(EveryPicker, LargeFleetsPickOnlyAvailableUntriedBackends) {
  for (std::size_t n : {500u, 1000u}) {
    Backends bs = Backends::many(n);
    std::uint64_t x = n;
    std::set<Backend*> ok;
    for (Backend* b : bs.span()) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      switch ((x >> 60) % 9) {
        case 0: b->state = BackendState::kDown; break;
        case 1: b->admin_drain = true; break;
        case 2: b->ejected_until_ms = 2'000; break;
        default: ok.insert(b);
      }
    }
    auto available = [](const Backend& b) { return b.available(1'000); };
    std::set<Backend*> seen;
    for (int i = 0; i < 20'000; ++i) {
      std::uint32_t tried = static_cast<std::uint32_t>(i % n);
      auto accept = [&](const Backend& b) { return available(b) && b.id != tried; };
      PickContext ctx;
      ctx.now_ms = 1'000;
      ctx.has_key = i % 2 == 0;
      ctx.key_hash = hashKey(std::to_string(i));
      Backend* b = picker_->pick(bs.span(), accept, ctx);
      ASSERT_NE(b, nullptr);
      ASSERT_TRUE(ok.count(b)) << b->name;
      ASSERT_NE(b->id, tried);
      seen.insert(b);
    }
    EXPECT_GT(seen.size(), ok.size() * 9 / 10) << n;
  }
}

TEST_P(EveryPicker, AllDownPicksNothingAndRecovers) {
  Backends bs = Backends::many(500);
  for (Backend* b : bs.span()) b->state = BackendState::kDown;
  PickContext keyed;
  keyed.has_key = true;
  keyed.key_hash = hashKey("k");
  EXPECT_EQ(picker_->pick(bs.span(), acceptAll, {}), nullptr);
  EXPECT_EQ(picker_->pick(bs.span(), acceptAll, keyed), nullptr);
  bs[400].state = BackendState::kUp;
  EXPECT_EQ(picker_->pick(bs.span(), acceptAll, {}), &bs[400]);
  EXPECT_EQ(picker_->pick(bs.span(), acceptAll, keyed), &bs[400]);
}

TEST_P(EveryPicker, LargeFleetSharesByWeightUnderLoad) {
  Backends bs = Backends::many(500);
  for (std::size_t i = 0; i < bs.size(); ++i) bs[i].weight = i < 250 ? 100 : 300;
  auto s = sharesUnderLoad(*picker_, bs, 2000, 200'000);
  double light = 0;
  for (std::size_t i = 0; i < 250; ++i) light += s[bs[i].name];
  // p2c compares only two, so it honours weights only as loads grow: with 4
  // in flight per backend the light half gets 0.31 (0.27 at 40). The p2c
  // that drew from a scan of every backend gave the same shares.
  EXPECT_NEAR(light, GetParam() == conf::Balance::kP2c ? 0.31 : 0.25, 0.02);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, EveryPicker,
                         ::testing::Values(conf::Balance::kRoundRobin, conf::Balance::kLeastConn,
                                           conf::Balance::kP2c, conf::Balance::kConsistentHash),
                         [](const auto& info) { return std::string(conf::toString(info.param)); });

}  // namespace
}  // namespace tether::balancer
