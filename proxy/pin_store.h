// Where pins live: key -> backend address, with a sliding TTL.
//
// One PinStore per worker loop. `memory` stores share one LRU (mutex; the
// default, for a single tether); Redis stores (redis://, rediss://,
// redis+sentinel://) keep one pipelined connection per loop
// (RedisConnection, redis_client.h), with a local cache in front so that a
// slow or absent Redis never holds a request up: lookups that do not answer
// within affinity.lookup_timeout fall back to the cache and then to
// consistent hashing (the caller's job), and pins made while Redis is down
// are written once it (or, with sentinels, the new master) is back.
//
// A Redis store is up once its connection has been answered (AUTH accepted,
// the database selected, with sentinels ROLE saying "master"), and down
// from the moment it fails, a command waits affinity.redis.reply_timeout,
// or the master turns read-only: tether_affinity_store_up and the log say
// which, with the address and the reason (never the password).
//
// Keys handed to a store are already hashed (balancer::pinStoreKey): raw
// cookies and tokens never reach Redis or memory.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "balancer/memory_store.h"
#include "conf/config.h"
#include "metrics/metrics.h"

namespace tether::proxy {

// Receives the answer of a lookup, on the store's loop: synchronously from
// inside get() when the answer is at hand (memory, cache), later otherwise.
class PinWaiter {
 public:
  // store_ok: the store answered (false: error or down; backend then comes
  // from the local cache when it has the key). backend: empty when no pin.
  virtual void onPinLookup(bool store_ok, const std::string& backend) = 0;
  // The end of a confirmed set (PinStore::setConfirmed): stored, the store
  // acknowledged the pin; otherwise it refused, went away or is down.
  virtual void onPinStored(bool stored) = 0;

 protected:
  ~PinWaiter() = default;
};

// A lookup in flight. The waiter cancels it (cancel()) when it gives up or
// dies first; the store frees it when the answer arrives or the store closes.
struct PinTicket {
  PinWaiter* waiter = nullptr;
  std::string key;
  std::int64_t started_ms = 0;
  class PinStore* store = nullptr;
};

class PinStore {
 public:
  virtual ~PinStore() = default;
  // Starts a lookup of `key`. Returns nullptr when w->onPinLookup has
  // already been called; otherwise a ticket, valid until the answer arrives
  // or cancel().
  virtual PinTicket* get(const std::string& key, PinWaiter* w) = 0;
  void cancel(PinTicket* t) { t->waiter = nullptr; }
  // Pins key to backend for ttl_ms (overwrites).
  virtual void set(const std::string& key, const std::string& backend, std::int64_t ttl_ms) = 0;
  // Pins key to backend as set() does, and tells w when the store holds it
  // (w->onPinStored): for a pin about to be revealed to a client, which may
  // use it at once through another tether. A store that is down answers at
  // once (false; the pin is written once it is back, as for set()). Returns
  // nullptr when w has been told already; otherwise a ticket, valid until
  // the answer arrives or cancel().
  virtual PinTicket* setConfirmed(const std::string& key, const std::string& backend, std::int64_t ttl_ms,
                                  PinWaiter* w) = 0;
  // Pins key to backend unless the store already holds a pin for it: for a
  // placement made without the store's answer (lookup timed out, store down),
  // which must not replace a pin another tether made. The local view takes
  // the placement at once; if the store had a pin, the local view forgets
  // the placement again so that the next lookup asks the store.
  virtual void place(const std::string& key, const std::string& backend, std::int64_t ttl_ms) = 0;
  // Extends the TTL of a pin in use (throttled to once per ttl/10 per key).
  virtual void refresh(const std::string& key, std::int64_t ttl_ms) = 0;
  // What the local view holds for key, without waiting (admin, fallback).
  virtual std::optional<std::string> peek(const std::string& key) = 0;
  virtual bool up() const = 0;
  virtual const char* kind() const = 0;
  // The Redis server the store talks to while up (with sentinels, the
  // current master); nothing for memory or while down.
  virtual std::optional<conf::HostPort> server() const { return std::nullopt; }
  // Closes every handle; the store may be destroyed after the loop ran once more.
  virtual void close() = 0;
};

// The memory pins every worker of the process shares.
class SharedMemoryPins {
 public:
  explicit SharedMemoryPins(std::size_t max_entries) : lru_(max_entries) {}
  std::optional<std::string> get(const std::string& key, std::int64_t now_ms);
  void set(const std::string& key, const std::string& backend, std::int64_t expires_ms);
  void refresh(const std::string& key, std::int64_t expires_ms);

 private:
  std::mutex mu_;
  balancer::MemoryPinStore lru_;
};

class TlsClientContext;

// The TLS context of a rediss:// store (affinity.redis.tls), loaded once for
// the process and shared by every worker's store; nullptr for other stores,
// and when it cannot be loaded, with the errors appended ("affinity.redis.
// tls.ca: FILE: why"). Server::run asks first, so that a bad file stops
// the start (exit 3), and --check-config reports the same.
std::shared_ptr<const TlsClientContext> redisTlsContext(const conf::Affinity& cfg, std::vector<std::string>* errors);

// Creates the store of one worker for `cfg` (affinity.store). A Redis
// connect that gets no answer within connect_timeout_ms (timeouts.connect)
// is given up and tried again with backoff.
std::unique_ptr<PinStore> makePinStore(uv_loop_t* loop, const conf::Affinity& cfg, std::int64_t connect_timeout_ms,
                                       SharedMemoryPins& shared, metrics::Metrics& metrics);

}  // namespace tether::proxy
