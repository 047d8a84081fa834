// The four pick algorithms behind Picker, and makePicker().
//
// Each keeps an index over the backends in rotation (picker.h says when it is
// rebuilt) so that a pick costs O(1) or O(log n) instead of a look at every
// backend; each asks accept() about its own choices only, and falls back to
// asking about every backend in rotation after a few refusals, so that
// "nullptr only when accept() refuses all" holds without a scan per pick.

#include "balancer/picker.h"

#include <algorithm>
#include <limits>
#include <map>
#include <utility>

namespace tether::balancer {

namespace detail {

LoadView::LoadView() = default;
LoadView::~LoadView() = default;

void LoadView::reset(std::span<Backend* const> members) {
  members_.assign(members.begin(), members.end());
  LoadLog* log = members_.empty() ? nullptr : members_[0]->active_requests.log();
  std::size_t max_id = 0;
  for (Backend* b : members_) {
    if (b->active_requests.log() != log || b->active_tunnels.log() != log) log = nullptr;
    max_id = std::max<std::size_t>(max_id, b->id);
  }
  member_of_id_.assign(members_.empty() ? 0 : max_id + 1, -1);
  for (std::size_t m = 0; m < members_.size(); ++m)
    member_of_id_[members_[m]->id] = static_cast<std::int32_t>(m);
  // Register first, then read: a change made meanwhile is both read and
  // logged (harmless), never neither.
  if (log == nullptr) {
    reader_.reset();
  } else if (reader_ == nullptr || &reader_->log() != log) {
    reader_.reset();
    reader_ = std::make_unique<LoadLog::Reader>(*log);
  }
  readAll();
}

void LoadView::readAll() {
  loads_.resize(members_.size());
  for (std::size_t m = 0; m < members_.size(); ++m) loads_[m] = members_[m]->load();
}

}  // namespace detail

namespace {

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

// Is (la + 1) / wa < (lb + 1) / wb? Cross-multiplied in 64 bits: exact, no
// floats. The +1 makes weight count at zero load (HAProxy's leastconn does
// the same), so an idle heavy backend is preferred to an idle light one.
bool lighter(std::uint32_t la, std::uint32_t wa, std::uint32_t lb, std::uint32_t wb) {
  return (std::uint64_t{la} + 1) * wb < (std::uint64_t{lb} + 1) * wa;
}

// A backend in rotation as round_robin and least_conn group it: those with
// the same configured weight and slow-start start have the same effective
// weight at every instant, so their relative order never changes with time.
struct Member {
  Backend* backend;
  std::uint32_t weight;     // configured
  std::int64_t ramp_start;  // up_since_ms while ramping at the last rebuild, else 0
};

// The backends of `backends` in rotation, in list order. Returns when the
// earliest ramp among them ends (kNever if none ramps).
std::int64_t collectRotation(std::span<Backend* const> backends, std::int64_t now_ms,
                             std::int64_t slow_start_ms, std::vector<Member>* out) {
  out->clear();
  std::int64_t recheck = kNever;
  for (Backend* b : backends) {
    if (!inRotation(*b)) continue;
    std::int64_t since = b->up_since_ms.load(std::memory_order_relaxed);
    std::int64_t ramp = 0;
    if (slow_start_ms > 0 && since != 0 && now_ms - since < slow_start_ms) {
      ramp = since;
      recheck = std::min(recheck, since + slow_start_ms);
    }
    out->push_back({b, b->weight.load(std::memory_order_relaxed), ramp});
  }
  return recheck;
}

bool sameMembers(const std::vector<Member>& a, const std::vector<Member>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Member& x, const Member& y) {
    return x.backend == y.backend && x.weight == y.weight && x.ramp_start == y.ramp_start;
  });
}

// When the watch says the rotation may have changed, collects it again into
// *scratch and, if it differs from *current, swaps it in and returns true.
bool refreshRotation(std::span<Backend* const> backends, const PickContext& ctx,
                     detail::ListWatch* watch, std::vector<Member>* scratch,
                     std::vector<Member>* current) {
  if (!watch->stale(backends, ctx.now_ms, ctx.slow_start_ms)) return false;
  std::uint64_t epoch = rotationEpoch();
  std::int64_t recheck = collectRotation(backends, ctx.now_ms, ctx.slow_start_ms, scratch);
  watch->rebuilt(backends, epoch, ctx.now_ms, ctx.slow_start_ms, recheck);
  if (sameMembers(*scratch, *current)) return false;
  current->swap(*scratch);
  return true;
}

