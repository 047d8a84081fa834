#include "proxy/pin_store.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <utility>

#include "proxy/log.h"
#include "proxy/net.h"

namespace tether::proxy {
namespace {

// Our own libuv adapter for hiredis. The one shipped with hiredis 0.14
// (Debian 12) returns early when uv_poll reports an error, and libuv reports
// POLLERR that way (and stops the poll): a refused connect then never
// reaches onConnect, and a reset connection never reaches onDisconnect, so
// the store stays "connecting" or "up" forever. Here an error is handed to
// hiredis as readiness, as hiredis 1.x does, so that its read or write
// meets the error and tears the context down.
struct RedisPoll {
  redisAsyncContext* ctx;
  uv_poll_t handle;
  int events = 0;
};

void redisPollCb(uv_poll_t* h, int status, int events) {
  auto* p = static_cast<RedisPoll*>(h->data);
  int ev = status < 0 ? p->events : events;
  if (p->ctx && (ev & UV_READABLE)) redisAsyncHandleRead(p->ctx);
  if (p->ctx && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ctx);
}

void redisPollUpdate(RedisPoll* p) {
  if (p->events) {
    if (uv_poll_start(&p->handle, p->events, redisPollCb) != 0) log::warn("redis: uv_poll_start failed", {});
  } else {
    uv_poll_stop(&p->handle);
  }
}

bool attachRedis(redisAsyncContext* ac, uv_loop_t* loop) {
  if (ac->ev.data) return false;
  auto* p = new RedisPoll{ac, {}, 0};
  if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
    delete p;
    return false;
  }
  p->handle.data = p;
  ac->ev.data = p;
  ac->ev.addRead = [](void* d) {
    auto* q = static_cast<RedisPoll*>(d);
    q->events |= UV_READABLE;
    redisPollUpdate(q);
  };
  ac->ev.delRead = [](void* d) {
    auto* q = static_cast<RedisPoll*>(d);
    q->events &= ~UV_READABLE;
    redisPollUpdate(q);
  };
  ac->ev.addWrite = [](void* d) {
    auto* q = static_cast<RedisPoll*>(d);
    q->events |= UV_WRITABLE;
    redisPollUpdate(q);
  };
  ac->ev.delWrite = [](void* d) {
    auto* q = static_cast<RedisPoll*>(d);
    q->events &= ~UV_WRITABLE;
    redisPollUpdate(q);
  };
  ac->ev.cleanup = [](void* d) {
    auto* q = static_cast<RedisPoll*>(d);
    q->ctx = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&q->handle),
             [](uv_handle_t* h) { delete static_cast<RedisPoll*>(h->data); });
  };
  return true;
}

}  // namespace

std::optional<std::string> SharedMemoryPins::get(const std::string& key, std::int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  return lru_.get(key, now_ms);
}

void SharedMemoryPins::set(const std::string& key, const std::string& backend, std::int64_t expires_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.set(key, backend, expires_ms);
}

void SharedMemoryPins::refresh(const std::string& key, std::int64_t expires_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  lru_.refresh(key, expires_ms);
}

namespace {

class MemoryStore final : public PinStore {
 public:
  MemoryStore(SharedMemoryPins& pins, metrics::Metrics& m) : pins_(pins), metrics_(m) {
    metrics_.affinity_store_up.set(1);
  }
  PinTicket* get(const std::string& key, PinWaiter* w) override {
    std::optional<std::string> b = pins_.get(key, wallClockMs());
    w->onPinLookup(true, b ? *b : std::string());
    return nullptr;
  }
  void set(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    pins_.set(key, backend, wallClockMs() + ttl_ms);
  }
  PinTicket* setConfirmed(const std::string& key, const std::string& backend, std::int64_t ttl_ms,
                          PinWaiter* w) override {
    set(key, backend, ttl_ms);
    w->onPinStored(true);
    return nullptr;
  }
  void place(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    if (!pins_.get(key, wallClockMs())) set(key, backend, ttl_ms);
  }
  void refresh(const std::string& key, std::int64_t ttl_ms) override { pins_.refresh(key, wallClockMs() + ttl_ms); }
  std::optional<std::string> peek(const std::string& key) override { return pins_.get(key, wallClockMs()); }
  bool up() const override { return true; }
  const char* kind() const override { return "memory"; }
  void close() override {}

