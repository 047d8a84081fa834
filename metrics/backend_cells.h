// The lazily allocated label rows behind BackendMetrics::request(),
// websocketUpgrade() and websocketClose(). Internal to metrics/.
//
// A row is a fixed array of relaxed atomic counters, allocated by the first
// thread that counts into it: that thread CASes the row pointer from null;
// a thread that loses the race frees its copy and uses the winner's. Rows are
// freed only with their BackendMetrics, which outlives every worker.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "metrics/metrics.h"

namespace tether::metrics {

// Status codes 100..599 at their own index; index 0 holds everything else.
inline constexpr int kStatusSlots = 600;
inline int statusSlot(int code) { return code >= 100 && code < kStatusSlots ? code : 0; }

// WebSocket close codes: 0 (no close frame) -> "none", 1000..1015 (RFC 6455 and
// IANA), 3000..4999 (libraries and applications; Open WebUI's socket.io uses
// 1000/1001/1005/1006), anything else -> "other".
inline constexpr int kCloseNone = 0;
inline constexpr int kCloseStdFirst = 1;                    // 1000 .. 1015
inline constexpr int kCloseAppFirst = kCloseStdFirst + 16;  // 3000 .. 4999
inline constexpr int kCloseOther = kCloseAppFirst + 2000;
inline constexpr int kCloseSlots = kCloseOther + 1;

inline int closeSlot(int code) {
  if (code == 0) return kCloseNone;
  if (code >= 1000 && code <= 1015) return kCloseStdFirst + (code - 1000);
  if (code >= 3000 && code <= 4999) return kCloseAppFirst + (code - 3000);
  return kCloseOther;
}

// The label value of a close slot.
inline std::string closeLabel(int slot) {
  if (slot == kCloseNone) return "none";
  if (slot == kCloseOther) return "other";
  if (slot < kCloseAppFirst) return std::to_string(1000 + slot - kCloseStdFirst);
  return std::to_string(3000 + slot - kCloseAppFirst);
}

template <int N>
using CounterRow = std::array<std::atomic<std::uint64_t>, N>;

// Returns the row behind `slot`, allocating it on first use. The acquire load
// pairs with the release of the winning CAS, so the zeroed row is visible.
template <class Row>
Row& lazyRow(std::atomic<Row*>& slot) {
  Row* row = slot.load(std::memory_order_acquire);
  if (row != nullptr) return *row;
  Row* fresh = new Row();  // value-initialized: all zero
  if (slot.compare_exchange_strong(row, fresh, std::memory_order_acq_rel,
                                   std::memory_order_acquire)) {
    return *fresh;
  }
  delete fresh;  // another thread won; `row` now holds its pointer
  return *row;
}

// Reads a cell of a row that may not exist yet (the collector never allocates).
template <class Row>
std::uint64_t peek(const std::atomic<Row*>& slot, int i) {
  const Row* row = slot.load(std::memory_order_acquire);
  return row == nullptr ? 0 : (*row)[i].load(std::memory_order_relaxed);
}

inline constexpr int kMethodCount = static_cast<int>(Method::kCount);
inline constexpr int kClosedByCount = 3;

struct BackendMetrics::Impl {
  using StatusRow = CounterRow<kStatusSlots>;
  using CloseRow = CounterRow<kCloseSlots>;

  std::array<std::atomic<StatusRow*>, kMethodCount> requests{};
  std::atomic<StatusRow*> upgrades{nullptr};
  std::array<std::atomic<CloseRow*>, kClosedByCount> closes{};

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    for (auto& r : requests) delete r.load(std::memory_order_acquire);
    delete upgrades.load(std::memory_order_acquire);
    for (auto& r : closes) delete r.load(std::memory_order_acquire);
  }
};

}  // namespace tether::metrics
