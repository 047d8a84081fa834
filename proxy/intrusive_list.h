// A minimal intrusive doubly-linked list: O(1) unlink, no allocation.
// T derives from ListHook<Tag>; a T may sit in one list per tag.
#pragma once

#include <cstddef>

namespace tether::proxy {

template <typename Tag = void>
struct ListHook {
  ListHook* prev = nullptr;
  ListHook* next = nullptr;
  bool linked() const { return prev != nullptr; }
};

template <typename T, typename Tag = void>
class IntrusiveList {
 public:
  using Hook = ListHook<Tag>;
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == &head_; }
  std::size_t size() const { return size_; }
  void pushBack(T* t) {
    Hook* h = static_cast<Hook*>(t);
    h->prev = head_.prev;
    h->next = &head_;
    head_.prev->next = h;
    head_.prev = h;
    ++size_;
  }
  void remove(T* t) {
    Hook* h = static_cast<Hook*>(t);
    if (!h->linked()) return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->prev = h->next = nullptr;
    --size_;
  }
  T* front() const { return empty() ? nullptr : static_cast<T*>(head_.next); }
  T* back() const { return empty() ? nullptr : static_cast<T*>(head_.prev); }
  T* popFront() {
    T* t = front();
    if (t) remove(t);
    return t;
  }
  // Visits every element; fn may remove the element it is given (only that one).
  template <typename Fn>
  void forEach(Fn&& fn) {
    Hook* h = head_.next;
    while (h != &head_) {
      Hook* next = h->next;
      fn(static_cast<T*>(h));
      h = next;
    }
  }

 private:
  mutable Hook head_;
  std::size_t size_ = 0;
};

}  // namespace tether::proxy
