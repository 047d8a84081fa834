// The load of a backend (requests and tunnels in flight) and the log of its
// changes that lets a picker keep an index over loads without reading every
// backend on every pick.
//
// Writers are the sessions of every worker (one fetch_add when a request or
// tunnel starts, one fetch_sub when it ends); readers are pickers (least_conn,
// the consistent-hash placer), each on its own loop. A LoadLog has one ring per
// writing thread, so a change costs the writer no contended atomic: it stores
// the backend's id in its own ring and publishes its own head. A reader keeps
// one cursor per ring and, at each pick, re-reads the loads of the backends
// named since its last pick. A reader that fell more than a ring behind is
// told so and re-reads every load (correct, merely O(n) once).
//
// While no reader is registered, a change records nothing (one relaxed load).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tether::balancer {

class LoadLog {
 public:
  static constexpr std::size_t kRingSize = 4096;  // changes kept per writing thread
  static constexpr std::size_t kMaxRings = 64;    // writing threads; beyond, readers resync

  LoadLog();
  ~LoadLog();
  LoadLog(const LoadLog&) = delete;
  LoadLog& operator=(const LoadLog&) = delete;

  // Any thread: the load of backend `id` changed (after the change is made).
  void record(std::uint32_t id) noexcept;

  // One picker's view of the log; lives on the picker's loop. The log must
  // outlive it.
  class Reader {
   public:
    explicit Reader(LoadLog& log);
    ~Reader();
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    // Calls f(id) for every change recorded since the last poll (or since
    // the Reader was made), in no particular order across threads, possibly
    // more than once for one change. Returns false, having called nothing,
    // when some changes were lost: the caller then re-reads every load.
    template <typename F>
    bool poll(F&& f);

    const LoadLog& log() const { return log_; }

   private:
    LoadLog& log_;
    std::array<std::uint64_t, kMaxRings> next_{};  // cursor per ring
  };

 private:
  struct Ring {
    std::atomic<std::uint64_t> head{0};  // written by the owner thread only
    std::thread::id owner;
    // (index + 1) << 16 | id: the tag tells a reader whether the slot still
    // holds the change it expects or was overwritten by a later one.
    std::array<std::atomic<std::uint64_t>, kRingSize> slots{};
  };
  Ring* ringOfThisThread() noexcept;

  const std::uint64_t uid_;  // tells a thread's cached ring pointer which log it belongs to
  std::atomic<std::uint32_t> readers_{0};
  std::atomic<std::uint32_t> ring_count_{0};
  std::atomic<bool> overflow_{false};  // a thread found no free ring
  std::array<std::atomic<Ring*>, kMaxRings> rings_{};
  std::mutex add_mu_;  // serialises adding rings
};

template <typename F>
bool LoadLog::Reader::poll(F&& f) {
  if (log_.overflow_.load(std::memory_order_acquire)) return false;
  std::uint32_t n = log_.ring_count_.load(std::memory_order_acquire);
  bool complete = true;
  for (std::uint32_t r = 0; r < n; ++r) {
    Ring* ring = log_.rings_[r].load(std::memory_order_acquire);
    if (ring == nullptr) continue;  // being added: its first changes come next poll
    std::uint64_t head = ring->head.load(std::memory_order_acquire);
    std::uint64_t& next = next_[r];
    if (head == next) continue;
    if (!complete || head - next > kRingSize) {
      next = head;
      complete = false;
      continue;
    }
    for (; next < head; ++next) {
      std::uint64_t e = ring->slots[next % kRingSize].load(std::memory_order_acquire);
      if ((e >> 16) != next + 1) {  // overwritten meanwhile
        next = head;
        complete = false;
        break;
      }
      f(static_cast<std::uint32_t>(e & 0xffff));
    }
  }
  return complete;
}

// A backend's count of requests or tunnels in flight: std::atomic's interface
// (so callers read and bump it as before) plus a record in the backend
// table's LoadLog on every change. Every change is sequentially consistent
// whatever order the caller asks for: LoadLog's reader registration relies on
// it (on x86 a relaxed and a seq_cst read-modify-write are the same
// instruction).
class LoadCounter {
 public:
  LoadCounter() = default;
  LoadCounter(const LoadCounter&) = delete;
  LoadCounter& operator=(const LoadCounter&) = delete;

  std::uint32_t load(std::memory_order o = std::memory_order_seq_cst) const noexcept {
    return v_.load(o);
  }
  operator std::uint32_t() const noexcept { return load(); }  // NOLINT: as std::atomic
  std::uint32_t fetch_add(std::uint32_t n, std::memory_order = std::memory_order_seq_cst) noexcept {
    std::uint32_t was = v_.fetch_add(n);
    changed();
    return was;
  }
  std::uint32_t fetch_sub(std::uint32_t n, std::memory_order = std::memory_order_seq_cst) noexcept {
    std::uint32_t was = v_.fetch_sub(n);
    changed();
    return was;
  }
  void store(std::uint32_t n, std::memory_order = std::memory_order_seq_cst) noexcept {
    v_.exchange(n);
    changed();
  }
  LoadCounter& operator=(std::uint32_t n) noexcept {
    store(n);
    return *this;
  }
  std::uint32_t operator++() noexcept { return fetch_add(1) + 1; }
  std::uint32_t operator--() noexcept { return fetch_sub(1) - 1; }
  std::uint32_t operator++(int) noexcept { return fetch_add(1); }
  std::uint32_t operator--(int) noexcept { return fetch_sub(1); }

  // Before the backend is shared: where changes of backend `id` are logged.
  void attach(LoadLog* log, std::uint32_t id) noexcept {
    log_ = log;
    id_ = id;
  }
  LoadLog* log() const noexcept { return log_; }

 private:
  void changed() noexcept {
    if (log_ != nullptr) log_->record(id_);
  }

  std::atomic<std::uint32_t> v_{0};
  LoadLog* log_ = nullptr;
  std::uint32_t id_ = 0;
};

}  // namespace tether::balancer
