// Pick algorithms: which backend takes the next request.
//
// Pure and loop-free (HAProxy's lb algorithms behind one small table of
// operations; Pingora's "the proxy does not know how balancing is done").
// A Picker, like a HashPlacer, belongs to one loop; it is not thread-safe.
// The Backend pointers must outlive the call only.
//
// What a pick considers. A backend of `backends` is in rotation while
// inRotation() holds: state kUp, not drained by the admin, weight not 0. A
// picker keeps an index over the backends in rotation and rebuilds it (O(n))
// only when
//   - rotationEpoch() moved: some backend's state, drain, weight, ejection
//     or slow-start start changed (balancer/backend.h);
//   - it is handed another list: another address or length. A caller that
//     changes the elements of a list in place must hand a new list; the
//     worker's list of every backend only grows;
//   - a slow-start ramp it knows of ends, or ctx.slow_start_ms changes.
// Within the rotation, accept() refuses per request (backends already tried,
// at their connection cap, passively ejected): the picker asks it about the
// backend its algorithm chose and, on a refusal, about the algorithm's next
// choice; after a few refusals it asks about every backend in rotation in
// turn. pick() returns nullptr only when accept() refused every backend in
// rotation, or when none is in rotation (accept() is then not called at all).
// accept() must be a pure predicate; it may be asked more than once per
// backend per pick.
//
// The algorithms (makePicker), and the cost of a pick with n backends in
// rotation when accept() refuses nothing:
//   round_robin      nginx's smooth weighted round robin (5:1:1 picks a a b a c a a),
//                    over the backends grouped by equal (weight, slow-start
//                    start): O(g) for g groups, 1 when all weights are equal.
//                    The sequence is nginx's exactly while accept() refuses
//                    nothing; a refused backend loses that turn, as though
//                    picked, and the next turn is asked. A change of rotation
//                    restarts the sequence.
//   least_conn       lowest (load() + 1) / weight; among equals the one picked
//                    longest ago, so that equal backends take turns. A heap
//                    per group kept in step with the loads through the
//                    backends' LoadLog: O(g + c log n), c the load changes
//                    since the last pick (about 2 per request, from every
//                    worker). Up to 8 backends in rotation it scans their
//                    live loads instead (O(n), fewer instructions than the heaps).
//   p2c              two distinct accepted backends drawn uniformly, the lower
//                    (load() + 1) / weight of the two: O(1).
//   consistent_hash  HashPlacer::pick() when ctx.has_key (O(1) expected), else
//                    least_conn.
// Weights are effectiveWeight(ctx.now_ms, ctx.slow_start_ms), so slow start
// applies to every algorithm but the HashPlacer (which must not move keys
// while a backend ramps up). Without a LoadLog attached to the backends'
// counters (a BackendTable attaches its own), least_conn and the load bound
// re-read every load on every pick: correct, O(n). A pick allocates only when
// it rebuilds.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "balancer/backend.h"
#include "balancer/function_ref.h"
#include "conf/config.h"

namespace tether::balancer {

using Accept = FunctionRef<bool(const Backend&)>;

struct PickContext {
  std::int64_t now_ms = 0;          // for slow start: the time accept() judges by
  std::int64_t slow_start_ms = 0;   // 0 = off
  std::uint64_t key_hash = 0;       // consistent_hash: hash of the request's key
  bool has_key = false;             // consistent_hash without a key falls back to least_conn
};

// Up, not drained, weight not 0: the backends a Picker chooses among.
inline bool inRotation(const Backend& b) {
  return b.state.load(std::memory_order_relaxed) == BackendState::kUp &&
         !b.admin_drain.load(std::memory_order_relaxed) &&
         b.weight.load(std::memory_order_relaxed) != 0;
}

class Picker {
 public:
  virtual ~Picker() = default;
  virtual Backend* pick(std::span<Backend* const> backends, Accept accept,
                        const PickContext& ctx) = 0;
};

std::unique_ptr<Picker> makePicker(conf::Balance algorithm, std::uint64_t seed);

namespace detail {

// What a picker knows of the list it indexes, to tell when to rebuild.
class ListWatch {
 public:
  bool stale(std::span<Backend* const> backends, std::int64_t now_ms,
             std::int64_t slow_start_ms) const {
    return backends.data() != data_ || backends.size() != size_ || rotationEpoch() != epoch_ ||
           now_ms >= recheck_at_ms_ || now_ms < built_at_ms_ || slow_start_ms != slow_start_ms_;
  }
  // After a rebuild from `backends` at epoch (read before the rebuild looked
  // at any backend) and now_ms; recheck_at_ms: when a slow-start ramp ends.
  void rebuilt(std::span<Backend* const> backends, std::uint64_t epoch, std::int64_t now_ms,
               std::int64_t slow_start_ms, std::int64_t recheck_at_ms) {
    data_ = backends.data();
    size_ = backends.size();
    epoch_ = epoch;
    built_at_ms_ = now_ms;
    slow_start_ms_ = slow_start_ms;
    recheck_at_ms_ = recheck_at_ms;
  }

