// The four pick algorithms behind Picker, and makePicker().
//
// Every algorithm skips backends that accept() refuses and those whose
// (effective) weight is 0. None allocates on a pick except to grow its
// per-picker scratch the first time a larger table is seen.

#include "balancer/picker.h"

#include <vector>

namespace tether::balancer {
namespace {

std::uint32_t weightOf(const Backend& b, const PickContext& ctx) {
  return b.effectiveWeight(ctx.now_ms, ctx.slow_start_ms);
}

// Is (la + 1) / wa < (lb + 1) / wb? Cross-multiplied in 64 bits: exact, no
// floats. The +1 makes weight count at zero load (HAProxy's leastconn does
// the same), so an idle heavy backend is preferred to an idle light one.
bool lighter(std::uint32_t la, std::uint32_t wa, std::uint32_t lb, std::uint32_t wb) {
  return (std::uint64_t{la} + 1) * wb < (std::uint64_t{lb} + 1) * wa;
}

// nginx's smooth weighted round robin: each pick, every candidate's current
// weight grows by its effective weight, the largest wins and pays back the
// total. Picks interleave (5:1:1 gives a a b a c a a) instead of bursting.
class RoundRobin final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    Backend* best = nullptr;
    std::int64_t total = 0;
    for (Backend* b : backends) {
      if (!accept(*b)) continue;
      std::uint32_t w = weightOf(*b, ctx);
      if (w == 0) continue;
      std::int64_t& cur = current(b->id);
      cur += w;
      total += w;
      if (best == nullptr || cur > current_[best->id]) best = b;
    }
    if (best != nullptr) current_[best->id] -= total;
    return best;
  }

 private:
  std::int64_t& current(std::uint32_t id) {
    if (id >= current_.size()) current_.resize(id + 1, 0);
    return current_[id];
  }

  std::vector<std::int64_t> current_;  // indexed by Backend::id
};

// Weighted least connections: the lowest (load + 1) / weight. Among equals
// the scan starts one place further each pick, so equal backends share evenly.
class LeastConn final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    std::size_t n = backends.size();
    if (n == 0) return nullptr;
    std::size_t start = next_start_++ % n;
    Backend* best = nullptr;
    std::uint32_t best_load = 0;
    std::uint32_t best_weight = 0;
    for (std::size_t i = 0; i < n; ++i) {
      Backend* b = backends[(start + i) % n];
      if (!accept(*b)) continue;
      std::uint32_t w = weightOf(*b, ctx);
      if (w == 0) continue;
      std::uint32_t l = b->load();
      if (best == nullptr || lighter(l, w, best_load, best_weight)) {
        best = b;
        best_load = l;
        best_weight = w;
      }
    }
    return best;
  }

 private:
  std::size_t next_start_ = 0;
};

// Power of two random choices: two distinct accepted backends drawn
// uniformly, the lighter by (load + 1) / weight wins. Cheaper than a full
// scan on big tables, and less herd-prone than least_conn across many
// tethers that each see a stale view of the loads.
class P2c final : public Picker {
 public:
  explicit P2c(std::uint64_t seed) : state_(seed) {}

  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    candidates_.clear();
    for (Backend* b : backends) {
      if (!accept(*b)) continue;
      std::uint32_t w = weightOf(*b, ctx);
      if (w != 0) candidates_.push_back({b, w});
    }
    std::size_t n = candidates_.size();
    if (n == 0) return nullptr;
    if (n == 1) return candidates_[0].backend;
    std::size_t i = below(n);
    std::size_t j = below(n - 1);
    if (j >= i) ++j;
    const Candidate& a = candidates_[i];
    const Candidate& b = candidates_[j];
    // On a tie `a` wins; it is a random one of the two already.
    return lighter(b.backend->load(), b.weight, a.backend->load(), a.weight) ? b.backend
                                                                             : a.backend;
  }

 private:
  struct Candidate {
    Backend* backend;
    std::uint32_t weight;
  };

  std::uint64_t next() {  // splitmix64: any seed, including 0, is fine
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; bias < 2^-32).
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(((next() >> 32) * n) >> 32); }

  std::uint64_t state_;
  std::vector<Candidate> candidates_;  // scratch, reused across picks
};

// consistent_hash: requests with a key go where hashPick() places it;
// requests without one are spread by least_conn.
class ConsistentHash final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    if (ctx.has_key) return hashPick(backends, accept, ctx.key_hash);
    return least_conn_.pick(backends, accept, ctx);
  }

 private:
  LeastConn least_conn_;
};

}  // namespace

std::unique_ptr<Picker> makePicker(conf::Balance algorithm, std::uint64_t seed) {
  switch (algorithm) {
    case conf::Balance::kRoundRobin:
      return std::make_unique<RoundRobin>();
    case conf::Balance::kLeastConn:
      return std::make_unique<LeastConn>();
    case conf::Balance::kP2c:
      return std::make_unique<P2c>(seed);
    case conf::Balance::kConsistentHash:
      return std::make_unique<ConsistentHash>();
  }
  return std::make_unique<LeastConn>();
}

}  // namespace tether::balancer
