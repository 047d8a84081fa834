#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tether::balancer
