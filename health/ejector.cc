#include "health/ejector.h"

#include <algorithm>

namespace tether::health {

PassiveEjector::PassiveEjector(const conf::Passive& cfg)
    : threshold_(cfg.consecutive_failures),
      eject_for_ms_(std::max<std::int64_t>(cfg.eject_for, 0)),
      eject_max_ms_(std::max<std::int64_t>(cfg.eject_max, eject_for_ms_)) {}

std::int64_t PassiveEjector::onFailure(balancer::Backend& b, std::int64_t now_ms) const {
  if (threshold_ == 0 || b.ejected.load(std::memory_order_acquire)) return 0;
  if (b.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1 < threshold_) return 0;
  // One worker wins the ejection; the others' failures were part of it.
  if (b.ejected.exchange(true, std::memory_order_acq_rel)) return 0;
  b.consecutive_failures.store(0, std::memory_order_relaxed);
  std::uint32_t level = b.eject_level.load(std::memory_order_relaxed);
  if (now_ms - b.last_eject_end_ms.load(std::memory_order_relaxed) >= eject_max_ms_) level = 0;
  std::int64_t duration = eject_max_ms_;
  // Shift only while it cannot overflow; past the cap the level stops growing.
  if (level < 62 && eject_for_ms_ <= (eject_max_ms_ >> level)) {
    duration = std::min(eject_for_ms_ << level, eject_max_ms_);
    if (duration < eject_max_ms_) ++level;
  }
  std::int64_t until = now_ms + duration;
  b.eject_level.store(level, std::memory_order_relaxed);
  b.last_eject_end_ms.store(until, std::memory_order_relaxed);
  b.ejected_until_ms.store(until, std::memory_order_release);
  return until;
}

void PassiveEjector::onSuccess(balancer::Backend& b) {
  if (b.consecutive_failures.load(std::memory_order_relaxed) != 0)
    b.consecutive_failures.store(0, std::memory_order_relaxed);
}

void PassiveEjector::onRecovered(balancer::Backend& b) {
  b.consecutive_failures.store(0, std::memory_order_relaxed);
  b.ejected.store(false, std::memory_order_release);
}

}  // namespace tether::health
