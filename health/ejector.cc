#include "health/ejector.h"

#include <algorithm>
#include <mutex>

namespace tether::health {

namespace {

// Serialises the floor check with the ejection it allows (see ejector.h).
std::mutex& floorMutex() {
  static std::mutex mu;
  return mu;
}

}  // namespace

bool countsAsPassiveFailure(const conf::Passive& cfg, int backend_status) {
  return std::find(cfg.failure_statuses.begin(), cfg.failure_statuses.end(), backend_status) !=
         cfg.failure_statuses.end();
}

bool ejectionKeepsFloor(std::size_t ejected_after, std::size_t fleet_size,
                        std::uint32_t max_ejection_percent) {
  if (fleet_size < 2) return false;
  return ejected_after * 100 <= static_cast<std::size_t>(max_ejection_percent) * fleet_size;
}

PassiveEjector::PassiveEjector(const conf::Passive& cfg, const balancer::BackendTable& fleet)
    : fleet_(fleet),
      threshold_(cfg.consecutive_failures),
      max_ejection_percent_(cfg.max_ejection_percent),
      eject_for_ms_(std::max<std::int64_t>(cfg.eject_for, 0)),
      eject_max_ms_(std::max<std::int64_t>(cfg.eject_max, eject_for_ms_)) {}

std::int64_t PassiveEjector::onFailure(balancer::Backend& b, std::int64_t now_ms,
                                       bool* held_by_floor) const {
  if (threshold_ == 0 || b.ejected.load(std::memory_order_acquire)) return 0;
  if (b.consecutive_failures.fetch_add(1, std::memory_order_relaxed) + 1 < threshold_) return 0;
  std::lock_guard<std::mutex> lock(floorMutex());
  // One worker wins the ejection; the others' failures were part of it.
  if (b.ejected.load(std::memory_order_acquire)) return 0;
  b.consecutive_failures.store(0, std::memory_order_relaxed);
  // b itself counts whatever the table says (it is failing requests, so it is in use).
  std::size_t fleet_size = 1, ejected = 0;
  for (std::size_t i = 0, n = fleet_.size(); i < n; ++i) {
    const balancer::Backend* other = fleet_.at(i);
    if (other == nullptr || other == &b) continue;
    if (other->state.load(std::memory_order_relaxed) == balancer::BackendState::kRemoved) continue;
    ++fleet_size;
    if (other->ejected.load(std::memory_order_acquire)) ++ejected;
  }
  if (!ejectionKeepsFloor(ejected + 1, fleet_size, max_ejection_percent_)) {
    if (held_by_floor != nullptr) *held_by_floor = true;
    return 0;
  }
  b.ejected.store(true, std::memory_order_release);
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
