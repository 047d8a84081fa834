#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "balancer/picker.h"
#include "tests/unit/balancer/fixtures.h"

namespace tether::balancer {
namespace {

using testing::acceptAll;
using testing::Backends;

std::string sequence(Picker& p, Backends& bs, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += static_cast<char>('a' + p.pick(bs.span(), acceptAll, {})->id);
  return out;
}

TEST(RoundRobin, SmoothSequenceInterleaves) {
  Backends bs({5, 1, 1});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  EXPECT_EQ(sequence(*rr, bs, 14), "aabacaaaabacaa");
}

TEST(RoundRobin, EqualWeightsRotateInOrder) {
  Backends bs({100, 100, 100});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  EXPECT_EQ(sequence(*rr, bs, 6), "abcabc");
}

TEST(RoundRobin, WeightsGiveExactSharesPerCycle) {
  Backends bs({100, 200, 300});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  std::string seq = sequence(*rr, bs, 600);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'a'), 100);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'b'), 200);
  EXPECT_EQ(std::count(seq.begin(), seq.end(), 'c'), 300);
}

TEST(RoundRobin, NeverPicksTheSameLightBackendTwiceInARow) {
  Backends bs({10, 1, 1, 1});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  std::string seq = sequence(*rr, bs, 1300);
  for (char c : std::string("bcd")) EXPECT_EQ(seq.find(std::string(2, c)), std::string::npos) << c;
}

TEST(RoundRobin, WeightChangeTakesEffect) {
  Backends bs({100, 100});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  sequence(*rr, bs, 10);
  bs[1].weight = 300;
  std::string seq = sequence(*rr, bs, 400);
  EXPECT_NEAR(std::count(seq.begin(), seq.end(), 'b'), 300, 2);
}

TEST(RoundRobin, RefusedBackendRejoinsItsTurn) {
  Backends bs({100, 100, 100});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  auto not_b = [](const Backend& b) { return b.id != 1; };
  std::string seq;
  for (int i = 0; i < 4; ++i) seq += static_cast<char>('a' + rr->pick(bs.span(), not_b, {})->id);
  EXPECT_EQ(seq, "acac");
  std::string after = sequence(*rr, bs, 30);
  EXPECT_EQ(std::count(after.begin(), after.end(), 'b'), 10);
}

TEST(RoundRobin, StateFollowsIdsNotPositions) {
  // Ids need not be dense within one list (a route may list a subset).
  Backends all({100, 100, 100, 100});
  std::vector<Backend*> subset{&all[3], &all[1]};
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  std::string seq;
  for (int i = 0; i < 4; ++i) seq += static_cast<char>('a' + rr->pick(subset, acceptAll, {})->id);
  EXPECT_EQ(seq, "dbdb");
}

// nginx's smooth weighted round robin as nginx writes it (and tether did,
// scanning every backend on every pick): the reference for the grouped one.
class ReferenceSwrr {
 public:
  Backend* pick(std::span<Backend* const> backends) {
    Backend* best = nullptr;
    std::int64_t total = 0;
    for (Backend* b : backends) {
      if (!inRotation(*b)) continue;
      std::int64_t& cur = current_[b];
      cur += b->weight.load();
      total += b->weight.load();
      if (best == nullptr || cur > current_[best]) best = b;
    }
    if (best != nullptr) current_[best] -= total;
    return best;
  }

 private:
  std::map<Backend*, std::int64_t> current_;
};

