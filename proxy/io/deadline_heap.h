// Deadlines of a loop's connections, in one binary min-heap.
//
// Each connection has one deadline derived from its state (STYLE.md); a
// libuv timer handle per connection would cost 152 bytes of every connection
// (idle ones included) for what is a time and a heap position. Here a
// connection embeds a DeadlineEntry (16 bytes) and the worker keeps one heap
// and one uv timer armed for the earliest entry. Scheduling is O(log n),
// like libuv's own timer heap; cancelling is O(log n) from the entry's index.
//
// Ownership: entries belong to their connections; the heap holds pointers to
// the scheduled ones only. A connection cancels its entry before it is
// destroyed (an entry that is not scheduled costs nothing to cancel). Pure
// data structure: no libuv, no clock; one per loop, not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tether::proxy {

inline constexpr std::uint8_t kDeadlineSession = 0, kDeadlineStream = 1;

struct DeadlineEntry {
  static constexpr std::uint32_t kNotScheduled = 0xffffffffu;
  std::int64_t deadline_at = 0;  // loop milliseconds, while scheduled
  std::uint32_t heap_index = kNotScheduled;
  std::uint8_t deadline_kind = 0;  // who owns the entry (kDeadlineSession, kDeadlineStream): the worker dispatches on it
  bool scheduled() const { return heap_index != kNotScheduled; }
};

class DeadlineHeap {
 public:
  // Schedules `e` at `at`, or moves it there if it is scheduled already.
  void schedule(DeadlineEntry* e, std::int64_t at) {
    if (e->scheduled()) {
      std::int64_t was = e->deadline_at;
      e->deadline_at = at;
      if (at < was) {
        up(e->heap_index);
      } else {
        down(e->heap_index);
      }
      return;
    }
    e->deadline_at = at;
    e->heap_index = static_cast<std::uint32_t>(heap_.size());
    heap_.push_back(e);
    up(e->heap_index);
  }

  void cancel(DeadlineEntry* e) {
    if (!e->scheduled()) return;
    std::uint32_t i = e->heap_index;
    e->heap_index = DeadlineEntry::kNotScheduled;
    DeadlineEntry* last = heap_.back();
    heap_.pop_back();
    if (last == e) return;
    heap_[i] = last;
    last->heap_index = i;
    if (i > 0 && last->deadline_at < heap_[(i - 1) / 2]->deadline_at) {
      up(i);
    } else {
      down(i);
    }
  }

  // The earliest entry, or nullptr when none is scheduled.
  DeadlineEntry* earliest() const { return heap_.empty() ? nullptr : heap_.front(); }
  // Removes and returns the earliest entry if it is due at `now`, else nullptr.
  DeadlineEntry* popDue(std::int64_t now) {
    DeadlineEntry* e = earliest();
    if (!e || e->deadline_at > now) return nullptr;
    cancel(e);
    return e;
  }
  std::size_t size() const { return heap_.size(); }

 private:
  void place(std::uint32_t i, DeadlineEntry* e) {
    heap_[i] = e;
    e->heap_index = i;
  }
  void up(std::uint32_t i) {
    DeadlineEntry* e = heap_[i];
    while (i > 0) {
      std::uint32_t parent = (i - 1) / 2;
      if (heap_[parent]->deadline_at <= e->deadline_at) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }
  void down(std::uint32_t i) {
    DeadlineEntry* e = heap_[i];
    const std::uint32_t n = static_cast<std::uint32_t>(heap_.size());
    for (;;) {
      std::uint32_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && heap_[child + 1]->deadline_at < heap_[child]->deadline_at) ++child;
      if (heap_[child]->deadline_at >= e->deadline_at) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, e);
  }

  std::vector<DeadlineEntry*> heap_;
};

}  // namespace tether::proxy
