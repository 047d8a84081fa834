// A bounded free list of objects a worker lends out and takes back (parsers,
// head scratch): the steady state allocates nothing, and a burst leaves at
// most kMax objects behind. One per loop: not thread-safe.
#pragma once

#include <cstddef>

namespace tether::proxy {

// T has a member `T* next_free`.
template <class T, std::size_t kMax>
class FreeList {
 public:
  FreeList() = default;
  FreeList(const FreeList&) = delete;
  FreeList& operator=(const FreeList&) = delete;
  ~FreeList() {
    while (head_) {
      T* n = head_->next_free;
      delete head_;
      head_ = n;
    }
  }

  T* take() {
    if (!head_) return new T;
    T* t = head_;
    head_ = t->next_free;
    --count_;
    return t;
  }
  void give(T* t) {
    if (count_ >= kMax) {
      delete t;
      return;
    }
    t->next_free = head_;
    head_ = t;
    ++count_;
  }
  std::size_t size() const { return count_; }

 private:
  T* head_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace tether::proxy