TEST(RoundRobin, MatchesNginxSequenceOnLargeFleets) {
  for (std::size_t n : {7u, 500u, 1000u}) {
    Backends bs = Backends::many(n);
    std::uint64_t x = n;
    for (Backend* b : bs.span()) {  // a few distinct weights, as fleets have
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      b->weight = std::uint32_t{1} << ((x >> 60) % 4);  // 1, 2, 4, 8
    }
    auto rr = makePicker(conf::Balance::kRoundRobin, 0);
    ReferenceSwrr ref;
    for (int i = 0; i < 20'000; ++i)
      ASSERT_EQ(rr->pick(bs.span(), acceptAll, {}), ref.pick(bs.span())) << n << " pick " << i;
  }
}

TEST(RoundRobin, LargeFleetGivesExactSharesPerCycle) {
  Backends bs = Backends::many(500);
  std::int64_t total = 0;
  for (std::size_t i = 0; i < bs.size(); ++i) {
    bs[i].weight = static_cast<std::uint32_t>(1 + i % 3);
    total += 1 + static_cast<std::int64_t>(i % 3);
  }
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  std::map<Backend*, int> n;
  for (std::int64_t i = 0; i < 2 * total; ++i) ++n[rr->pick(bs.span(), acceptAll, {})];
  for (std::size_t i = 0; i < bs.size(); ++i)
    ASSERT_EQ(n[&bs[i]], 2 * (1 + static_cast<int>(i % 3))) << i;
}

TEST(RoundRobin, DownAndDrainingAreNeitherPickedNorAsked) {
  Backends bs = Backends::many(500);
  for (std::size_t i = 0; i < bs.size(); ++i) {
    if (i % 10 == 0) continue;
    if (i % 2) bs[i].state = BackendState::kDown;
    else bs[i].admin_drain = true;
  }
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  int asked = 0;
  auto count = [&asked](const Backend&) {
    ++asked;
    return true;
  };
  std::set<Backend*> seen;
  for (int i = 0; i < 100; ++i) {
    Backend* b = rr->pick(bs.span(), count, {});
    ASSERT_EQ(b->id % 10, 0u);
    seen.insert(b);
  }
  EXPECT_EQ(asked, 100);  // one question per pick
  EXPECT_EQ(seen.size(), 50u);
}

TEST(RoundRobin, AllDownPicksNothing) {
  Backends bs = Backends::many(500);
  for (Backend* b : bs.span()) b->state = BackendState::kDown;
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  EXPECT_EQ(rr->pick(bs.span(), acceptAll, {}), nullptr);
  bs[42].state = BackendState::kUp;
  EXPECT_EQ(rr->pick(bs.span(), acceptAll, {}), &bs[42]);
}

TEST(RoundRobin, NeverReturnsATriedBackend) {
  Backends bs = Backends::many(500);
  bs[3].weight = 10'000;  // the one tried takes almost every turn
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  for (int i = 0; i < 1000; ++i) {
    std::uint32_t tried[2] = {3, static_cast<std::uint32_t>(i % 500)};
    auto untried = [&tried](const Backend& b) { return b.id != tried[0] && b.id != tried[1]; };
    Backend* b = rr->pick(bs.span(), untried, {});
    ASSERT_NE(b, nullptr);
    ASSERT_NE(b->id, tried[0]);
    ASSERT_NE(b->id, tried[1]);
  }
}

TEST(RoundRobin, FindsTheOnlyAcceptedOfMany) {
  Backends bs = Backends::many(1000);
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  auto only = [](const Backend& b) { return b.id == 777; };
  for (int i = 0; i < 10; ++i) EXPECT_EQ(rr->pick(bs.span(), only, {}), &bs[777]);
  EXPECT_EQ(rr->pick(bs.span(), [](const Backend&) { return false; }, {}), nullptr);
}

TEST(RoundRobin, AChangeOfRotationContinuesAfterTheLastPick) {
  // At one request per change, the first backends must not take everything.
  Backends bs({100, 100, 100, 100});
  auto rr = makePicker(conf::Balance::kRoundRobin, 0);
  std::string seq;
  for (int i = 0; i < 8; ++i) {
    seq += static_cast<char>('a' + rr->pick(bs.span(), acceptAll, {})->id);
    bs[3].state = i % 2 ? BackendState::kUp : BackendState::kDown;  // flaps every pick
  }
  EXPECT_EQ(seq, "abcabcda");
}

}  // namespace
}  // namespace tether::balancer
