// Fixed-size I/O buffers, recycled per loop.
//
// A connection takes a buffer when bytes arrive and gives it back as soon as
// nothing in it is pending, so an idle keep-alive connection or an idle
// tunnel holds no buffer (STYLE.md). One pool per loop: not thread-safe.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <vector>

namespace tether::proxy {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;

  explicit BufferPool(std::size_t max_free = 256) : max_free_(max_free) { free_.reserve(max_free); }
  ~BufferPool() {
    for (char* b : free_) std::free(b);
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  char* get() {
    ++in_use_;
    if (!free_.empty()) {
      char* b = free_.back();
      free_.pop_back();
      return b;
    }
    return static_cast<char*>(std::malloc(kSize));
  }
  void put(char* b) {
    --in_use_;
    if (free_.size() < max_free_) {
      free_.push_back(b);
    } else {
      std::free(b);
    }
  }
  std::size_t inUse() const { return in_use_; }

 private:
  std::vector<char*> free_;
  std::size_t max_free_;
  std::size_t in_use_ = 0;
};

}  // namespace tether::proxy