 private:
  SharedMemoryPins& pins_;
  metrics::Metrics& metrics_;
};

// One hiredis connection on one loop, with a local cache in front.
class RedisStore final : public PinStore {
 public:
  RedisStore(uv_loop_t* loop, const conf::Affinity& cfg, std::int64_t connect_timeout_ms, metrics::Metrics& m)
      : loop_(loop), cfg_(cfg), metrics_(m), connect_timeout_ms_(std::max<std::int64_t>(connect_timeout_ms, 1)),
        cache_(std::max<std::uint64_t>(cfg.memory_max_entries / 4, 1024)) {
    uv_timer_init(loop_, &reconnect_timer_);
    reconnect_timer_.data = this;
    uv_timer_init(loop_, &connect_timer_);
    connect_timer_.data = this;
    connect();
  }
  ~RedisStore() override {
    for (PinTicket* t : tickets_) delete t;
  }

  PinTicket* get(const std::string& key, PinWaiter* w) override {
    std::int64_t now = wallClockMs();
    // Fresh enough in the cache: no round trip. Pins only change when their
    // backend goes away, which every tether sees through its own checks.
    auto c = cache_.get(key, now);
    if (c) {
      w->onPinLookup(true, *c);
      return nullptr;
    }
    if (!ctx_ || !connected_) {
      metrics_.affinityLookup(metrics::AffinityResult::kStoreError);
      std::optional<std::string> stale = stale_.get(key, now);
      w->onPinLookup(false, stale ? *stale : std::string());
      return nullptr;
    }
    auto* t = new PinTicket;
    t->waiter = w;
    t->key = key;
    t->started_ms = now;
    t->store = this;
    tickets_.push_back(t);
    if (redisAsyncCommand(ctx_, onGet, t, "GET %b", key.data(), key.size()) != REDIS_OK) {
      tickets_.pop_back();
      delete t;
      metrics_.affinityLookup(metrics::AffinityResult::kStoreError);
      w->onPinLookup(false, std::string());
      return nullptr;
    }
    return t;
  }

  void set(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    std::int64_t now = wallClockMs();
    cacheSet(key, backend, now, ttl_ms);
    if (!connected_) {
      // Written once Redis is back (bounded: the oldest are dropped first).
      if (pending_.size() >= kMaxPending) pending_.erase(pending_.begin());
      pending_[key] = Pending{backend, ttl_ms, false};
      return;
    }
    write(key, backend, ttl_ms, false);
    flush();
  }

  PinTicket* setConfirmed(const std::string& key, const std::string& backend, std::int64_t ttl_ms,
                          PinWaiter* w) override {
    if (!connected_) {
      set(key, backend, ttl_ms);
      w->onPinStored(false);
      return nullptr;
    }
    cacheSet(key, backend, wallClockMs(), ttl_ms);
    auto* t = new PinTicket;
    t->waiter = w;
    t->key = key;
    t->started_ms = wallClockMs();
    t->store = this;
    tickets_.push_back(t);
    if (!write(key, backend, ttl_ms, false, t)) {
      tickets_.pop_back();
      delete t;
      w->onPinStored(false);
      return nullptr;
    }
    flush();
    // A write error met by flush() tears the context down, which answers
    // every command in flight, this one too.
    if (std::find(tickets_.begin(), tickets_.end(), t) == tickets_.end()) return nullptr;
    return t;
  }

  void place(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    std::int64_t now = wallClockMs();
    cacheSet(key, backend, now, ttl_ms);
    if (!connected_) {
      if (pending_.count(key)) return;  // a set() made meanwhile wins
      if (pending_.size() >= kMaxPending) pending_.erase(pending_.begin());
      pending_[key] = Pending{backend, ttl_ms, true};
      return;
    }
    write(key, backend, ttl_ms, true);
    flush();
  }

  void refresh(const std::string& key, std::int64_t ttl_ms) override {
    std::int64_t now = wallClockMs();
    auto it = refreshed_.find(key);
    if (it != refreshed_.end() && now - it->second < ttl_ms / 10) return;
    if (refreshed_.size() > 100'000) refreshed_.clear();
    refreshed_[key] = now;
    if (!connected_) return;
    auto* op = new Op{this, now, metrics::StoreOp::kRefresh, {}};
    if (redisAsyncCommand(ctx_, onOp, op, "PEXPIRE %b %lld", key.data(), key.size(),
                          static_cast<long long>(ttl_ms)) != REDIS_OK)
      delete op;
  }

  std::optional<std::string> peek(const std::string& key) override {
    std::int64_t now = wallClockMs();
    auto c = cache_.get(key, now);
    if (c) return c;
    return stale_.get(key, now);
  }
  bool up() const override { return connected_; }
  const char* kind() const override { return "redis"; }

  void close() override {
    closed_ = true;
    uv_timer_stop(&reconnect_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&reconnect_timer_), nullptr);
    uv_timer_stop(&connect_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&connect_timer_), nullptr);
    if (ctx_) {
      ctx_->data = nullptr;
      redisAsyncFree(ctx_);  // callbacks of pending commands run with a null reply
      ctx_ = nullptr;
    }
  }

