// Free lists of objects a worker lends out and takes back (parsers, head
// scratch, per-request state): the steady state allocates nothing, and a
// burst leaves at most kMax objects behind two ticks after it ends. One per
// loop: not thread-safe.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace tether::proxy {

// How many of a pool's objects were wanted lately: the number in use now and
// the most in use at once this period and the last (a period ends at each
// tick(), once a second from the worker's sweep timer). A pool keeps a spare
// object while its spares stay below a fixed floor, or while its spares and
// its users together stay within the recent peak: 5,000 busy connections
// then reuse 5,000 objects instead of freeing all but the floor's worth after
// every burst and allocating them again. Spares never exceed what the peak
// held at once, and two quiet periods bring them back to the floor.
struct PoolDemand {
  std::size_t in_use = 0;
  std::size_t peak = 0;
  std::size_t last_peak = 0;

  void take() {
    if (++in_use > peak) peak = in_use;
  }
  void give() { --in_use; }
  std::size_t room() const { return peak > last_peak ? peak : last_peak; }
  // Whether a pool holding `spares` keeps one more.
  bool keeps(std::size_t spares, std::size_t floor) const {
    return spares < floor || spares + in_use < room();
  }
  // Whether a pool holding `spares` has more than it may keep after a tick.
  bool excess(std::size_t spares, std::size_t floor) const {
    return spares > floor && spares + in_use > room();
  }
  void tick() {
    last_peak = peak;
    peak = in_use;
  }
};

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
    demand_.take();
    if (!head_) return new T;
    T* t = head_;
    head_ = t->next_free;
    --count_;
    return t;
  }
  void give(T* t) {
    demand_.give();
    if (!demand_.keeps(count_, kMax)) {
      delete t;
      return;
    }
    t->next_free = head_;
    head_ = t;
    ++count_;
  }
  // Once a second: frees the spares recent demand no longer justifies.
  void tick() {
    demand_.tick();
    while (head_ && demand_.excess(count_, kMax)) {
      delete std::exchange(head_, head_->next_free);
      --count_;
    }
  }
  std::size_t size() const { return count_; }

 private:
  T* head_ = nullptr;
  std::size_t count_ = 0;
  PoolDemand demand_;
};

// Storage for objects that are made afresh each time (constructed on make(),
// destroyed on destroy()) but whose memory a loop keeps for the next one: no
// malloc in the steady state, at most kMax slots kept two ticks after a burst
// (PoolDemand). One per loop: not thread-safe.
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
    demand_.take();
    void* p = head_ ? static_cast<void*>(pop()) : ::operator new(sizeof(Slot));
    return new (p) T(std::forward<A>(a)...);
  }
  void destroy(T* t) {
    t->~T();
    demand_.give();
    if (!demand_.keeps(count_, kMax)) {
      ::operator delete(static_cast<void*>(t));
      return;
    }
    Slot* s = new (static_cast<void*>(t)) Slot;
    s->next = head_;
    head_ = s;
    ++count_;
  }
  // Once a second: frees the slots recent demand no longer justifies.
  void tick() {
    demand_.tick();
    while (head_ && demand_.excess(count_, kMax)) ::operator delete(static_cast<void*>(pop()));
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
  PoolDemand demand_;
};

}  // namespace tether::proxy
