// The admin state of one backend as every tether on one Redis shares it:
// drained or not (POST .../drain, .../enable), and its weight (POST
// .../weight). Pure: the keys and the channel, the reading of a stored
// state (bytes any Redis client may have written), the fields a change
// writes, and the rule that merges what a tether knows with what Redis
// holds. The I/O is proxy/admin_sync.h's.
//
// In Redis, one hash per backend address (Backend::name, "ip:port" or
// "[ip6]:port", as in pins and metric labels), so that tethers configured
// with the same backends in any order, or finding them through DNS, agree:
//
//   tether:admin:backend:<address>
//     drain    "<0|1> <drain_ms> <deadline_ms>": enabled or drained, the
//              wall-clock ms of that request, and of the deadline after
//              which its tunnels get 1001 (0: none)
//     weight   "<0..10000> <weight_ms>": the weight, and when it was asked
//     version  writes so far (HINCRBY: Redis's order of them)
//     by       who wrote last ("host admin-address"), for the operator
//
// and a channel, tether:admin, whose messages are the address of a backend
// whose hash just changed (each tether then reads that hash again).
//
// Each aspect is one field, so that it is written whole by one HSET or
// HSETNX, and a drain on one tether and a weight change on another at the
// same moment both stand (one value for the whole state would lose one).
// A field that is missing or malformed counts as absent (and is reported);
// other fields are ignored, so that a later tether may add some.
//
// Which change wins: the request made last by the wall clocks of the
// tethers that took them (Redis's order between equal times). A change
// stays pending on its tether until a read shows Redis holding it or a
// later one; while Redis holds an earlier one, the change is written again.
// A state this tether knows that Redis lacks (Redis restarted without its
// data) is written back only where the field is still absent (HSETNX), so
// that it never overwrites a change made meanwhile.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tether::balancer {

inline constexpr std::string_view kAdminChannel = "tether:admin";
inline constexpr std::string_view kAdminKeyPrefix = "tether:admin:backend:";
// Longest backend address a message or key may name ("[" 45 "]:" 5 is 53).
inline constexpr std::size_t kMaxAdminAddress = 64;
inline constexpr std::size_t kMaxAdminBy = 256;

struct AdminState {
  // The drain aspect: present once a drain or an enable was asked for.
  bool has_drain = false;
  bool drain = false;
  std::int64_t drain_ms = 0;     // when it was asked for (wall clock)
  std::int64_t deadline_ms = 0;  // drained: tunnels get 1001 from then on; 0 none
  // The weight aspect.
  bool has_weight = false;
  std::uint32_t weight = 0;
  std::int64_t weight_ms = 0;
  std::uint64_t version = 0;  // 0: not read from Redis
  std::string by;
  // Read from Redis: the field is there but unreadable (the aspect absent).
  bool bad_drain = false;
  bool bad_weight = false;

  bool empty() const { return !has_drain && !has_weight; }
  bool sameDrain(const AdminState& o) const {
    return has_drain == o.has_drain && drain == o.drain && drain_ms == o.drain_ms && deadline_ms == o.deadline_ms;
  }
  bool sameWeight(const AdminState& o) const {
    return has_weight == o.has_weight && weight == o.weight && weight_ms == o.weight_ms;
  }
};

std::string adminStateKey(std::string_view address);

// The backend address a channel message names, or nothing when the payload
// is not one (empty, too long, a byte that no address holds).
std::optional<std::string_view> parseAdminMessage(std::string_view payload);

using AdminFields = std::vector<std::pair<std::string_view, std::string_view>>;

// Reads HGETALL's field/value pairs (none: the key does not exist). Every
// problem is appended to *errors ("weight: not \"<0..10000> <ms>\": ...")
// and makes its aspect absent; a malformed version or by is dropped alone.
AdminState parseAdminState(const AdminFields& fields, std::vector<std::string>* errors);

// The values of the drain and weight fields for s (s must have the aspect).
std::string drainField(const AdminState& s);
std::string weightField(const AdminState& s);

// What a tether knows of a backend: the state it applies, and which aspects
// are its own changes that no read has yet shown in Redis.
struct KnownAdminState {
  AdminState state;
  bool drain_pending = false;
  bool weight_pending = false;
};

enum class AdminWrite : std::uint8_t {
  kNone,
  kSet,      // HSET: our pending change, later than what Redis holds
  kRestore,  // HSETNX: what we know and Redis lacks
};

// The outcome of reading Redis's state for a backend the tether knows as
// `ours`: what to apply next, and what to write, per aspect.
struct AdminMerge {
  KnownAdminState next;
  AdminWrite drain = AdminWrite::kNone;
  AdminWrite weight = AdminWrite::kNone;
};

// Per aspect (see the top of this file):
//   - ours pending and later than Redis's (or Redis has none): ours, set;
//   - Redis has one: Redis's (ours no longer pending);
//   - Redis lacks it and we know one: ours, restored (set over a field
//     that is there but unreadable, so that it is repaired once);
//   - neither: nothing (the configuration's).
AdminMerge mergeAdminState(const KnownAdminState& ours, const AdminState& theirs);

}  // namespace tether::balancer
