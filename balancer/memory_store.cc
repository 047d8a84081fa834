#include "balancer/memory_store.h"

#include <algorithm>

namespace tether::balancer {

// Elements of an unordered_map keep their address across rehashing (only
// iterators are invalidated), which is what lets the LRU list point at them.

MemoryPinStore::MemoryPinStore(std::size_t max_entries)
    : max_entries_(max_entries == 0 ? 1 : max_entries) {
  map_.reserve(std::min<std::size_t>(max_entries_, 1024));
}

void MemoryPinStore::unlink(Entry* e) {
  Node& n = e->second;
  if (n.prev)
    n.prev->second.next = n.next;
  else
    head_ = n.next;
  if (n.next)
    n.next->second.prev = n.prev;
  else
    tail_ = n.prev;
  n.prev = n.next = nullptr;
}

void MemoryPinStore::pushFront(Entry* e) {
  Node& n = e->second;
  n.prev = nullptr;
  n.next = head_;
  if (head_)
    head_->second.prev = e;
  else
    tail_ = e;
  head_ = e;
}

void MemoryPinStore::remove(Entry* e) {
  // Erase through an iterator: erase(key) with a key that lives inside the
  // element being erased is asking for trouble.
  auto it = map_.find(std::string_view(e->first));
  unlink(e);
  map_.erase(it);
}

std::optional<std::string> MemoryPinStore::get(std::string_view key, std::int64_t now_ms) {
  auto it = map_.find(key);
  if (it == map_.end()) return std::nullopt;
  Entry* e = &*it;
  if (e->second.expires_ms <= now_ms) {
    unlink(e);
    map_.erase(it);
    return std::nullopt;
  }
  if (head_ != e) {
    unlink(e);
    pushFront(e);
  }
  return e->second.backend;
}

void MemoryPinStore::set(std::string_view key, std::string backend, std::int64_t expires_ms) {
  auto it = map_.find(key);
  if (it != map_.end()) {
    Entry* e = &*it;
    e->second.backend = std::move(backend);
    e->second.expires_ms = expires_ms;
    unlink(e);
    pushFront(e);
    return;
  }
  if (map_.size() >= max_entries_) remove(tail_);
  auto [ins, ok] = map_.try_emplace(std::string(key));
  (void)ok;
  Entry* e = &*ins;
  e->second.backend = std::move(backend);
  e->second.expires_ms = expires_ms;
  pushFront(e);
}

void MemoryPinStore::refresh(std::string_view key, std::int64_t expires_ms) {
  auto it = map_.find(key);
  if (it == map_.end()) return;
  Entry* e = &*it;
  e->second.expires_ms = expires_ms;
  unlink(e);
  pushFront(e);
}

void MemoryPinStore::erase(std::string_view key) {
  auto it = map_.find(key);
  if (it == map_.end()) return;
  unlink(&*it);
  map_.erase(it);
}

std::size_t MemoryPinStore::evictExpired(std::int64_t now_ms, std::size_t max_scan) {
  std::size_t removed = 0;
  Entry* e = tail_;
  for (std::size_t scanned = 0; e && scanned < max_scan; ++scanned) {
    Entry* towards_head = e->second.prev;
    if (e->second.expires_ms <= now_ms) {
      remove(e);
      ++removed;
    }
    e = towards_head;
  }
  return removed;
}

}  // namespace tether::balancer