// Groups of members with equal (weight, ramp_start), in order of their first
// member. group_of[m] is member m's group.
template <typename Group>
void groupMembers(const std::vector<Member>& members, std::vector<Group>* groups,
                  std::vector<std::uint32_t>* group_of) {
  groups->clear();
  group_of->assign(members.size(), 0);
  std::map<std::pair<std::uint32_t, std::int64_t>, std::size_t> index;
  for (std::size_t m = 0; m < members.size(); ++m) {
    auto [it, added] =
        index.try_emplace({members[m].weight, members[m].ramp_start}, groups->size());
    std::size_t g = it->second;
    if (added) {
      groups->emplace_back();
      groups->back().weight = members[m].weight;
      groups->back().ramp_start = members[m].ramp_start;
    }
    (*group_of)[m] = static_cast<std::uint32_t>(g);
    (*groups)[g].members.push_back(static_cast<std::uint32_t>(m));
  }
}

std::uint32_t groupWeight(std::uint32_t weight, std::int64_t ramp_start, const PickContext& ctx) {
  return ramp_start == 0 ? weight
                         : slowStartWeight(weight, ramp_start, ctx.now_ms, ctx.slow_start_ms);
}

// nginx's smooth weighted round robin: each turn, every member's current
// weight grows by its effective weight, the largest wins and pays back the
// total. Picks interleave (5:1:1 gives a a b a c a a) instead of bursting.
//
// Members of one group (equal weight and ramp) grow alike, so within a group
// the winner is always the first, in list order, of those not yet picked in
// the group's cycle, all of which share one current weight: a group is its
// current weight `cur`, its cycle position `next`, and what its picked
// members paid back (`debt`, settled when the cycle wraps). A turn is then
// O(groups), and gives nginx's sequence exactly. (With a backend in slow
// start the total changes every turn; settling the debt as an average keeps
// the shares, not the exact interleaving.)
class RoundRobin final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    refresh(backends, ctx);
    if (members_.empty()) return nullptr;
    for (int turn = 0; turn < kMaxTurns; ++turn) {
      Backend* b = members_[nextTurn(ctx)].backend;
      if (accept(*b)) return b;
    }
    return fallback(accept);
  }

 private:
  static constexpr int kMaxTurns = 16;

  struct Group {
    std::uint32_t weight = 0;
    std::int64_t ramp_start = 0;
    std::vector<std::uint32_t> members;  // in list order
    std::size_t next = 0;                // members[0, next) were picked this cycle
    std::int64_t cur = 0;                // current weight of members[next, end)
    std::int64_t debt = 0;               // paid back by members[0, next)
    std::int64_t eff = 0;                // effective weight this turn
  };

  void refresh(std::span<Backend* const> backends, const PickContext& ctx) {
    if (!refreshRotation(backends, ctx, &watch_, &scratch_, &listed_)) return;
    // Restart the sequence, but after the backend picked last (so that, at a
    // low rate with frequent changes, the first members do not take it all).
    Backend* last = last_ < members_.size() ? members_[last_].backend : nullptr;
    members_ = listed_;
    auto at = std::find_if(members_.begin(), members_.end(),
                           [last](const Member& m) { return m.backend == last; });
    if (at != members_.end()) std::rotate(members_.begin(), at + 1, members_.end());
    groupMembers(members_, &groups_, &group_of_);
    last_ = members_.size();
  }

  std::uint32_t nextTurn(const PickContext& ctx) {
    std::int64_t total = 0;
    for (Group& g : groups_) {
      g.eff = groupWeight(g.weight, g.ramp_start, ctx);
      total += g.eff * static_cast<std::int64_t>(g.members.size());
    }
    Group* best = nullptr;
    for (Group& g : groups_) {
      g.cur += g.eff;
      if (best == nullptr || g.cur > best->cur ||
          (g.cur == best->cur && g.members[g.next] < best->members[best->next]))
        best = &g;
    }
    std::uint32_t m = best->members[best->next];
    best->debt += total;
    if (++best->next == best->members.size()) {
      auto n = static_cast<std::int64_t>(best->members.size());
      best->cur -= best->debt / n;
      best->debt %= n;
      best->next = 0;
    }
    last_ = m;
    return m;
  }

  // After kMaxTurns refusals: the accepted member with the largest current
  // weight (those picked this cycle count as having paid the total back).
  Backend* fallback(Accept accept) {
    Backend* best = nullptr;
    std::int64_t best_cur = 0;
    for (const Group& g : groups_) {
      for (std::size_t i = 0; i < g.members.size(); ++i) {
        Backend* b = members_[g.members[i]].backend;
        std::int64_t cur = i < g.next ? g.cur - g.debt / static_cast<std::int64_t>(g.next) : g.cur;
        if ((best == nullptr || cur > best_cur) && accept(*b)) {
          best = b;
          best_cur = cur;
        }
      }
    }
    return best;
  }

  detail::ListWatch watch_;
  std::vector<Member> listed_;   // in rotation, in list order
  std::vector<Member> members_;  // the same, from the one after the last pick
  std::vector<Member> scratch_;
  std::vector<Group> groups_;
  std::vector<std::uint32_t> group_of_;
  std::size_t last_ = 0;  // member picked last, members_.size() if none
};

