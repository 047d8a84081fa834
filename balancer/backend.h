// A backend: one address of a configured target instance, and its live state.
//
// Backends live in a BackendTable, created and appended to on the main loop
// only; they are never freed while the process runs (a backend whose DNS
// address disappeared is drained and then stays in state kRemoved), so a
// Backend* held by a session, a pin lookup or a health check never dangles.
// Counters are atomics because every worker loop reads and bumps them; the
// state is written by the main loop (health checks, admin) and by workers
// (passive ejection) through the helpers below.
//
// What decides whether a backend is in rotation and its share (state, drain,
// weight, ejection, slow start) is held in RotationFields: every write that
// changes one bumps rotationEpoch(), so that pickers rebuild their indexes
// only when something changed instead of looking at every backend on every
// pick. The loads are LoadCounters, whose changes go to the table's LoadLog
// (balancer/load_log.h) for the same reason.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "balancer/load_log.h"

namespace tether::balancer {

enum class BackendState : std::uint8_t { kUnknown, kUp, kDown, kDraining, kRemoved };
const char* toString(BackendState s);  // "unknown", "up", "down", "draining", "removed"

namespace detail {
inline std::atomic<std::uint64_t> rotation_epoch{0};
}  // namespace detail

// Any thread: a count bumped (release) after every change of a RotationField
// of any backend in the process. A picker that read N here and later reads N
// again knows that no backend's state, drain, weight, ejection or slow-start
// start changed in between.
inline std::uint64_t rotationEpoch() {
  return detail::rotation_epoch.load(std::memory_order_acquire);
}

// std::atomic<T>'s load/store interface; a store that changes the value bumps
// rotationEpoch() after it. Written rarely (health transitions, admin, reload,
// passive ejection), read on every pick.
template <typename T>
class RotationField {
 public:
  constexpr RotationField(T v) noexcept : v_(v) {}  // NOLINT: as std::atomic
  RotationField(const RotationField&) = delete;
  RotationField& operator=(const RotationField&) = delete;

  T load(std::memory_order o = std::memory_order_seq_cst) const noexcept { return v_.load(o); }
  operator T() const noexcept { return load(); }  // NOLINT: as std::atomic
  void store(T v, std::memory_order o = std::memory_order_seq_cst) noexcept {
    if (v_.exchange(v, o) != v) detail::rotation_epoch.fetch_add(1, std::memory_order_release);
  }
  RotationField& operator=(T v) noexcept {
    store(v);
    return *this;
  }

 private:
  std::atomic<T> v_;
};

struct Backend {
  std::uint32_t id = 0;       // stable, dense: 0, 1, 2 ... in order of creation
  std::string url;            // the configured URL it came from
  std::string name;           // "ip:port": the metric label and the pin value
  std::string host_header;    // host[:port] of the URL, for health checks
  sockaddr_storage addr{};    // resolved address
  socklen_t addr_len = 0;
  std::uint32_t config_index = 0;  // which configured backend it came from

  RotationField<std::uint32_t> weight{100};           // configured / admin-set
  RotationField<BackendState> state{BackendState::kUnknown};
  RotationField<bool> admin_drain{false};              // set by POST .../drain
  RotationField<std::int64_t> ejected_until_ms{0};     // passive ejection, wall ms
  RotationField<std::int64_t> up_since_ms{0};          // for slow start
  LoadCounter active_requests;
  LoadCounter active_tunnels;
  std::atomic<std::uint32_t> connections{0};          // upstream connections open
  std::atomic<std::int64_t> last_check_ms{0};         // wall clock, ms since epoch
  // Passive ejection (health::PassiveEjector writes these).
  std::atomic<std::uint32_t> consecutive_failures{0};
  std::atomic<bool> ejected{false};                   // until the active checks bring it back
  std::atomic<std::uint32_t> eject_level{0};          // the next ejection lasts eject_for << level
  std::atomic<std::int64_t> last_eject_end_ms{0};     // for the level's decay
  std::atomic<std::uint16_t> last_check_status{0};
  std::string last_check_reason;  // main loop only

  // May this backend take a new request, tunnel or pin? Up, not draining,
  // not ejected at now_ms.
  bool available(std::int64_t now_ms) const {
    BackendState s = state.load(std::memory_order_relaxed);
    return s == BackendState::kUp && !admin_drain.load(std::memory_order_relaxed) &&
           ejected_until_ms.load(std::memory_order_relaxed) <= now_ms;
  }
  std::uint32_t load() const {
    return active_requests.load(std::memory_order_relaxed) +
           active_tunnels.load(std::memory_order_relaxed);
  }
  // Weight after slow start: ramps linearly from 1 to weight over window_ms
  // after up_since_ms. window_ms == 0 disables the ramp.
  std::uint32_t effectiveWeight(std::int64_t now_ms, std::int64_t window_ms) const;
};

// The slow-start ramp behind Backend::effectiveWeight(): weight w of a backend
// up since since_ms (0: not ramping) at now_ms, over window_ms (0: off).
std::uint32_t slowStartWeight(std::uint32_t w, std::int64_t since_ms, std::int64_t now_ms,
                              std::int64_t window_ms);

// Append-only table of backends. Capacity is reserved up front so that the
// vector never reallocates: readers on other loops may index it while the
// main loop appends (size is published with release semantics).
class BackendTable {
 public:
  static constexpr std::size_t kMaxBackends = 4096;
  static_assert(kMaxBackends <= 0x10000, "LoadLog and the hash table keep ids in 16 bits");
  BackendTable() { backends_.reserve(kMaxBackends); }
  BackendTable(const BackendTable&) = delete;
  BackendTable& operator=(const BackendTable&) = delete;

  // Main loop only. Returns nullptr when the table is full. Attaches the
  // backend's load counters to loadLog().
  Backend* add(std::unique_ptr<Backend> b);
  std::size_t size() const { return size_.load(std::memory_order_acquire); }
  Backend* at(std::size_t i) const { return backends_[i].get(); }
  Backend* findByName(const std::string& name) const;
  LoadLog& loadLog() { return load_log_; }

 private:
  LoadLog load_log_;  // before backends_: outlives the counters attached to it
  std::vector<std::unique_ptr<Backend>> backends_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace tether::balancer
