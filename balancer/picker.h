// Pick algorithms: which backend takes the next request.
//
// Pure and loop-free (HAProxy's lb algorithms behind one small table of
// operations; Pingora's "the proxy does not know how balancing is done").
// A Picker chooses among `backends` those that `accept` allows; it never
// looks at health or drain itself: the caller's predicate does. pick() returns
// nullptr when accept() refuses every backend. A Picker belongs to one loop
// (it keeps per-loop state such as smooth round-robin weights); it is not
// thread-safe. The Backend pointers must outlive the call only.
//
// The algorithms (makePicker):
//   round_robin      nginx's smooth weighted round robin (5:1:1 picks a a b a c a a)
//   least_conn       lowest (load() + 1) / weight; equal backends take turns
//   p2c              two distinct accepted backends at random, the lower
//                    (load() + 1) / weight of the two
//   consistent_hash  hashPick() when ctx.has_key, else least_conn
// Weights are effectiveWeight(ctx.now_ms, ctx.slow_start_ms), so slow start
// applies to every algorithm but hashPick (which must not move keys while a
// backend ramps up). A backend of weight 0 is never picked. A pick does not
// allocate, except to grow a picker's scratch the first time it sees a
// larger table. accept() may be called more than once per backend per pick
// and must be a pure predicate.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "balancer/backend.h"
#include "balancer/function_ref.h"
#include "conf/config.h"

namespace tether::balancer {

using Accept = FunctionRef<bool(const Backend&)>;

struct PickContext {
  std::int64_t now_ms = 0;          // for slow start
  std::int64_t slow_start_ms = 0;   // 0 = off
  std::uint64_t key_hash = 0;       // consistent_hash: hash of the request's key
  bool has_key = false;             // consistent_hash without a key falls back to least_conn
};

class Picker {
 public:
  virtual ~Picker() = default;
  virtual Backend* pick(std::span<Backend* const> backends, Accept accept,
                        const PickContext& ctx) = 0;
};

std::unique_ptr<Picker> makePicker(conf::Balance algorithm, std::uint64_t seed);

// Rendezvous (highest random weight) hashing with bounded load: the backend
// with the highest weighted score for key_hash among those accept() allows,
// skipping any whose load() exceeds load_factor x the mean load (+1) of the
// accepted ones. Same inputs, same answer, on every tether: this is how
// affinity places a new key before any store is consulted.
//
// Details: the score of a backend is drawn from hashKey-style mixing of
// key_hash and Backend::name (never the id), so tethers that list backends in
// different orders agree; exact ties go to the smaller name. Weights are the
// configured weight() (no slow start); the load bound is weighted:
// load() <= load_factor * total_load * weight / total_weight + 1, which is
// load_factor x mean + 1 when weights are equal. With load_factor >= 1 some
// backend always fits; if none does (load_factor < 1), the best-scoring
// accepted backend is returned anyway. nullptr only when none is accepted.
Backend* hashPick(std::span<Backend* const> backends, Accept accept, std::uint64_t key_hash,
                  double load_factor = 1.25);

// 64-bit hash of a key (stable across processes and versions): FNV-1a 64
// followed by the splitmix64 finaliser.
std::uint64_t hashKey(std::string_view key);

}  // namespace tether::balancer
