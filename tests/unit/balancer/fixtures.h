// Backends for picker tests: a small owned table plus the span pickers take.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "balancer/backend.h"
#include "balancer/picker.h"

namespace tether::balancer::testing {

// One LoadLog for every fixture of the test binary, never freed: a picker
// made before a fixture may outlive it, and its reader with it. Ids repeat
// across fixtures; a picker re-reading a load it need not is harmless.
inline LoadLog& testLoadLog() {
  static LoadLog* log = new LoadLog;
  return *log;
}

class Backends {
 public:
  enum class Loads { kLogged, kUnlogged };  // kUnlogged: no LoadLog (pickers re-read all)

  // One backend per weight, named 10.0.0.<i+1>:8080, all up.
  explicit Backends(std::vector<std::uint32_t> weights, Loads loads = Loads::kLogged)
      : loads_(loads) {
    for (std::size_t i = 0; i < weights.size(); ++i)
      add("10.0.0." + std::to_string(i + 1) + ":8080", weights[i]);
  }
  // n backends of weight 100 named 10.<i / 65536>.<i / 256 % 256>.<i % 256>:80.
  static Backends many(std::size_t n, Loads loads = Loads::kLogged) {
    Backends bs({}, loads);
    for (std::size_t i = 0; i < n; ++i)
      bs.add("10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
             std::to_string(i % 256) + ":80");
    return bs;
  }
  Backends(Backends&&) = default;
  Backend* add(const std::string& name, std::uint32_t weight = 100) {
    auto b = std::make_unique<Backend>();
    b->id = static_cast<std::uint32_t>(owned_.size());
    if (loads_ == Loads::kLogged) {
      b->active_requests.attach(&testLoadLog(), b->id);
      b->active_tunnels.attach(&testLoadLog(), b->id);
    }
    b->name = name;
    b->weight = weight;
    b->state = BackendState::kUp;
    ptrs_.push_back(b.get());
    owned_.push_back(std::move(b));
    return ptrs_.back();
  }
  std::span<Backend* const> span() const { return ptrs_; }
  Backend& operator[](std::size_t i) { return *ptrs_[i]; }
  std::size_t size() const { return ptrs_.size(); }
  std::vector<Backend*>& ptrs() { return ptrs_; }

 private:
  Loads loads_;
  std::vector<std::unique_ptr<Backend>> owned_;
  std::vector<Backend*> ptrs_;
};

inline constexpr auto acceptAll = [](const Backend&) { return true; };

// Picks n times with zero load (each request done before the next) and
// returns the share of picks per backend name.
inline std::map<std::string, double> shares(Picker& picker, std::span<Backend* const> backends,
                                            int n, const PickContext& ctx = {}) {
  std::map<std::string, int> counts;
  for (int i = 0; i < n; ++i) {
    Backend* b = picker.pick(backends, acceptAll, ctx);
    if (b != nullptr) ++counts[b->name];
  }
  std::map<std::string, double> out;
  for (auto& [name, c] : counts) out[name] = static_cast<double>(c) / n;
  return out;
}

// A closed system: `in_flight` requests at all times; each step one random
// request completes and a new one is picked. Returns the share of picks per
// backend name. This is how least_conn and p2c honour weights: at zero load
// they prefer the heaviest idle backend, under load they keep
// (load + 1) / weight level.
inline std::map<std::string, double> sharesUnderLoad(Picker& picker, Backends& backends,
                                                     int in_flight, int n,
                                                     const PickContext& ctx = {},
                                                     std::uint64_t seed = 42) {
  std::vector<Backend*> running;
  std::map<std::string, int> counts;
  std::uint64_t x = seed;
  auto rnd = [&x] {  // xorshift64
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (int i = 0; i < n + in_flight; ++i) {
    if (static_cast<int>(running.size()) == in_flight) {
      std::size_t k = rnd() % running.size();
      running[k]->active_requests--;
      running[k] = running.back();
      running.pop_back();
    }
    Backend* b = picker.pick(backends.span(), acceptAll, ctx);
    b->active_requests++;
    running.push_back(b);
    if (i >= in_flight) ++counts[b->name];  // count after warm-up
  }
  for (Backend* b : running) b->active_requests--;
  std::map<std::string, double> out;
  for (auto& [name, c] : counts) out[name] = static_cast<double>(c) / n;
  return out;
}

}  // namespace tether::balancer::testing
