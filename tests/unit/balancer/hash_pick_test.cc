// hashKey(), HashPlacer and the consistent_hash picker.
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

// Where key(0) ... key(15) live on 10.0.0.1 ... 10.0.0.5 (a ... e).
constexpr const char* kPlacementOfSixteenKeys = "aadaabbeadccedba";

TEST(HashKey, IsStableAcrossVersions) {
  // Changing these moves every unpinned key in a running fleet.
  EXPECT_EQ(hashKey(""), 0xc3817c016ba4ff30ULL);
  EXPECT_EQ(hashKey("user-42"), 0xe28ba372823de243ULL);
}

TEST(HashKey, DiffersForDifferentKeys) {
  EXPECT_NE(hashKey("a"), hashKey("b"));
  EXPECT_NE(hashKey("ab"), hashKey("ba"));
}

TEST(HashPlacer, IsStableAcrossVersions) {
  // The placement is a cross-tether contract too (picker.h): a change of the
  // table size or of how it is filled moves unpinned keys; say so in the
  // README's changelog and update these.
  Backends bs({100, 100, 100, 100, 100});
  HashPlacer p;
  std::string homes;
  for (int i = 0; i < 16; ++i)
    homes += static_cast<char>('a' + p.pick(bs.span(), acceptAll, key(i))->id);
  EXPECT_EQ(homes, kPlacementOfSixteenKeys);
}

TEST(HashPlacer, SameKeySameBackend) {
  Backends bs({100, 100, 100, 100, 100});
  HashPlacer a;
  HashPlacer b;
  for (int i = 0; i < 1000; ++i) {
    Backend* x = a.pick(bs.span(), acceptAll, key(i));
    EXPECT_EQ(x, a.pick(bs.span(), acceptAll, key(i)));
    EXPECT_EQ(x, b.pick(bs.span(), acceptAll, key(i)));
  }
}

TEST(HashPlacer, BackendOrderAndIdsDoNotMatter) {
  // Two tethers that learned the same backends in different orders.
  Backends one({});
  Backends two({});
  std::vector<std::string> names{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80",
                                 "[fd00::5]:80"};
  for (auto& n : names) one.add(n);
  std::reverse(names.begin(), names.end());
  for (auto& n : names) two.add(n);
  HashPlacer p1;
  HashPlacer p2;
  for (int i = 0; i < 5000; ++i)
    ASSERT_EQ(p1.pick(one.span(), acceptAll, key(i))->name,
              p2.pick(two.span(), acceptAll, key(i))->name);
}

