// hashKey(), hashPick() and the consistent_hash picker.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <vector>

#include "balancer/picker.h"
#include "tests/unit/balancer/fixtures.h"

namespace tether::balancer {
namespace {

using testing::acceptAll;
using testing::Backends;

std::uint64_t key(int i) { return hashKey("session-" + std::to_string(i)); }

TEST(HashKey, IsStableAcrossVersions) {
  // Changing these moves every unpinned key in a running fleet.
  EXPECT_EQ(hashKey(""), 0xc3817c016ba4ff30ULL);
  EXPECT_EQ(hashKey("user-42"), 0xe28ba372823de243ULL);
}

TEST(HashKey, DiffersForDifferentKeys) {
  EXPECT_NE(hashKey("a"), hashKey("b"));
  EXPECT_NE(hashKey("ab"), hashKey("ba"));
}

TEST(HashPick, SameKeySameBackend) {
  Backends bs({100, 100, 100, 100, 100});
  for (int i = 0; i < 1000; ++i)
    EXPECT_EQ(hashPick(bs.span(), acceptAll, key(i)), hashPick(bs.span(), acceptAll, key(i)));
}

TEST(HashPick, BackendOrderAndIdsDoNotMatter) {
  // Two tethers that learned the same backends in different orders.
  Backends one({});
  Backends two({});
  std::vector<std::string> names{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80",
                                 "[fd00::5]:80"};
  for (auto& n : names) one.add(n);
  std::reverse(names.begin(), names.end());
  for (auto& n : names) two.add(n);
  for (int i = 0; i < 5000; ++i)
    ASSERT_EQ(hashPick(one.span(), acceptAll, key(i))->name,
              hashPick(two.span(), acceptAll, key(i))->name);
}

TEST(HashPick, EqualWeightsShareEvenly) {
  Backends bs({100, 100, 100, 100});
  std::map<Backend*, int> n;
  for (int i = 0; i < 100'000; ++i) ++n[hashPick(bs.span(), acceptAll, key(i))];
  for (auto& [b, c] : n) EXPECT_NEAR(c / 100'000.0, 0.25, 0.02) << b->name;
}

TEST(HashPick, WeightsSetTheShares) {
  Backends bs({100, 200, 300});
  std::map<Backend*, int> n;
  for (int i = 0; i < 100'000; ++i) ++n[hashPick(bs.span(), acceptAll, key(i))];
  EXPECT_NEAR(n[&bs[0]] / 100'000.0, 1.0 / 6, 0.02);
  EXPECT_NEAR(n[&bs[1]] / 100'000.0, 2.0 / 6, 0.02);
  EXPECT_NEAR(n[&bs[2]] / 100'000.0, 3.0 / 6, 0.02);
}

TEST(HashPick, RemovingABackendMovesOnlyItsKeys) {
  Backends bs({100, 100, 100, 100, 100, 100, 100, 100, 100, 100});
  std::vector<Backend*> without(bs.ptrs());
  without.erase(without.begin() + 3);
  int moved = 0;
  const int kKeys = 20'000;
  for (int i = 0; i < kKeys; ++i) {
    Backend* before = hashPick(bs.span(), acceptAll, key(i));
    Backend* after = hashPick(without, acceptAll, key(i));
    if (before != &bs[3]) {
      ASSERT_EQ(before, after) << i;
    } else {
      ++moved;
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / kKeys, 0.1, 0.01);
}

TEST(HashPick, RefusingABackendMovesOnlyItsKeys) {
  Backends bs({100, 100, 100, 100});
  auto not_c = [](const Backend& b) { return b.id != 2; };
  for (int i = 0; i < 5000; ++i) {
    Backend* before = hashPick(bs.span(), acceptAll, key(i));
    Backend* after = hashPick(bs.span(), not_c, key(i));
    if (before != &bs[2]) {
      ASSERT_EQ(before, after);
    }
    ASSERT_NE(after, &bs[2]);
  }
}

TEST(HashPick, AddingABackendTakesAboutOneShare) {
  Backends bs({100, 100, 100, 100, 100, 100, 100, 100, 100});
  std::vector<Backend*> before_set(bs.ptrs());
  Backend* added = bs.add("10.0.0.10:8080");
  int moved = 0;
  const int kKeys = 20'000;
  for (int i = 0; i < kKeys; ++i) {
    Backend* before = hashPick(before_set, acceptAll, key(i));
    Backend* after = hashPick(bs.span(), acceptAll, key(i));
    if (before != after) {
      ASSERT_EQ(after, added);
      ++moved;
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / kKeys, 0.1, 0.01);
}

TEST(HashPick, BoundedLoadSpreadsAHotKey) {
  Backends bs({100, 100, 100, 100});
  const double kFactor = 1.25;
  const std::uint64_t hot = hashKey("hot");
  Backend* home = hashPick(bs.span(), acceptAll, hot);
  for (int i = 0; i < 1000; ++i) {
    double total = 0;
    for (Backend* b : bs.span()) total += b->load();
    double mean = total / bs.size();
    Backend* b = hashPick(bs.span(), acceptAll, hot, kFactor);
    ASSERT_LE(b->load(), kFactor * mean + 1) << "pick " << i;
    b->active_requests++;
  }
  // The key's home took its bounded share, the rest spilled over.
  double mean = 1000.0 / bs.size();
  EXPECT_LE(home->load(), kFactor * mean + 2);
  EXPECT_GE(home->load(), mean);
  for (Backend* b : bs.span()) EXPECT_GT(b->load(), 0u) << b->name;
}

TEST(HashPick, LowLoadKeepsKeysAtHome) {
  // The +1 of slack: a second request for a key at an idle fleet stays put.
  Backends bs({100, 100, 100, 100});
  Backend* home = hashPick(bs.span(), acceptAll, key(1));
  home->active_requests = 1;
  EXPECT_EQ(hashPick(bs.span(), acceptAll, key(1)), home);
}

TEST(HashPick, PicksTheBestAcceptedWhenAllAreOverTheBound) {
  Backends bs({100, 100, 100});
  Backend* home = hashPick(bs.span(), acceptAll, key(7));
  for (Backend* b : bs.span()) b->active_requests = 10;
  EXPECT_EQ(hashPick(bs.span(), acceptAll, key(7), 0.0), home);
}

TEST(HashPick, PicksNothingWhenNoneAccepted) {
  Backends bs({100, 100});
  EXPECT_EQ(hashPick(
                bs.span(), [](const Backend&) { return false; }, key(1)),
            nullptr);
  Backends zeros({0, 0});
  EXPECT_EQ(hashPick(zeros.span(), acceptAll, key(1)), nullptr);
}

TEST(ConsistentHash, UsesHashPickForAKey) {
  Backends bs({100, 100, 100, 100});
  auto ch = makePicker(conf::Balance::kConsistentHash, 0);
  for (int i = 0; i < 1000; ++i) {
    PickContext ctx;
    ctx.has_key = true;
    ctx.key_hash = key(i);
    ASSERT_EQ(ch->pick(bs.span(), acceptAll, ctx), hashPick(bs.span(), acceptAll, key(i)));
  }
}

TEST(ConsistentHash, WithoutAKeyFallsBackToLeastConn) {
  Backends bs({100, 100, 100});
  bs[0].active_requests = 4;
  bs[2].active_requests = 2;
  bs[1].active_requests = 3;
  auto ch = makePicker(conf::Balance::kConsistentHash, 0);
  EXPECT_EQ(ch->pick(bs.span(), acceptAll, {}), &bs[2]);
}

}  // namespace
}  // namespace tether::balancer
