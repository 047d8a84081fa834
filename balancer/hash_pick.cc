// hashKey() and hashPick(): the placement every tether computes the same way.
//
// Both are part of the cross-process contract (two tethers sharing a Redis
// must place a new key on the same backend), so the constants below must not
// change without a changelog entry: changing them moves every unpinned key.

#include <cmath>
#include <limits>

#include "balancer/picker.h"

namespace tether::balancer {
namespace {

constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

// splitmix64's finaliser: a bijection that spreads FNV's weak low bits.
std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// -ln(u) / w for u uniform in (0, 1) drawn from (key, backend name): the
// arrival time of an exponential race with rate w, so the smallest value wins
// with probability w / sum(w) (weighted rendezvous hashing). Using the name,
// not the id, makes the answer independent of the order backends were added.
double raceTime(std::uint64_t key_hash, const Backend& b, std::uint32_t weight) {
  std::uint64_t h = mix64(key_hash ^ mix64(hashKey(b.name)));
  double u = (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;  // never 0 nor 1
  return -std::log(u) / static_cast<double>(weight);
}

// Strictly better placement for the key: earlier race time, then the name so
// that an exact tie is still broken identically everywhere.
bool better(double t, const Backend& b, double best_t, const Backend* best) {
  if (best == nullptr) return true;
  if (t != best_t) return t < best_t;
  return b.name < best->name;
}

}  // namespace

std::uint64_t hashKey(std::string_view key) {
  std::uint64_t h = kFnvOffset;
  for (unsigned char c : key) {
    h ^= c;
    h *= kFnvPrime;
  }
  return mix64(h);
}

Backend* hashPick(std::span<Backend* const> backends, Accept accept, std::uint64_t key_hash,
                  double load_factor) {
  // First pass: the totals the load bound is relative to. accept() is called
  // again in the second pass; it is a predicate, so that is harmless, and it
  // saves keeping a list (this is a free function with no scratch space).
  double total_load = 0;
  double total_weight = 0;
  for (Backend* b : backends) {
    std::uint32_t w = b->weight.load(std::memory_order_relaxed);
    if (w == 0 || !accept(*b)) continue;
    total_load += b->load();
    total_weight += w;
  }
  if (total_weight == 0) return nullptr;

  // A backend's fair share of the load is proportional to its weight; with
  // equal weights the bound is load_factor x mean + 1, as in "Consistent
  // Hashing with Bounded Loads" (Mirrokni, Thorup, Zadimoghaddam), with +1 of
  // slack so that a few keys at low load still land where they hash.
  Backend* best = nullptr;      // best within the bound
  Backend* fallback = nullptr;  // best regardless of load
  double best_t = std::numeric_limits<double>::infinity();
  double fallback_t = best_t;
  for (Backend* b : backends) {
    std::uint32_t w = b->weight.load(std::memory_order_relaxed);
    if (w == 0 || !accept(*b)) continue;
    double t = raceTime(key_hash, *b, w);
    if (better(t, *b, fallback_t, fallback)) {
      fallback = b;
      fallback_t = t;
    }
    double bound = load_factor * total_load * w / total_weight + 1;
    if (b->load() <= bound && better(t, *b, best_t, best)) {
      best = b;
      best_t = t;
    }
  }
  return best != nullptr ? best : fallback;
}

}  // namespace tether::balancer