 private:
  Backend* const* data_ = nullptr;
  std::size_t size_ = static_cast<std::size_t>(-1);
  std::uint64_t epoch_ = 0;
  std::int64_t built_at_ms_ = 0;
  std::int64_t slow_start_ms_ = -1;
  std::int64_t recheck_at_ms_ = 0;
};

// A cached load per member of a picker's index, kept in step with the
// members' LoadLog (balancer/load_log.h).
class LoadView {
 public:
  LoadView();
  ~LoadView();
  // The members changed: registers with their log (when they share one) and
  // reads every load.
  void reset(std::span<Backend* const> members);
  // Brings the loads up to date: calls changed(m, old, now) for each member
  // whose load changed and returns true; or re-reads every load (no log, or
  // changes were lost), calls nothing and returns false.
  template <typename F>
  bool sync(F&& changed);
  std::uint32_t operator[](std::size_t m) const { return loads_[m]; }

 private:
  void readAll();

  std::vector<Backend*> members_;
  std::vector<std::uint32_t> loads_;
  std::vector<std::int32_t> member_of_id_;  // Backend::id -> member, -1 if none
  std::unique_ptr<LoadLog::Reader> reader_;
};

template <typename F>
bool LoadView::sync(F&& changed) {
  if (reader_ == nullptr) {
    readAll();
    return false;
  }
  bool complete = reader_->poll([&](std::uint32_t id) {
    if (id >= member_of_id_.size() || member_of_id_[id] < 0) return;
    auto m = static_cast<std::size_t>(member_of_id_[id]);
    std::uint32_t now = members_[m]->load();
    if (now == loads_[m]) return;
    std::uint32_t old = loads_[m];
    loads_[m] = now;
    changed(m, old, now);
  });
  if (!complete) readAll();
  return complete;
}

}  // namespace detail

// Consistent hashing with bounded loads in O(1): a Maglev lookup table
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016) of kTableSize slots over the placeable backends, each
// owning a share of the slots proportional to its weight (Envoy's weighted
// fill); a key's home is the owner of slot key_hash % kTableSize. Same inputs,
// same answer, on every tether: this is how affinity places a new key before
// any store is consulted, and how consistent_hash places a client.
//
// Placeable: weight not 0, not drained, not removed, whatever the health. The
// table is built from those sorted by Backend::name (never the id), so that
// tethers that learned the same backends in different orders agree, and it is
// rebuilt (about 1 ms at 500 backends) only when that set or a weight changes:
// a drain, a reload, an admin weight, a DNS change, never a health check.
//
// pick() walks the table from the key's slot and returns the first backend
// that is up (state kUp), accepted, and within the load bound
//   load() <= load_factor * total_load * weight / total_weight + 1,
// totals over the placeable backends that are up: load_factor x the mean + 1
// with equal weights, as in "Consistent Hashing with Bounded Loads"
// (Mirrokni, Thorup, Zadimoghaddam), with +1 of slack so that a few keys at
// low load stay where they hash. Weights are the configured ones (no slow
// start). After kMaxProbes slots it tries the placeable backends that are up
// in name order, from a place the key chooses. When none is within the bound
// (load_factor < 1) it returns the first accepted backend it met: the key's
// home if that is accepted. nullptr only when no backend is up and accepted.
//
// What moves when the fleet changes:
//   - a backend goes down, is ejected, tried or at its cap: it is skipped, not
//     taken out of the table, so only the keys it held move (each to the next
//     slot's owner, spread by weight over the others) and they come back with
//     it: the guarantee rendezvous hashing gave.
//   - a backend leaves the table (drain, removal by reload or DNS, weight 0)
//     or joins it: its share of the keys moves, plus Maglev's reshuffle among
//     the others, which grows with backends / kTableSize. Draining one of 10
//     equal backends moves 10.4 % of the keys (0.3 % from backends that stay),
//     one of 500 moves 1.15 % (0.95 %), one of 1000 0.69 % (0.59 %): measured
//     by the HashPlacer tests. Rendezvous hashing, before, moved the leaving
//     backend's share only, but cost O(n) per pick. Pinned keys (affinity) do
//     not move either way: a pin is honoured while its backend is up.
class HashPlacer {
 public:
  static constexpr std::uint32_t kTableSize = 65537;  // prime; ~130 slots per backend at 500
  static constexpr int kMaxProbes = 32;

  explicit HashPlacer(double load_factor = 1.25);
  ~HashPlacer();
  HashPlacer(const HashPlacer&) = delete;
  HashPlacer& operator=(const HashPlacer&) = delete;

  Backend* pick(std::span<Backend* const> backends, Accept accept, std::uint64_t key_hash);

 private:
  void refresh(std::span<Backend* const> backends);
  void buildTable();
  void recount();
  bool withinBound(std::uint32_t load, std::uint32_t weight);

  double load_factor_;
  detail::ListWatch watch_;
  std::vector<Backend*> members_;      // placeable, sorted by name
  std::vector<std::uint32_t> weights_;  // configured, per member
  std::vector<std::uint16_t> table_;   // slot -> member
  std::vector<std::uint8_t> up_;       // per member, state kUp at the last refresh
  std::size_t up_count_ = 0;
  std::uint64_t up_weight_ = 0;
  std::int64_t up_load_ = 0;  // sum of loads_ over members up
  bool loads_fresh_ = false;  // loads_ synced during this pick
  detail::LoadView loads_;
};

// 64-bit hash of a key (stable across processes and versions): FNV-1a 64
// followed by the splitmix64 finaliser.
std::uint64_t hashKey(std::string_view key);

}  // namespace tether::balancer
