// Pick algorithms: which backend takes the next request.
//
// Pure and loop-free (HAProxy's lb algorithms behind one small table of
// operations; Pingora's "the proxy does not know how balancing is done").
// A Picker chooses among `backends` those that `accept` allows; it never
// looks at health or drain itself: the caller's predicate does. pick() returns
// nullptr when accept() refuses every backend. A Picker belongs to one loop
// (it keeps per-loop state such as smooth round-robin weights); it is not
// thread-safe. The Backend pointers must outlive the call only.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

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
Backend* hashPick(std::span<Backend* const> backends, Accept accept, std::uint64_t key_hash,
                  double load_factor = 1.25);

// 64-bit hash of a key (stable across processes and versions).
std::uint64_t hashKey(std::string_view key);

}  // namespace tether::balancer
