// Backend's fields that pickers index: RotationField and the epoch.
#include "balancer/backend.h"

#include <gtest/gtest.h>

namespace tether::balancer {
namespace {

TEST(RotationField, AChangeMovesTheEpoch) {
  Backend b;
  std::uint64_t e0 = rotationEpoch();
  b.state = BackendState::kUp;
  std::uint64_t e1 = rotationEpoch();
  EXPECT_GT(e1, e0);
  b.admin_drain.store(true);
  b.weight = 50;
  b.ejected_until_ms = 1000;
  b.up_since_ms.store(5, std::memory_order_relaxed);
  EXPECT_GE(rotationEpoch(), e1 + 4);
}

TEST(RotationField, StoringTheSameValueDoesNot) {
  // The health checker and reloads store the value they have: no rebuild.
  Backend b;
  b.weight = 100;
  b.state = BackendState::kDown;
  std::uint64_t e = rotationEpoch();
  b.weight = 100;
  b.state.store(BackendState::kDown);
  EXPECT_EQ(rotationEpoch(), e);
  EXPECT_EQ(b.weight.load(), 100u);
}

TEST(SlowStartWeight, RampsFromOneToTheWeight) {
  EXPECT_EQ(slowStartWeight(100, 0, 5'000, 10'000), 100u);      // not ramping
  EXPECT_EQ(slowStartWeight(100, 1'000, 1'000, 10'000), 1u);    // just up
  EXPECT_EQ(slowStartWeight(100, 1'000, 6'000, 10'000), 50u);   // half way
  EXPECT_EQ(slowStartWeight(100, 1'000, 11'000, 10'000), 100u); // done
  EXPECT_EQ(slowStartWeight(100, 1'000, 6'000, 0), 100u);       // off
  EXPECT_EQ(slowStartWeight(0, 1'000, 6'000, 10'000), 0u);
}

TEST(BackendTable, AttachesLoadsToItsLog) {
  BackendTable t;
  Backend* b = t.add(std::make_unique<Backend>());
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->active_requests.log(), &t.loadLog());
  EXPECT_EQ(b->active_tunnels.log(), &t.loadLog());
  LoadLog::Reader r(t.loadLog());
  b->active_requests.fetch_add(1);
  int seen = 0;
  r.poll([&](std::uint32_t id) {
    EXPECT_EQ(id, b->id);
    ++seen;
  });
  EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace tether::balancer
