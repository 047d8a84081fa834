// Behaviour every algorithm shares: accept() is honoured, weight 0 is never
// picked, weights set the shares, slow start ramps.
#include "balancer/picker.h"

#include <gtest/gtest.h>

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

INSTANTIATE_TEST_SUITE_P(Algorithms, EveryPicker,
                         ::testing::Values(conf::Balance::kRoundRobin, conf::Balance::kLeastConn,
                                           conf::Balance::kP2c, conf::Balance::kConsistentHash),
                         [](const auto& info) { return std::string(conf::toString(info.param)); });

}  // namespace
}  // namespace tether::balancer
