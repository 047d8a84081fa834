#include "health/health_state.h"

#include <algorithm>

namespace tether::health {

HealthState::HealthState(std::uint32_t rise, std::uint32_t fall)
    : rise_(std::max<std::uint32_t>(rise, 1)), fall_(std::max<std::uint32_t>(fall, 1)) {}

HealthState::Transition HealthState::observe(bool ok) {
  Status from = status_;
  if (status_ == Status::kUnknown) {
    // The first verdict decides at once: a new backend should neither wait
    // rise x interval to serve nor fall x interval to be known broken.
    ok_streak_ = ok ? 1 : 0;
    fail_streak_ = ok ? 0 : 1;
    status_ = ok ? Status::kUp : Status::kDown;
    return Transition{true, from, status_};
  }
  if (ok) {
    fail_streak_ = 0;
    if (ok_streak_ < rise_) ++ok_streak_;  // saturate: no overflow on a long-lived backend
    if (status_ != Status::kUp && ok_streak_ >= rise_) status_ = Status::kUp;
  } else {
    ok_streak_ = 0;
    if (fail_streak_ < fall_) ++fail_streak_;
    if (status_ != Status::kDown && fail_streak_ >= fall_) status_ = Status::kDown;
  }
  return Transition{status_ != from, from, status_};
}

conf::Millis checkInterval(const conf::Health& cfg, const HealthState& state) {
  if (state.status() == HealthState::Status::kUp && state.failStreak() == 0) return cfg.interval;
  return cfg.down_interval;
}

const char* toString(HealthState::Status s) {
  switch (s) {
    case HealthState::Status::kUnknown:
      return "unknown";
    case HealthState::Status::kUp:
      return "up";
    case HealthState::Status::kDown:
      return "down";
  }
  return "unknown";
}

balancer::BackendState toBackendState(HealthState::Status s) {
  switch (s) {
    case HealthState::Status::kUnknown:
      return balancer::BackendState::kUnknown;
    case HealthState::Status::kUp:
      return balancer::BackendState::kUp;
    case HealthState::Status::kDown:
      return balancer::BackendState::kDown;
  }
  return balancer::BackendState::kUnknown;
}

}  // namespace tether::health
