// MemoryPinStore: the in-process pin table behind `affinity.store: memory`.
//
// Maps a pin key (normally pinStoreKey(key), see affinity_key.h) to a backend
// name, each entry with an absolute expiry time. Bounded: when full, setting a
// new key evicts the least recently used entry. An entry whose expiry has
// passed is a miss and is removed when a get() finds it (or by
// evictExpired()). Every operation is O(1) on average (a hash map whose nodes
// are threaded on an intrusive LRU list; lookups by string_view do not
// allocate).
//
// Pure and not thread-safe: the owner calls it from one loop, or serialises
// access itself. Times are the caller's clock in milliseconds (loop time);
// the store never reads a clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace tether::balancer {

class MemoryPinStore {
 public:
  // max_entries: most entries kept; 0 is taken as 1.
  explicit MemoryPinStore(std::size_t max_entries);
  MemoryPinStore(const MemoryPinStore&) = delete;
  MemoryPinStore& operator=(const MemoryPinStore&) = delete;

  // The backend pinned for key, if any and if its expiry is after now_ms
  // (an entry expiring exactly at now_ms is expired). A hit makes the entry
  // the most recently used; an expired entry is removed.
  std::optional<std::string> get(std::string_view key, std::int64_t now_ms);
  // Pins key to backend until expires_ms, replacing any pin it had. Makes it
  // the most recently used; may evict the least recently used entry.
  void set(std::string_view key, std::string backend, std::int64_t expires_ms);
  // Moves the expiry of an existing pin (sliding TTL) and makes it the most
  // recently used; does nothing when key has no entry. Callers refresh after
  // a hit, so an entry that expired since is not expected here; if it is,
  // it lives again.
  void refresh(std::string_view key, std::int64_t expires_ms);
  // Removes the pin of key, if any.
  void erase(std::string_view key);
  // Entries held, expired ones not yet removed included.
  std::size_t size() const { return map_.size(); }
  std::size_t maxEntries() const { return max_entries_; }
  // Removes expired entries, looking at no more than max_scan entries from
  // the least recently used end (for a periodic, bounded sweep). Returns how
  // many it removed.
  std::size_t evictExpired(std::int64_t now_ms, std::size_t max_scan);

 private:
  struct Node;
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Map = std::unordered_map<std::string, Node, Hash, std::equal_to<>>;
  using Entry = std::pair<const std::string, Node>;
  struct Node {
    std::string backend;
    std::int64_t expires_ms = 0;
    Entry* prev = nullptr;  // towards the most recently used
    Entry* next = nullptr;  // towards the least recently used
  };

  void unlink(Entry* e);
  void pushFront(Entry* e);
  void remove(Entry* e);

  std::size_t max_entries_;
  Map map_;
  Entry* head_ = nullptr;  // most recently used
  Entry* tail_ = nullptr;  // least recently used
};

}  // namespace tether::balancer
