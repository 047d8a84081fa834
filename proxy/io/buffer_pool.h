// Fixed-size I/O buffers, recycled per loop.
//
// A connection takes a buffer when bytes arrive and gives it back as soon as
// nothing in it is pending, so an idle keep-alive connection or an idle
// tunnel holds no buffer (STYLE.md). One pool per loop: not thread-safe.
//
// Buffers are carved from 1 MiB slabs mapped from the kernel. Free buffers
// are kept ready (warm) up to `max_warm`, and beyond that while the warm and
// the used ones together stay within the most buffers in use at once in the
// last one to two ticks (PoolDemand; the worker ticks once a second): 5,000
// busy connections thus reuse their buffers instead of dropping and faulting
// in pages on every request. A buffer freed beyond that, and at each tick the
// warm ones the demand no longer justifies, give their pages back
// (MADV_DONTNEED) and wait, costing no memory, for the next burst. So a burst
// of connections leaves no resident memory behind two seconds after it is
// over, which a heap allocator cannot promise (freed blocks between live ones
// stay resident), and the warm set never exceeds what the peak held.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "proxy/io/free_list.h"
#include "proxy/io/sanitizer.h"

namespace tether::proxy {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;
  static constexpr std::size_t kSlab = 1024 * 1024;

  // The floor is kept resident for good (32 buffers, 512 KiB): enough for a
  // quiet server's occasional requests to find warm pages, small beside what
  // the connections of a burst cost.
  explicit BufferPool(std::size_t max_warm = 32) : max_warm_(max_warm) {}
  ~BufferPool() {
    for (char* s : slabs_) ::munmap(s, kSlab);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Never null: an exhausted address space throws std::bad_alloc, as new does.
  char* get() {
    demand_.take();
#ifdef TETHER_ASAN
    // Under AddressSanitizer each buffer is its own heap block, with redzones.
    if (void* b = std::malloc(kSize)) return static_cast<char*>(b);
    throw std::bad_alloc();
#else
    if (warm_) {
      --warm_count_;
      return std::exchange(warm_, next(warm_));
    }
    if (!cold_.empty()) {
      char* b = cold_.back();
      cold_.pop_back();
      return b;
    }
    if (carved_ == kSlab / kSize || slabs_.empty()) {
      void* s = ::mmap(nullptr, kSlab, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (s == MAP_FAILED) {
        demand_.give();
        throw std::bad_alloc();
      }
      slabs_.push_back(static_cast<char*>(s));
      carved_ = 0;
    }
    return slabs_.back() + kSize * carved_++;
#endif
  }

  void put(char* b) {
    demand_.give();
#ifdef TETHER_ASAN
    std::free(b);
#else
    if (demand_.keeps(warm_count_, max_warm_)) {
      std::memcpy(b, &warm_, sizeof warm_);  // a warm buffer holds the link to the next
      warm_ = b;
      ++warm_count_;
      return;
    }
    makeCold(b);
#endif
  }

  // Once a second: a new demand period; the warm buffers beyond max_warm and
  // beyond the demand of the last two periods go cold (oldest warm last in
  // the list, but any will do: their pages are all resident).
  void tick() {
    demand_.tick();
#ifndef TETHER_ASAN
    while (warm_ && demand_.excess(warm_count_, max_warm_)) {
      --warm_count_;
      makeCold(std::exchange(warm_, next(warm_)));
    }
#endif
  }

  std::size_t inUse() const { return demand_.in_use; }
  std::size_t warmCount() const { return warm_count_; }
  std::size_t coldCount() const { return cold_.size(); }

 private:
  void makeCold(char* b) {
    ::madvise(b, kSize, MADV_DONTNEED);
    cold_.push_back(b);
  }
  static char* next(char* b) {
    char* n;
    std::memcpy(&n, b, sizeof n);
    return n;
  }

  // (Unused under AddressSanitizer, where every buffer is a heap block.)
  [[maybe_unused]] char* warm_ = nullptr;  // newest first: the warmest in cache
  std::size_t warm_count_ = 0;
  [[maybe_unused]] std::size_t max_warm_;
  std::vector<char*> cold_;    // pages given back; their contents are gone
  std::vector<char*> slabs_;   // every slab, for the destructor
  [[maybe_unused]] std::size_t carved_ = 0;  // buffers handed out of slabs_.back() so far
  PoolDemand demand_;  // buffers in use, and the recent peak (free_list.h)
};

// A byte buffer from the pool or, for a head larger than a pool buffer, from
// the heap: [0, end) holds data.
struct IoBuffer {
  char* data = nullptr;
  std::uint32_t cap = 0;
  std::uint32_t end = 0;
  bool heap() const { return cap > BufferPool::kSize; }
  // Gives the memory back (to `pool`, or the heap); the buffer is empty after.
  void release(BufferPool& pool) {
    if (!data) return;
    if (heap()) {
      std::free(data);
    } else {
      pool.put(data);
    }
    *this = IoBuffer{};
  }
};

// Makes room in `b` for `need` more bytes: a pool buffer when that is
// enough, else one from the heap, the held bytes moved along. Only while no
// write references the buffer.
inline void reserveBuffer(BufferPool& pool, IoBuffer& b, std::uint32_t need) {
  if (!b.data) {
    if (need <= BufferPool::kSize) {
      b.data = pool.get();
      b.cap = BufferPool::kSize;
    } else {
      b.data = static_cast<char*>(std::malloc(need));
      b.cap = need;
    }
    b.end = 0;
    return;
  }
  if (b.end + need <= b.cap) return;
  std::uint32_t cap = b.end + need;
  char* big = static_cast<char*>(std::malloc(cap));
  std::memcpy(big, b.data, b.end);
  if (b.heap()) {
    std::free(b.data);
  } else {
    pool.put(b.data);
  }
  b.data = big;
  b.cap = cap;
}

}  // namespace tether::proxy