// Weighted least connections: the lowest (load + 1) / weight, equals in
// order of their last pick. Members of a group share their effective weight,
// so a group is a binary heap on (load, last pick); a pick compares the
// groups' tops. Loads come from a LoadView: each pick first applies the load
// changes logged since the last one.
class LeastConn final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    refresh(backends, ctx);
    if (members_.empty()) return nullptr;
    for (Group& g : groups_) g.eff = groupWeight(g.weight, g.ramp_start, ctx);
    if (scanning_) return scan(accept, [this](std::size_t m) { return members_[m].backend->load(); });
    if (!loads_.sync([this](std::size_t m, std::uint32_t old, std::uint32_t now) {
          now < old ? siftUp(m) : siftDown(m);
        })) {
      heapifyAll();
    }
    Backend* chosen = nullptr;
    popped_.clear();
    for (int k = 0; k < kMaxRefusals; ++k) {
      std::int64_t m = best();
      if (m < 0) break;
      Backend* b = members_[static_cast<std::size_t>(m)].backend;
      if (accept(*b)) {
        chosen = b;
        picked_member_ = static_cast<std::size_t>(m);
        break;
      }
      popTop(group_of_[static_cast<std::size_t>(m)]);
      popped_.push_back(static_cast<std::uint32_t>(m));
    }
    for (std::uint32_t m : popped_) push(m);
    if (chosen == nullptr) return scan(accept, [this](std::size_t m) { return loads_[m]; });
    picked(picked_member_);
    return chosen;
  }

 private:
  static constexpr int kMaxRefusals = 8;
  // Up to this many members in rotation a pick scans their live loads: fewer
  // instructions than keeping heaps in step through the LoadLog, and no
  // reader is registered, so the writers log nothing.
  static constexpr std::size_t kScanUpTo = 8;

  struct Group {
    std::uint32_t weight = 0;
    std::int64_t ramp_start = 0;
    std::vector<std::uint32_t> members;  // unused after the heaps are built
    std::vector<std::uint32_t> heap;     // member indices
    std::uint32_t eff = 0;               // effective weight this pick
  };

  void refresh(std::span<Backend* const> backends, const PickContext& ctx) {
    if (!refreshRotation(backends, ctx, &watch_, &scratch_, &members_)) return;
    groupMembers(members_, &groups_, &group_of_);
    // Keep each backend's place among equals across the rebuild.
    seq_.resize(members_.size());
    for (std::size_t m = 0; m < members_.size(); ++m) {
      std::uint32_t id = members_[m].backend->id;
      seq_[m] = id < last_pick_.size() && last_pick_[id] != 0 ? last_pick_[id] : m;
    }
    pos_.assign(members_.size(), 0);
    scanning_ = members_.size() <= kScanUpTo;
    backends_.clear();
    if (!scanning_)
      for (const Member& m : members_) backends_.push_back(m.backend);
    loads_.reset(backends_);
    for (Group& g : groups_) g.heap = scanning_ ? std::vector<std::uint32_t>{} : g.members;
    if (!scanning_) heapifyAll();
  }

  // Is member a a better pick than member b (same group, so same weight)?
  bool before(std::uint32_t a, std::uint32_t b) const {
    return loads_[a] != loads_[b] ? loads_[a] < loads_[b] : seq_[a] < seq_[b];
  }

  void place(std::vector<std::uint32_t>& heap, std::size_t i, std::uint32_t m) {
    heap[i] = m;
    pos_[m] = static_cast<std::uint32_t>(i);
  }

  void siftUpAt(std::vector<std::uint32_t>& heap, std::size_t i) {
    std::uint32_t m = heap[i];
    while (i > 0) {
      std::size_t parent = (i - 1) / 2;
      if (!before(m, heap[parent])) break;
      place(heap, i, heap[parent]);
      i = parent;
    }
    place(heap, i, m);
  }

  void siftDownAt(std::vector<std::uint32_t>& heap, std::size_t i) {
    std::uint32_t m = heap[i];
    std::size_t n = heap.size();
    for (;;) {
      std::size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && before(heap[c + 1], heap[c])) ++c;
      if (!before(heap[c], m)) break;
      place(heap, i, heap[c]);
      i = c;
    }
    place(heap, i, m);
  }

  void siftUp(std::size_t m) { siftUpAt(groups_[group_of_[m]].heap, pos_[m]); }
  void siftDown(std::size_t m) { siftDownAt(groups_[group_of_[m]].heap, pos_[m]); }

  void heapifyAll() {
    for (Group& g : groups_) {
      for (std::size_t i = 0; i < g.heap.size(); ++i)
        pos_[g.heap[i]] = static_cast<std::uint32_t>(i);
      for (std::size_t i = g.heap.size() / 2; i-- > 0;) siftDownAt(g.heap, i);
    }
  }

  void popTop(std::uint32_t g) {
    std::vector<std::uint32_t>& heap = groups_[g].heap;
    std::uint32_t last = heap.back();
    heap.pop_back();
    if (!heap.empty()) {
      place(heap, 0, last);
      siftDownAt(heap, 0);
    }
  }

  void push(std::uint32_t m) {
    std::vector<std::uint32_t>& heap = groups_[group_of_[m]].heap;
    heap.push_back(m);
    pos_[m] = static_cast<std::uint32_t>(heap.size() - 1);
    siftUpAt(heap, heap.size() - 1);
  }

  // The best member over the groups' tops, -1 if every heap is empty.
  std::int64_t best() const {
    std::int64_t best = -1;
    const Group* bg = nullptr;
    for (const Group& g : groups_) {
      if (g.heap.empty()) continue;
      std::uint32_t m = g.heap[0];
      if (bg != nullptr) {
        auto b = static_cast<std::uint32_t>(best);
        bool wins = lighter(loads_[m], g.eff, loads_[b], bg->eff) ||
                    (!lighter(loads_[b], bg->eff, loads_[m], g.eff) && seq_[m] < seq_[b]);
        if (!wins) continue;
      }
      best = m;
      bg = &g;
    }
    return best;
  }

  void picked(std::size_t m) {
    // Above every initial order (a member's index) of any later rebuild.
    seq_[m] = ++counter_ + BackendTable::kMaxBackends;
    std::uint32_t id = members_[m].backend->id;
    if (id >= last_pick_.size()) last_pick_.resize(id + 1, 0);
    last_pick_[id] = seq_[m];
    if (!scanning_) siftDown(m);
  }

  // Every member in rotation, in the same order as the heaps: the pick with
  // few members, and the fallback after kMaxRefusals. load(m) is member m's
  // load (live or cached).
  template <typename Load>
  Backend* scan(Accept accept, Load&& load) {
    std::int64_t best = -1;
    std::uint32_t best_load = 0;
    for (std::size_t m = 0; m < members_.size(); ++m) {
      std::uint32_t lm = load(m);
      if (best >= 0) {
        auto b = static_cast<std::size_t>(best);
        std::uint32_t wm = groups_[group_of_[m]].eff, wb = groups_[group_of_[b]].eff;
        bool wins = lighter(lm, wm, best_load, wb) ||
                    (!lighter(best_load, wb, lm, wm) && seq_[m] < seq_[b]);
        if (!wins) continue;
      }
      if (accept(*members_[m].backend)) {
        best = static_cast<std::int64_t>(m);
        best_load = lm;
      }
    }
    if (best < 0) return nullptr;
    picked(static_cast<std::size_t>(best));
    return members_[static_cast<std::size_t>(best)].backend;
  }

  detail::ListWatch watch_;
  std::vector<Member> members_;
  std::vector<Member> scratch_;
  std::vector<Backend*> backends_;  // members_' backends, for the LoadView
  std::vector<Group> groups_;
  std::vector<std::uint32_t> group_of_;
  std::vector<std::uint32_t> pos_;  // member -> index in its group's heap
  std::vector<std::uint64_t> seq_;  // member -> order of its last pick
  std::vector<std::uint32_t> popped_;
  std::size_t picked_member_ = 0;
  bool scanning_ = false;  // at most kScanUpTo members: no heaps, no LoadLog reader
  std::vector<std::uint64_t> last_pick_;  // Backend::id -> seq of its last pick, 0 never
  std::uint64_t counter_ = 0;
  detail::LoadView loads_;
};

