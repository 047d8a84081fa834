#include "balancer/backend.h"

namespace tether::balancer {

const char* toString(BackendState s) {
  switch (s) {
    case BackendState::kUnknown: return "unknown";
    case BackendState::kUp: return "up";
    case BackendState::kDown: return "down";
    case BackendState::kDraining: return "draining";
    case BackendState::kRemoved: return "removed";
  }
  return "unknown";
}

std::uint32_t Backend::effectiveWeight(std::int64_t now_ms, std::int64_t window_ms) const {
  return slowStartWeight(weight.load(std::memory_order_relaxed),
                         up_since_ms.load(std::memory_order_relaxed), now_ms, window_ms);
}

std::uint32_t slowStartWeight(std::uint32_t w, std::int64_t since, std::int64_t now_ms,
                              std::int64_t window_ms) {
  if (window_ms <= 0 || w == 0) return w;
  std::int64_t age = now_ms - since;
  if (since == 0 || age >= window_ms) return w;
  if (age <= 0) return 1;
  std::uint64_t ramped = static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(age) /
                         static_cast<std::uint64_t>(window_ms);
  return ramped < 1 ? 1 : static_cast<std::uint32_t>(ramped);
}

Backend* BackendTable::add(std::unique_ptr<Backend> b) {
  std::size_t n = size_.load(std::memory_order_relaxed);
  if (n >= kMaxBackends) return nullptr;
  b->id = static_cast<std::uint32_t>(n);
  b->active_requests.attach(&load_log_, b->id);
  b->active_tunnels.attach(&load_log_, b->id);
  backends_.push_back(std::move(b));
  size_.store(n + 1, std::memory_order_release);
  return backends_.back().get();
}

Backend* BackendTable::findByName(const std::string& name) const {
  std::size_t n = size();
  for (std::size_t i = 0; i < n; ++i)
    if (backends_[i]->name == name) return backends_[i].get();
  return nullptr;
}

}  // namespace tether::balancer
