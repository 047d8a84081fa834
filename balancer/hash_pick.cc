// hashKey() and HashPlacer: the placement every tether computes the same way.
//
// Both are part of the cross-process contract (two tethers sharing a Redis
// must place a new key on the same backend), so the constants below, the
// table size and the way the table is filled must not change without a
// changelog entry: changing them moves every unpinned key.

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

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

}  // namespace

std::uint64_t hashKey(std::string_view key) {
  std::uint64_t h = kFnvOffset;
  for (unsigned char c : key) {
    h ^= c;
    h *= kFnvPrime;
  }
  return mix64(h);
}

HashPlacer::HashPlacer(double load_factor) : load_factor_(load_factor) {}
HashPlacer::~HashPlacer() = default;

namespace {

constexpr std::uint16_t kEmpty = 0xffff;

bool placeable(const Backend& b) {
  return b.weight.load(std::memory_order_relaxed) != 0 &&
         !b.admin_drain.load(std::memory_order_relaxed) &&
         b.state.load(std::memory_order_relaxed) != BackendState::kRemoved;
}

}  // namespace

void HashPlacer::refresh(std::span<Backend* const> backends) {
  if (!watch_.stale(backends, 0, 0)) return;
  std::uint64_t epoch = rotationEpoch();
  std::vector<std::pair<Backend*, std::uint32_t>> now;
  now.reserve(backends.size());
  for (Backend* b : backends)
    if (placeable(*b)) now.emplace_back(b, b->weight.load(std::memory_order_relaxed));
  // Exact name ties (not in one table, where names are unique) by pointer:
  // stable within the process at least.
  std::sort(now.begin(), now.end(), [](const auto& a, const auto& b) {
    return a.first->name != b.first->name ? a.first->name < b.first->name : a.first < b.first;
  });
  watch_.rebuilt(backends, epoch, 0, 0, std::numeric_limits<std::int64_t>::max());
  bool same = now.size() == members_.size();
  for (std::size_t m = 0; same && m < now.size(); ++m)
    same = now[m].first == members_[m] && now[m].second == weights_[m];
  if (!same) {
    members_.clear();
    weights_.clear();
    for (auto& [b, w] : now) {
      members_.push_back(b);
      weights_.push_back(w);
    }
    buildTable();
    loads_.reset(members_);
  }
  recount();
}

// Maglev's population, weighted as Envoy's: each member walks its own
// permutation of the slots (offset + j * skip mod a prime), taking the next
// free slot on its turn; a member of weight w takes a turn in w of every
// max-weight rounds, so slots are shared in proportion to weight to within
// one slot. The permutation comes from the member's name only.
void HashPlacer::buildTable() {
  constexpr std::uint32_t m_size = kTableSize;
  table_.assign(m_size, kEmpty);
  std::size_t n = members_.size();
  if (n == 0) return;
  std::vector<std::uint32_t> pos(n), skip(n);
  std::vector<std::uint64_t> target(n, 0);
  std::uint64_t max_w = 0;
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t h = hashKey(members_[i]->name);
    pos[i] = static_cast<std::uint32_t>((h & 0xffffffffu) % m_size);
    skip[i] = static_cast<std::uint32_t>((h >> 32) % (m_size - 1)) + 1;
    max_w = std::max<std::uint64_t>(max_w, weights_[i]);
  }
  std::uint32_t filled = 0;
  for (std::uint64_t round = 1; filled < m_size; ++round) {
    for (std::size_t i = 0; i < n && filled < m_size; ++i) {
      if (round * weights_[i] < target[i]) continue;
      target[i] += max_w;
      std::uint32_t c = pos[i];
      while (table_[c] != kEmpty) {
        c += skip[i];
        if (c >= m_size) c -= m_size;
      }
      table_[c] = static_cast<std::uint16_t>(i);
      c += skip[i];
      if (c >= m_size) c -= m_size;
      pos[i] = c;
      ++filled;
    }
  }
}

// Which members are up, and the totals the load bound is relative to.
void HashPlacer::recount() {
  up_.assign(members_.size(), 0);
  up_count_ = 0;
  up_weight_ = 0;
  up_load_ = 0;
  loads_.sync([](std::size_t, std::uint32_t, std::uint32_t) {});
  for (std::size_t m = 0; m < members_.size(); ++m) {
    if (members_[m]->state.load(std::memory_order_relaxed) != BackendState::kUp) continue;
    up_[m] = 1;
    ++up_count_;
    up_weight_ += weights_[m];
    up_load_ += loads_[m];
  }
  loads_fresh_ = true;
}

bool HashPlacer::withinBound(std::uint32_t load, std::uint32_t weight) {
  // The bound is at least 1: no need for the totals below that.
  if (load <= 1) return true;
  if (!loads_fresh_) {
    bool incremental = loads_.sync([this](std::size_t m, std::uint32_t old, std::uint32_t now) {
      if (up_[m]) up_load_ += static_cast<std::int64_t>(now) - static_cast<std::int64_t>(old);
    });
    if (!incremental) {
      up_load_ = 0;
      for (std::size_t m = 0; m < members_.size(); ++m)
        if (up_[m]) up_load_ += loads_[m];
    }
    loads_fresh_ = true;
  }
  // A backend's fair share of the load is proportional to its weight.
  double bound = load_factor_ * static_cast<double>(up_load_) * weight /
                     static_cast<double>(up_weight_) +
                 1;
  return load <= bound;
}

Backend* HashPlacer::pick(std::span<Backend* const> backends, Accept accept,
                          std::uint64_t key_hash) {
  loads_fresh_ = false;
  refresh(backends);
  if (up_count_ == 0) return nullptr;
  Backend* first = nullptr;  // the first accepted, whatever its load
  std::uint32_t slot = static_cast<std::uint32_t>(key_hash % kTableSize);
  for (int probe = 0; probe < kMaxProbes; ++probe) {
    std::uint16_t m = table_[slot];
    if (++slot == kTableSize) slot = 0;
    if (!up_[m]) continue;
    Backend* b = members_[m];
    if (!accept(*b)) continue;
    if (first == nullptr) first = b;
    if (withinBound(b->load(), weights_[m])) return b;
  }
  // Few up, or most refused or loaded: every member in name order from a
  // place the key chooses.
  std::size_t n = members_.size();
  std::size_t start = static_cast<std::size_t>((key_hash >> 32) % n);
  for (std::size_t k = 0; k < n; ++k) {
    std::size_t m = start + k < n ? start + k : start + k - n;
    if (!up_[m]) continue;
    Backend* b = members_[m];
    if (!accept(*b)) continue;
    if (first == nullptr) first = b;
    if (withinBound(b->load(), weights_[m])) return b;
  }
  return first;
}

}  // namespace tether::balancer
