#include "balancer/load_log.h"

namespace tether::balancer {
namespace {

std::atomic<std::uint64_t> g_next_uid{1};

// The ring this thread last wrote to, and the log it belongs to (by uid, not
// address: a log may be freed and another made at the same address).
struct RingCache {
  std::uint64_t uid = 0;
  void* ring = nullptr;
};
thread_local RingCache t_ring;

}  // namespace

LoadLog::LoadLog() : uid_(g_next_uid.fetch_add(1, std::memory_order_relaxed)) {}

LoadLog::~LoadLog() {
  for (auto& r : rings_) delete r.load(std::memory_order_relaxed);
}

LoadLog::Ring* LoadLog::ringOfThisThread() noexcept {
  if (t_ring.uid == uid_) return static_cast<Ring*>(t_ring.ring);
  std::thread::id me = std::this_thread::get_id();
  std::lock_guard<std::mutex> lock(add_mu_);
  std::uint32_t n = ring_count_.load(std::memory_order_relaxed);
  Ring* ring = nullptr;
  for (std::uint32_t i = 0; i < n && ring == nullptr; ++i) {
    Ring* r = rings_[i].load(std::memory_order_relaxed);
    if (r->owner == me) ring = r;
  }
  if (ring == nullptr) {
    if (n == kMaxRings) return nullptr;
    ring = new Ring;
    ring->owner = me;
    rings_[n].store(ring, std::memory_order_release);
    ring_count_.store(n + 1, std::memory_order_release);
  }
  t_ring = {uid_, ring};
  return ring;
}

void LoadLog::record(std::uint32_t id) noexcept {
  // Sequentially consistent, as the counter's change before it: either the
  // Reader constructor's increment comes first and this change is logged, or
  // this change comes first and the new reader's initial read of every load
  // sees it.
  if (readers_.load(std::memory_order_seq_cst) == 0) return;
  Ring* ring = ringOfThisThread();
  if (ring == nullptr) {
    overflow_.store(true, std::memory_order_release);
    return;
  }
  std::uint64_t h = ring->head.load(std::memory_order_relaxed);
  ring->slots[h % kRingSize].store(((h + 1) << 16) | (id & 0xffff), std::memory_order_release);
  ring->head.store(h + 1, std::memory_order_release);
}

LoadLog::Reader::Reader(LoadLog& log) : log_(log) {
  log_.readers_.fetch_add(1, std::memory_order_seq_cst);
  // The caller reads every load next (with relaxed loads): after this fence
  // they see every change whose record() found no reader.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint32_t n = log_.ring_count_.load(std::memory_order_acquire);
  for (std::uint32_t r = 0; r < n; ++r) {
    Ring* ring = log_.rings_[r].load(std::memory_order_acquire);
    if (ring != nullptr) next_[r] = ring->head.load(std::memory_order_acquire);
  }
}

LoadLog::Reader::~Reader() { log_.readers_.fetch_sub(1, std::memory_order_relaxed); }

}  // namespace tether::balancer