 private:
  static constexpr std::size_t kMaxPending = 100'000;
  static constexpr std::int64_t kCacheFreshMs = 5'000;
  struct Pending {
    std::string backend;
    std::int64_t ttl_ms;
    bool if_absent;
  };
  struct Op {
    RedisStore* store;
    std::int64_t started_ms;
    metrics::StoreOp op;
    std::string key;  // SET NX only: forgotten locally when the store had a pin
    PinTicket* ticket = nullptr;  // setConfirmed: told when the reply comes
  };

  void cacheSet(const std::string& key, const std::string& backend, std::int64_t now, std::int64_t ttl_ms) {
    cache_.set(key, backend, now + std::min<std::int64_t>(ttl_ms, kCacheFreshMs));
    stale_.set(key, backend, now + ttl_ms);
  }

  bool write(const std::string& key, const std::string& backend, std::int64_t ttl_ms, bool if_absent,
             PinTicket* ticket = nullptr) {
    auto* op = new Op{this, wallClockMs(), metrics::StoreOp::kSet, if_absent ? key : std::string(), ticket};
    int rc = if_absent ? redisAsyncCommand(ctx_, onOp, op, "SET %b %b PX %lld NX", key.data(), key.size(),
                                           backend.data(), backend.size(), static_cast<long long>(ttl_ms))
                       : redisAsyncCommand(ctx_, onOp, op, "SET %b %b PX %lld", key.data(), key.size(),
                                           backend.data(), backend.size(), static_cast<long long>(ttl_ms));
    if (rc == REDIS_OK) return true;
    delete op;
    return false;
  }

  // Puts what hiredis holds on the wire now rather than on the loop's next
  // turn. A sid is pinned while the handshake answer that carries it is
  // being forwarded: the pin must reach Redis before the client can send
  // its next poll through another tether, or that tether finds no pin.
  // A write error tears the context down from inside (onDisconnect).
  void flush() {
    if (ctx_ && connected_) redisAsyncHandleWrite(ctx_);
  }

  void connect() {
    if (closed_) return;
    const conf::RedisUrl& u = *cfg_.redis;
    ctx_ = redisAsyncConnect(u.address.host.c_str(), u.address.port);
    if (!ctx_ || ctx_->err) {
      log::warn("redis connect failed", {{"address", u.address.str()}, {"error", ctx_ ? ctx_->errstr : "oom"}});
      if (ctx_) redisAsyncFree(ctx_);
      ctx_ = nullptr;
      scheduleReconnect();
      return;
    }
    ctx_->data = this;
    if (!attachRedis(ctx_, loop_)) {
      log::warn("redis connect failed", {{"address", u.address.str()}, {"error", "cannot watch the socket"}});
      ctx_->data = nullptr;
      redisAsyncFree(ctx_);
      ctx_ = nullptr;
      scheduleReconnect();
      return;
    }
    redisAsyncSetConnectCallback(ctx_, onConnect);
    redisAsyncSetDisconnectCallback(ctx_, onDisconnect);
    if (!u.password.empty()) {
      if (!u.username.empty()) {
        redisAsyncCommand(ctx_, nullptr, nullptr, "AUTH %b %b", u.username.data(), u.username.size(),
                          u.password.data(), u.password.size());
      } else {
        redisAsyncCommand(ctx_, nullptr, nullptr, "AUTH %b", u.password.data(), u.password.size());
      }
    }
    if (u.db) redisAsyncCommand(ctx_, nullptr, nullptr, "SELECT %d", u.db);
    uv_timer_start(&connect_timer_, onConnectTimeout, static_cast<std::uint64_t>(connect_timeout_ms_), 0);
  }

  // A host that drops packets never answers the SYN, and the kernel gives up
  // only after its SYN retries (about two minutes): give up after
  // timeouts.connect instead, as for a backend, and try again with backoff.
  static void onConnectTimeout(uv_timer_t* t) {
    auto* s = static_cast<RedisStore*>(t->data);
    if (!s->ctx_ || s->connected_) return;
    log::warn("redis connect failed", {{"address", s->cfg_.redis->address.str()},
                                       {"error", "no answer within timeouts.connect"},
                                       {"timeout_ms", s->connect_timeout_ms_}});
    redisAsyncContext* c = std::exchange(s->ctx_, nullptr);
    c->data = nullptr;
    redisAsyncFree(c);  // nothing but AUTH and SELECT is queued before the connect
    s->scheduleReconnect();
  }