TEST(HashPlacer, EqualWeightsShareEvenly) {
  Backends bs({100, 100, 100, 100});
  HashPlacer p;
  std::map<Backend*, int> n;
  for (int i = 0; i < 100'000; ++i) ++n[p.pick(bs.span(), acceptAll, key(i))];
  for (auto& [b, c] : n) EXPECT_NEAR(c / 100'000.0, 0.25, 0.02) << b->name;
}

TEST(HashPlacer, WeightsSetTheShares) {
  Backends bs({100, 200, 300});
  HashPlacer p;
  std::map<Backend*, int> n;
  for (int i = 0; i < 100'000; ++i) ++n[p.pick(bs.span(), acceptAll, key(i))];
  EXPECT_NEAR(n[&bs[0]] / 100'000.0, 1.0 / 6, 0.02);
  EXPECT_NEAR(n[&bs[1]] / 100'000.0, 2.0 / 6, 0.02);
  EXPECT_NEAR(n[&bs[2]] / 100'000.0, 3.0 / 6, 0.02);
}

TEST(HashPlacer, ExtremeWeightsStillPlaceTheLightOnes) {
  Backends bs({10'000, 1, 1, 1});
  HashPlacer p;
  std::map<Backend*, int> n;
  for (int i = 0; i < 200'000; ++i) ++n[p.pick(bs.span(), acceptAll, key(i))];
  EXPECT_NEAR(n[&bs[0]] / 200'000.0, 10'000.0 / 10'003, 0.002);
  for (int i = 1; i < 4; ++i) EXPECT_GT(n[&bs[i]], 0) << i;
}

// Health: a down backend is skipped, not taken out of the table.
TEST(HashPlacer, ADownBackendMovesOnlyItsKeysAndGetsThemBack) {
  Backends bs({100, 100, 100, 100, 100, 100, 100, 100, 100, 100});
  HashPlacer p;
  const int kKeys = 20'000;
  std::vector<Backend*> before(kKeys);
  for (int i = 0; i < kKeys; ++i) before[i] = p.pick(bs.span(), acceptAll, key(i));
  bs[3].state = BackendState::kDown;
  int moved = 0;
  std::map<Backend*, int> got;
  for (int i = 0; i < kKeys; ++i) {
    Backend* after = p.pick(bs.span(), acceptAll, key(i));
    ASSERT_NE(after, &bs[3]);
    if (before[i] != &bs[3]) {
      ASSERT_EQ(before[i], after) << i;
    } else {
      ++moved;
      ++got[after];
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / kKeys, 0.1, 0.01);
  // Its keys spread over the others (Maglev's neighbouring slots are anyone's).
  EXPECT_GE(got.size(), 8u);
  bs[3].state = BackendState::kUp;
  for (int i = 0; i < kKeys; ++i) ASSERT_EQ(p.pick(bs.span(), acceptAll, key(i)), before[i]) << i;
}

TEST(HashPlacer, RefusingABackendMovesOnlyItsKeys) {
  Backends bs({100, 100, 100, 100});
  HashPlacer p;
  auto not_c = [](const Backend& b) { return b.id != 2; };
  for (int i = 0; i < 5000; ++i) {
    Backend* before = p.pick(bs.span(), acceptAll, key(i));
    Backend* after = p.pick(bs.span(), not_c, key(i));
    if (before != &bs[2]) {
      ASSERT_EQ(before, after);
    }
    ASSERT_NE(after, &bs[2]);
  }
}

// Fraction of kKeys keys whose backend changes between two fleets, and the
// fraction that moved from a backend present in both (Maglev's reshuffle).
struct Moves {
  double moved = 0;
  double moved_needlessly = 0;
};

Moves movesWhenDrained(std::size_t n, std::size_t drained, int keys) {
  Backends bs = Backends::many(n);
  HashPlacer p;
  std::vector<Backend*> before(keys);
  for (int i = 0; i < keys; ++i) before[i] = p.pick(bs.span(), acceptAll, key(i));
  bs[drained].admin_drain = true;
  auto available = [](const Backend& b) { return b.available(0); };
  int moved = 0;
  int needless = 0;
  for (int i = 0; i < keys; ++i) {
    Backend* after = p.pick(bs.span(), available, key(i));
    EXPECT_NE(after, &bs[drained]);
    if (after != before[i]) {
      ++moved;
      if (before[i] != &bs[drained]) ++needless;
    }
  }
  return {static_cast<double>(moved) / keys, static_cast<double>(needless) / keys};
}

// Leaving the table: its share moves, plus Maglev's reshuffle among the
// others, which grows with n / kTableSize. The numbers in picker.h's comment
// come from here (rendezvous hashing, before, moved the 1 / n share only).
TEST(HashPlacer, DrainingOneOfTenMovesAboutATenth) {
  Moves m = movesWhenDrained(10, 3, 50'000);
  std::printf("10 backends, one drained: %.3f %% of keys moved, %.3f %% from the others\n",
              100 * m.moved, 100 * m.moved_needlessly);
  EXPECT_NEAR(m.moved, 0.1, 0.015);
  EXPECT_LT(m.moved_needlessly, 0.01);
}

TEST(HashPlacer, DrainingOneOfFiveHundredMovesAFewFiveHundredths) {
  Moves m = movesWhenDrained(500, 123, 200'000);
  std::printf("500 backends, one drained: %.3f %% of keys moved, %.3f %% from the others\n",
              100 * m.moved, 100 * m.moved_needlessly);
  EXPECT_GT(m.moved, 1.0 / 500 - 0.001);  // at least its own share
  EXPECT_LT(m.moved, 0.015);              // measured 1.15 %
  EXPECT_LT(m.moved_needlessly, 0.012);   // measured 0.95 %
}

TEST(HashPlacer, DrainingOneOfAThousandMovesAFewThousandths) {
  Moves m = movesWhenDrained(1000, 500, 200'000);
  std::printf("1000 backends, one drained: %.3f %% of keys moved, %.3f %% from the others\n",
              100 * m.moved, 100 * m.moved_needlessly);
  EXPECT_GT(m.moved, 1.0 / 1000 - 0.0005);
  EXPECT_LT(m.moved, 0.02);
}

TEST(HashPlacer, AddingABackendTakesAboutOneShare) {
  Backends bs({100, 100, 100, 100, 100, 100, 100, 100, 100});
  std::vector<Backend*> before_set(bs.ptrs());
  Backend* added = bs.add("10.0.0.10:8080");
  HashPlacer p_before;
  HashPlacer p_after;
  int moved = 0;
  int to_added = 0;
  const int kKeys = 20'000;
  for (int i = 0; i < kKeys; ++i) {
    Backend* before = p_before.pick(before_set, acceptAll, key(i));
    Backend* after = p_after.pick(bs.span(), acceptAll, key(i));
    if (before != after) ++moved;
    if (after == added) ++to_added;
  }
  EXPECT_NEAR(static_cast<double>(to_added) / kKeys, 0.1, 0.01);
  EXPECT_LT(static_cast<double>(moved - to_added) / kKeys, 0.01);
}

TEST(HashPlacer, AWeightChangeRebuildsTheTable) {
  Backends bs({100, 100});
  HashPlacer p;
  bs[1].weight = 300;
  std::map<Backend*, int> n;
  for (int i = 0; i < 40'000; ++i) ++n[p.pick(bs.span(), acceptAll, key(i))];
  EXPECT_NEAR(n[&bs[1]] / 40'000.0, 0.75, 0.02);
}

TEST(HashPlacer, BoundedLoadSpreadsAHotKey) {
  for (auto loads : {Backends::Loads::kLogged, Backends::Loads::kUnlogged}) {
    Backends bs({100, 100, 100, 100}, loads);
    const double kFactor = 1.25;
    HashPlacer p(kFactor);
    const std::uint64_t hot = hashKey("hot");
    Backend* home = p.pick(bs.span(), acceptAll, hot);
    for (int i = 0; i < 1000; ++i) {
      double total = 0;
      for (Backend* b : bs.span()) total += b->load();
      double mean = total / bs.size();
      Backend* b = p.pick(bs.span(), acceptAll, hot);
      ASSERT_LE(b->load(), kFactor * mean + 1) << "pick " << i;
      b->active_requests++;
    }
    // The key's home took its bounded share, the rest spilled over.
    double mean = 1000.0 / bs.size();
    EXPECT_LE(home->load(), kFactor * mean + 2);
    EXPECT_GE(home->load(), mean);
    for (Backend* b : bs.span()) EXPECT_GT(b->load(), 0u) << b->name;
  }
}

TEST(HashPlacer, TheBoundCountsOnlyBackendsThatAreUp) {
  // A down backend's tunnels (still open) are not load the others must share.
  Backends bs({100, 100, 100});
  HashPlacer p;
  const std::uint64_t hot = hashKey("hot");
  Backend* home = p.pick(bs.span(), acceptAll, hot);
  Backend* other = home == &bs[0] ? &bs[1] : &bs[0];
  other->active_tunnels = 1000;
  other->state = BackendState::kDown;
  home->active_requests = 3;  // 3 > 1.25 * 3 / 2 + 1 = 2.875: over the bound of those up
  EXPECT_NE(p.pick(bs.span(), acceptAll, hot), home);
}

TEST(HashPlacer, LowLoadKeepsKeysAtHome) {
  // The +1 of slack: a second request for a key at an idle fleet stays put.
  Backends bs({100, 100, 100, 100});
  HashPlacer p;
  Backend* home = p.pick(bs.span(), acceptAll, key(1));
  home->active_requests = 1;
  EXPECT_EQ(p.pick(bs.span(), acceptAll, key(1)), home);
}

TEST(HashPlacer, PicksTheHomeWhenAllAreOverTheBound) {
  Backends bs({100, 100, 100});
  HashPlacer any;
  Backend* home = any.pick(bs.span(), acceptAll, key(7));
  for (Backend* b : bs.span()) b->active_requests = 10;
  HashPlacer p(0.0);
  EXPECT_EQ(p.pick(bs.span(), acceptAll, key(7)), home);
}

TEST(HashPlacer, PicksNothingWhenNoneAccepted) {
  Backends bs({100, 100});
  HashPlacer p;
  EXPECT_EQ(p.pick(
                bs.span(), [](const Backend&) { return false; }, key(1)),
            nullptr);
  Backends zeros({0, 0});
  EXPECT_EQ(p.pick(zeros.span(), acceptAll, key(1)), nullptr);
}

TEST(HashPlacer, AllDownPicksNothingWithoutAsking) {
  Backends bs = Backends::many(500);
  for (Backend* b : bs.span()) b->state = BackendState::kDown;
  HashPlacer p;
  int asked = 0;
  auto count = [&asked](const Backend&) {
    ++asked;
    return true;
  };
  EXPECT_EQ(p.pick(bs.span(), count, key(1)), nullptr);
  EXPECT_EQ(asked, 0);
  bs[77].state = BackendState::kUp;  // one back: every key goes there
  for (int i = 0; i < 100; ++i) EXPECT_EQ(p.pick(bs.span(), acceptAll, key(i)), &bs[77]);
}

TEST(HashPlacer, OnlyTheUntriedAreLeft) {
  // Retries: every backend but one tried, whatever the key.
  Backends bs = Backends::many(50);
  HashPlacer p;
  auto only_9 = [](const Backend& b) { return b.id == 9; };
  for (int i = 0; i < 200; ++i) EXPECT_EQ(p.pick(bs.span(), only_9, key(i)), &bs[9]);
}

TEST(HashPlacer, LargeFleetsShareEvenly) {
  for (std::size_t n : {500u, 1000u}) {
    Backends bs = Backends::many(n);
    HashPlacer p;
    std::vector<int> count(n, 0);
    const int kKeys = 400'000;
    for (int i = 0; i < kKeys; ++i) ++count[p.pick(bs.span(), acceptAll, key(i))->id];
    double mean = static_cast<double>(kKeys) / n;
    auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    // Maglev gives each backend floor or ceil of 65537 / n slots; what is
    // left is the keys' own sampling noise (400 to 800 keys per backend).
    EXPECT_GT(*lo, 0.75 * mean) << n;
    EXPECT_LT(*hi, 1.25 * mean) << n;
  }
}

TEST(ConsistentHash, UsesTheHashPlacerForAKey) {
  Backends bs({100, 100, 100, 100});
  auto ch = makePicker(conf::Balance::kConsistentHash, 0);
  HashPlacer p;
  for (int i = 0; i < 1000; ++i) {
    PickContext ctx;
    ctx.has_key = true;
    ctx.key_hash = key(i);
    ASSERT_EQ(ch->pick(bs.span(), acceptAll, ctx), p.pick(bs.span(), acceptAll, key(i)));
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
