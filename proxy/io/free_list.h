// A bounded free list of objects a worker lends out and takes back (parsers,
// head scratch): the steady state allocates nothing, and a burst leaves at
// most kMax objects behind. One per loop: not thread-safe.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

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

// Storage for objects that are made afresh each time (constructed on make(),
// destroyed on destroy()) but whose memory a loop keeps for the next one: no
// malloc in the steady state, at most kMax slots kept after a burst. One per
// loop: not thread-safe.
template <class T, std::size_t kMax>
class ObjectPool {
 public:
  ObjectPool() = default;
  ObjectPool(const ObjectPool&) = delete;
  ObjectPool& operator=(const ObjectPool&) = delete;
  ~ObjectPool() {
    while (head_) ::operator delete(std::exchange(head_, head_->next));
  }

  template <class... A>
  T* make(A&&... a) {
    void* p = head_ ? static_cast<void*>(pop()) : ::operator new(sizeof(Slot));
    return new (p) T(std::forward<A>(a)...);
  }
  void destroy(T* t) {
    t->~T();
    if (count_ >= kMax) {
      ::operator delete(static_cast<void*>(t));
      return;
    }
    Slot* s = new (static_cast<void*>(t)) Slot;
    s->next = head_;
    head_ = s;
    ++count_;
  }
  std::size_t size() const { return count_; }

 private:
  union Slot {
    Slot* next;
    alignas(T) unsigned char bytes[sizeof(T)];
  };
  Slot* pop() {
    --count_;
    return std::exchange(head_, head_->next);
  }
  Slot* head_ = nullptr;
  std::size_t count_ = 0;
};

}  // namespace tether::proxy
