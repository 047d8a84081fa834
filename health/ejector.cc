#include "health/ejector.h"

#include <algorithm>

namespace tether::health {

PassiveEjector::PassiveEjector(std::uint32_t consecutive_failures, std::int64_t eject_for_ms,
                               std::int64_t eject_max_ms)
    : threshold_(consecutive_failures),
      eject_for_ms_(std::max<std::int64_t>(eject_for_ms, 0)),
      eject_max_ms_(std::max(eject_max_ms, eject_for_ms_)) {}

std::int64_t PassiveEjector::onFailure(std::int64_t now_ms) {
  if (threshold_ == 0 || ejected(now_ms)) return 0;
  if (++failures_ < threshold_) return 0;
  failures_ = 0;
  if (ejections_ > 0 && now_ms - last_end_ms_ >= eject_max_ms_) level_ = 0;
  std::int64_t duration = eject_max_ms_;
  // Shift only while it cannot overflow; past the cap the level stops growing.
  if (level_ < 62 && eject_for_ms_ <= (eject_max_ms_ >> level_)) {
    duration = std::min(eject_for_ms_ << level_, eject_max_ms_);
    if (duration < eject_max_ms_) ++level_;
  }
  ejected_until_ms_ = now_ms + duration;
  last_end_ms_ = ejected_until_ms_;
  ++ejections_;
  return ejected_until_ms_;
}

void PassiveEjector::onSuccess() { failures_ = 0; }

void PassiveEjector::onRecovered() {
  failures_ = 0;
  ejected_until_ms_ = 0;
}

}  // namespace tether::health