// Power of two random choices: two distinct accepted members drawn
// uniformly (rejection sampling: draws that accept() refuses are drawn
// again), the lighter by (load + 1) / weight wins. Less herd-prone than
// least_conn across many tethers that each see a stale view of the loads.
class P2c final : public Picker {
 public:
  explicit P2c(std::uint64_t seed) : state_(seed) {}

  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    refresh(backends);
    std::size_t n = members_.size();
    if (n == 0) return nullptr;
    std::size_t i = 0;
    if (!draw(n, n, accept, &i)) return fallback(accept, ctx);
    if (n == 1) return members_[i];
    std::size_t j = 0;
    if (!draw(n - 1, i, accept, &j)) return fallback(accept, ctx);
    Backend* a = members_[i];
    Backend* b = members_[j];
    // On a tie `a` wins; it is a random one of the two already.
    return lighter(b->load(), b->effectiveWeight(ctx.now_ms, ctx.slow_start_ms), a->load(),
                   a->effectiveWeight(ctx.now_ms, ctx.slow_start_ms))
               ? b
               : a;
  }

 private:
  static constexpr int kMaxDraws = 8;

  void refresh(std::span<Backend* const> backends) {
    if (!watch_.stale(backends, 0, 0)) return;
    std::uint64_t epoch = rotationEpoch();
    members_.clear();
    for (Backend* b : backends)
      if (inRotation(*b)) members_.push_back(b);
    watch_.rebuilt(backends, epoch, 0, 0, kNever);
  }

  // A member accepted, uniform over [0, n) shifted past `skip` (n: no skip).
  bool draw(std::size_t n, std::size_t skip, Accept accept, std::size_t* out) {
    for (int k = 0; k < kMaxDraws; ++k) {
      std::size_t i = below(n);
      if (skip < members_.size() && i >= skip) ++i;
      if (accept(*members_[i])) {
        *out = i;
        return true;
      }
    }
    return false;
  }

  // After kMaxDraws refusals: two drawn from the accepted ones listed.
  Backend* fallback(Accept accept, const PickContext& ctx) {
    candidates_.clear();
    for (Backend* b : members_)
      if (accept(*b)) candidates_.push_back(b);
    std::size_t n = candidates_.size();
    if (n == 0) return nullptr;
    if (n == 1) return candidates_[0];
    std::size_t i = below(n);
    std::size_t j = below(n - 1);
    if (j >= i) ++j;
    Backend* a = candidates_[i];
    Backend* b = candidates_[j];
    return lighter(b->load(), b->effectiveWeight(ctx.now_ms, ctx.slow_start_ms), a->load(),
                   a->effectiveWeight(ctx.now_ms, ctx.slow_start_ms))
               ? b
               : a;
  }

  std::uint64_t next() {  // splitmix64: any seed, including 0, is fine
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) for n < 2^32 (Lemire's multiply-shift; bias < 2^-32).
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(((next() >> 32) * n) >> 32); }

  std::uint64_t state_;
  detail::ListWatch watch_;
  std::vector<Backend*> members_;     // in rotation, in list order
  std::vector<Backend*> candidates_;  // fallback scratch
};

// consistent_hash: requests with a key go where the HashPlacer places it;
// requests without one are spread by least_conn.
class ConsistentHash final : public Picker {
 public:
  Backend* pick(std::span<Backend* const> backends, Accept accept,
                const PickContext& ctx) override {
    if (ctx.has_key) return placer_.pick(backends, accept, ctx.key_hash);
    return least_conn_.pick(backends, accept, ctx);
  }

 private:
  HashPlacer placer_;
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
