#include "health/health_state.h"

#include <gtest/gtest.h>

#include <string>

namespace tether::health {
namespace {

using Status = HealthState::Status;

// Feeds "+" (ok) and "-" (fail) and writes the status after each check as
// u (up), d (down) or ? (unknown).
std::string run(HealthState& h, const std::string& checks) {
  std::string out;
  for (char c : checks) {
    h.observe(c == '+');
    out += h.status() == Status::kUp ? 'u' : h.status() == Status::kDown ? 'd' : '?';
  }
  return out;
}

TEST(HealthState, StartsUnknown) {
  HealthState h(2, 3);
  EXPECT_EQ(h.status(), Status::kUnknown);
}

TEST(HealthState, FirstSuccessFromUnknownBringsItUp) {
  HealthState h(2, 3);
  EXPECT_EQ(run(h, "+"), "u");
}

TEST(HealthState, FirstFailureFromUnknownTakesItDown) {
  HealthState h(2, 3);
  EXPECT_EQ(run(h, "-"), "d");
}

TEST(HealthState, UpNeedsFallFailuresToGoDown) {
  HealthState h(2, 3);
  EXPECT_EQ(run(h, "+--+---"), "uuuuuud");
}

TEST(HealthState, DownNeedsRiseOksToComeBack) {
  HealthState h(2, 3);
  EXPECT_EQ(run(h, "-+-++"), "ddddu");
}

TEST(HealthState, AlternationResetsBothStreaks) {
  HealthState h(2, 2);
  EXPECT_EQ(run(h, "+-+-+-+-"), "uuuuuuuu");
  HealthState d(2, 2);
  EXPECT_EQ(run(d, "-+-+-+-+"), "dddddddd");
}

TEST(HealthState, RiseAndFallOfOneFlipOnEveryChange) {
  HealthState h(1, 1);
  EXPECT_EQ(run(h, "+-+-"), "udud");
}

TEST(HealthState, ZeroRiseOrFallActsAsOne) {
  HealthState h(0, 0);
  EXPECT_EQ(run(h, "+-"), "ud");
}

TEST(HealthState, ReportsEachFlipExactlyOnce) {
  HealthState h(2, 2);
  auto t = h.observe(true);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.from, Status::kUnknown);
  EXPECT_EQ(t.to, Status::kUp);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(h.observe(true).changed);
  EXPECT_FALSE(h.observe(false).changed);
  t = h.observe(false);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(t.from, Status::kUp);
  EXPECT_EQ(t.to, Status::kDown);
  EXPECT_FALSE(h.observe(false).changed);
}

TEST(HealthState, UnchangedTransitionCarriesTheCurrentStatus) {
  HealthState h(2, 2);
  h.observe(false);
  auto t = h.observe(false);
  EXPECT_FALSE(t.changed);
  EXPECT_EQ(t.from, Status::kDown);
  EXPECT_EQ(t.to, Status::kDown);
}

TEST(HealthState, StreaksSaturate) {
  HealthState h(2, 3);
  run(h, "+++++");
  EXPECT_EQ(h.okStreak(), 2u);
  EXPECT_EQ(h.failStreak(), 0u);
  run(h, "--");
  EXPECT_EQ(h.okStreak(), 0u);
  EXPECT_EQ(h.failStreak(), 2u);
}

TEST(CheckInterval, DownIntervalUntilUpAndPassing) {
  conf::Health cfg;
  cfg.interval = 5'000;
  cfg.down_interval = 1'000;
  HealthState h(2, 3);
  EXPECT_EQ(checkInterval(cfg, h), 1'000);  // unknown
  run(h, "-");
  EXPECT_EQ(checkInterval(cfg, h), 1'000);  // down
  run(h, "+");
  EXPECT_EQ(checkInterval(cfg, h), 1'000);  // down, rising
  run(h, "+");
  EXPECT_EQ(h.status(), Status::kUp);
  EXPECT_EQ(checkInterval(cfg, h), 5'000);  // up and passing
  run(h, "-");
  EXPECT_EQ(checkInterval(cfg, h), 1'000);  // up, falling: leave rotation sooner
  run(h, "+");
  EXPECT_EQ(checkInterval(cfg, h), 5'000);  // the streak is over
  run(h, "---");
  EXPECT_EQ(h.status(), Status::kDown);
  EXPECT_EQ(checkInterval(cfg, h), 1'000);
}

TEST(CheckInterval, ALongerDownIntervalIsHonouredToo) {
  conf::Health cfg;
  cfg.interval = 2'000;
  cfg.down_interval = 60'000;  // check a dead backend less often (HAProxy's downinter)
  HealthState h(1, 1);
  run(h, "-");
  EXPECT_EQ(checkInterval(cfg, h), 60'000);
  run(h, "+");
  EXPECT_EQ(checkInterval(cfg, h), 2'000);
}

TEST(HealthState, NamesAndBackendStates) {
  EXPECT_STREQ(toString(Status::kUp), "up");
  EXPECT_STREQ(toString(Status::kDown), "down");
  EXPECT_STREQ(toString(Status::kUnknown), "unknown");
  EXPECT_EQ(toBackendState(Status::kUp), balancer::BackendState::kUp);
  EXPECT_EQ(toBackendState(Status::kDown), balancer::BackendState::kDown);
  EXPECT_EQ(toBackendState(Status::kUnknown), balancer::BackendState::kUnknown);
}

}  // namespace
}  // namespace tether::health
