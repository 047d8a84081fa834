// Active health checks' rise/fall state machine, one per backend.
//
// Pure: the caller (the main loop's health checker in proxy/) runs a check,
// classifies it with evaluate() (check_response.h) and feeds the verdict to
// observe(), which says whether the status flipped so the caller can update
// Backend::state, log once and count the transition. Not thread-safe; the
// health checker owns one per backend on the main loop.
//
// Semantics (HAProxy's rise/fall, but starting unknown rather than
// up-going-down): a backend starts kUnknown and takes no traffic until its
// first verdict, which decides at once (up on success, down on failure);
// from then on `fall` consecutive failures take it from kUp to kDown. kDown needs `rise` consecutive successes to
// return. Each streak resets when the other outcome arrives, so ok, fail, ok
// never rises with rise = 2. A rise or fall of 0 is treated as 1.
#pragma once

#include <cstdint>

#include "balancer/backend.h"
#include "conf/config.h"

namespace tether::health {

class HealthState {
 public:
  enum class Status : std::uint8_t { kUnknown, kUp, kDown };
  struct Transition {
    bool changed = false;
    Status from = Status::kUnknown;
    Status to = Status::kUnknown;
  };

  HealthState(std::uint32_t rise, std::uint32_t fall);

  // One check's outcome. `changed` is true exactly when status() flipped.
  Transition observe(bool ok);

  Status status() const { return status_; }
  // Current streaks, saturated at rise and fall (for /admin/backends).
  std::uint32_t okStreak() const { return ok_streak_; }
  std::uint32_t failStreak() const { return fail_streak_; }

 private:
  std::uint32_t rise_;
  std::uint32_t fall_;
  Status status_ = Status::kUnknown;
  std::uint32_t ok_streak_ = 0;
  std::uint32_t fail_streak_ = 0;
};

const char* toString(HealthState::Status s);  // "unknown", "up", "down"

// How long until the next check (before jitter): health.down_interval while
// the backend is unknown, down, or up with a failure streak (a fall in
// progress, so that a dying backend leaves rotation sooner); health.interval
// while it is up and its last check passed.
conf::Millis checkInterval(const conf::Health& cfg, const HealthState& state);

// The backend state a health status stands for (drain and removal are the
// caller's business: they override whatever the checks say).
balancer::BackendState toBackendState(HealthState::Status s);

}  // namespace tether::health