  void scheduleReconnect() {
    if (closed_) return;
    backoff_ms_ = backoff_ms_ ? std::min<std::int64_t>(backoff_ms_ * 2, 5'000) : 100;
    uv_timer_start(&reconnect_timer_, [](uv_timer_t* t) { static_cast<RedisStore*>(t->data)->connect(); },
                   static_cast<std::uint64_t>(backoff_ms_), 0);
  }

  void setUp(bool up) {
    if (connected_ == up) return;
    connected_ = up;
    metrics_.affinity_store_up.set(up ? 1 : 0);
    if (up) {
      log::info("redis connected", {{"address", cfg_.redis->address.str()}, {"pending_pins", static_cast<std::uint64_t>(pending_.size())}});
      backoff_ms_ = 0;
      for (auto& [k, p] : pending_) write(k, p.backend, p.ttl_ms, p.if_absent);
      pending_.clear();
    } else {
      log::warn("redis down: falling back to local pins and hashing", {{"address", cfg_.redis->address.str()}});
    }
  }

  static void onConnect(const redisAsyncContext* c, int status) {
    auto* s = static_cast<RedisStore*>(c->data);
    if (!s) return;
    uv_timer_stop(&s->connect_timer_);
    if (status != REDIS_OK) {
      s->ctx_ = nullptr;  // hiredis frees it
      s->setUp(false);
      s->scheduleReconnect();
      return;
    }
    s->setUp(true);
  }

  static void onDisconnect(const redisAsyncContext* c, int) {
    auto* s = static_cast<RedisStore*>(c->data);
    if (!s) return;
    s->ctx_ = nullptr;
    s->setUp(false);
    s->scheduleReconnect();
  }

  static void onGet(redisAsyncContext* c, void* r, void* priv) {
    auto* t = static_cast<PinTicket*>(priv);
    auto* s = static_cast<RedisStore*>(t->store);
    auto* reply = static_cast<redisReply*>(r);
    std::int64_t now = wallClockMs();
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    std::string backend;
    if (reply && reply->type == REDIS_REPLY_STRING) backend.assign(reply->str, reply->len);
    if (c->data) {
      s->metrics_.storeSeconds(metrics::StoreOp::kGet).observe(static_cast<double>(now - t->started_ms) / 1000.0);
      if (ok && !backend.empty()) s->cacheSet(t->key, backend, now, s->cfg_.ttl);
    }
    if (t->waiter) {
      if (!ok) {
        s->metrics_.affinityLookup(metrics::AffinityResult::kStoreError);
        std::optional<std::string> stale = c->data ? s->stale_.get(t->key, now) : std::nullopt;
        if (stale) backend = *stale;
      }
      t->waiter->onPinLookup(ok, backend);
    }
    auto& v = s->tickets_;
    v.erase(std::find(v.begin(), v.end(), t));
    delete t;
  }

  static void onOp(redisAsyncContext* c, void* r, void* priv) {
    auto* op = static_cast<Op*>(priv);
    auto* reply = static_cast<redisReply*>(r);
    if (c->data && reply) {
      op->store->metrics_.storeSeconds(op->op).observe(static_cast<double>(wallClockMs() - op->started_ms) / 1000.0);
      // SET NX not done: the store holds another pin, which the next lookup reads.
      if (!op->key.empty() && reply->type == REDIS_REPLY_NIL) {
        op->store->cache_.erase(op->key);
        op->store->stale_.erase(op->key);
      }
    }
    if (PinTicket* t = op->ticket) {
      auto& v = op->store->tickets_;
      v.erase(std::find(v.begin(), v.end(), t));
      if (t->waiter) t->waiter->onPinStored(c->data && reply && reply->type != REDIS_REPLY_ERROR);
      delete t;
    }
    delete op;
  }

  uv_loop_t* loop_;
  conf::Affinity cfg_;
  metrics::Metrics& metrics_;
  redisAsyncContext* ctx_ = nullptr;
  std::int64_t connect_timeout_ms_;
  uv_timer_t reconnect_timer_;
  uv_timer_t connect_timer_;
  bool connected_ = false;
  bool closed_ = false;
  std::int64_t backoff_ms_ = 0;
  balancer::MemoryPinStore cache_;                       // fresh: answers without a round trip
  balancer::MemoryPinStore stale_{100'000};              // last known, for when Redis is away
  std::unordered_map<std::string, Pending> pending_;     // pins made while Redis was down
  std::unordered_map<std::string, std::int64_t> refreshed_;
  std::deque<PinTicket*> tickets_;
};

}  // namespace

std::unique_ptr<PinStore> makePinStore(uv_loop_t* loop, const conf::Affinity& cfg, std::int64_t connect_timeout_ms,
                                       SharedMemoryPins& shared, metrics::Metrics& metrics) {
  if (cfg.redis) return std::make_unique<RedisStore>(loop, cfg, connect_timeout_ms, metrics);
  return std::make_unique<MemoryStore>(shared, metrics);
}

}  // namespace tether::proxy
