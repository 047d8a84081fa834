#include "proxy/pin_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "proxy/io/tls_client.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/redis_client.h"

namespace tether::proxy {

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

bool isReadonly(const redisReply* r) {
  return r->type == REDIS_REPLY_ERROR && r->len >= 8 && std::memcmp(r->str, "READONLY", 8) == 0;
}

// A Redis store of one loop: one data connection (to the server of the URL,
// or to the master the sentinels name), with a local cache in front.
//
// With sentinels, one connection at a time asks them in turn where the
// master is (SENTINEL get-master-addr-by-name), and another stays subscribed
// to +switch-master on one of them; the data connection must hear ROLE say
// "master". The data connection is dropped, and the store is down, when it
// fails, stops answering (reply_timeout), gets READONLY (the master became a
// replica) or a switch names another master; the sentinels are then asked
// again. While down, lookups answer from the cache at once and pins wait in
// `pending_`, written to whichever master comes next: a set whose
// connection went away before its reply goes back there too.
class RedisStore final : public PinStore, private RedisConnection::Listener {
 public:
  RedisStore(uv_loop_t* loop, const conf::Affinity& cfg, std::int64_t connect_timeout_ms,
             std::shared_ptr<const TlsClientContext> tls, metrics::Metrics& m)
      : loop_(loop), cfg_(cfg), url_(*cfg_.redis), metrics_(m), tls_(std::move(tls)),
        connect_timeout_ms_(std::max<std::int64_t>(connect_timeout_ms, 1)),
        cache_(std::max<std::uint64_t>(cfg.memory_max_entries / 4, 1024)) {
    uv_timer_init(loop_, &retry_timer_);
    retry_timer_.data = this;
    uv_timer_init(loop_, &watch_timer_);
    watch_timer_.data = this;
    if (url_.tls && !tls_) return;  // makePinStore logged why; the store stays down
    if (sentinel()) {
      startWatch();
      discover();
    } else {
      openServer(url_.address);
    }
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
    if (!connected_) return storeError(key, now, w);
    auto* t = newTicket(key, w);
    if (!conn_->command(onGet, t, "GET %b", key.data(), key.size())) {
      dropTicket(t);
      return storeError(key, now, w);
    }
    return t;
  }

  void set(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    cacheSet(key, backend, wallClockMs(), ttl_ms);
    if (!connected_ || !write(key, backend, ttl_ms, false)) pend(key, Pending{backend, ttl_ms, false});
  }

  PinTicket* setConfirmed(const std::string& key, const std::string& backend, std::int64_t ttl_ms,
                          PinWaiter* w) override {
    if (!connected_) {
      set(key, backend, ttl_ms);
      w->onPinStored(false);
      return nullptr;
    }
    cacheSet(key, backend, wallClockMs(), ttl_ms);
    auto* t = newTicket(key, w);
    if (!write(key, backend, ttl_ms, false, t)) {
      dropTicket(t);
      pend(key, Pending{backend, ttl_ms, false});
      w->onPinStored(false);
      return nullptr;
    }
    return t;
  }

  void place(const std::string& key, const std::string& backend, std::int64_t ttl_ms) override {
    cacheSet(key, backend, wallClockMs(), ttl_ms);
    if (connected_ && write(key, backend, ttl_ms, true)) return;
    if (!pending_.count(key)) pend(key, Pending{backend, ttl_ms, true});  // a set() made meanwhile wins
  }

  void refresh(const std::string& key, std::int64_t ttl_ms) override {
    std::int64_t now = wallClockMs();
    auto it = refreshed_.find(key);
    if (it != refreshed_.end() && now - it->second < ttl_ms / 10) return;
    if (refreshed_.size() > 100'000) refreshed_.clear();
    refreshed_[key] = now;
    if (!connected_) return;
    auto* op = new Op{this, now, metrics::StoreOp::kRefresh};
    if (!conn_->command(onOp, op, "PEXPIRE %b %lld", key.data(), key.size(), static_cast<long long>(ttl_ms)))
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
  std::optional<conf::HostPort> server() const override {
    if (!connected_) return std::nullopt;
    return master_;
  }

  void close() override {
    closed_ = true;
    uv_timer_stop(&retry_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&retry_timer_), nullptr);
    uv_timer_stop(&watch_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch_timer_), nullptr);
    connected_ = false;
    // Each runs the callbacks of its commands in flight with a null reply.
    for (RedisConnection** c : {&conn_, &query_, &watch_}) {
      if (*c) std::exchange(*c, nullptr)->close();
    }
  }

 private:
  static constexpr std::size_t kMaxPending = 100'000;
  static constexpr std::int64_t kCacheFreshMs = 5'000;
  static constexpr std::int64_t kMaxBackoffMs = 5'000;
  struct Pending {
    std::string backend;
    std::int64_t ttl_ms;
    bool if_absent;
  };
  struct Op {
    RedisStore* store;
    std::int64_t started_ms;
    metrics::StoreOp op;
    // A set: what to write again if the connection goes away before the reply.
    std::string key;
    std::string backend;
    std::int64_t ttl_ms = 0;
    bool if_absent = false;       // SET NX: forgotten locally when the store had a pin
    PinTicket* ticket = nullptr;  // setConfirmed: told when the reply comes
  };

  bool sentinel() const { return !url_.sentinels.empty(); }

  PinTicket* newTicket(const std::string& key, PinWaiter* w) {
    auto* t = new PinTicket;
    t->waiter = w;
    t->key = key;
    t->started_ms = wallClockMs();
    t->store = this;
    tickets_.push_back(t);
    return t;
  }
  void dropTicket(PinTicket* t) {
    tickets_.erase(std::find(tickets_.begin(), tickets_.end(), t));
    delete t;
  }

  PinTicket* storeError(const std::string& key, std::int64_t now, PinWaiter* w) {
    metrics_.affinityLookup(metrics::AffinityResult::kStoreError);
    std::optional<std::string> stale = stale_.get(key, now);
    w->onPinLookup(false, stale ? *stale : std::string());
    return nullptr;
  }

  void cacheSet(const std::string& key, const std::string& backend, std::int64_t now, std::int64_t ttl_ms) {
    cache_.set(key, backend, now + std::min<std::int64_t>(ttl_ms, kCacheFreshMs));
    stale_.set(key, backend, now + ttl_ms);
  }

  // Written once a master answers (bounded: the oldest are dropped first).
  void pend(const std::string& key, Pending p) {
    if (!pending_.count(key) && pending_.size() >= kMaxPending) pending_.erase(pending_.begin());
    pending_[key] = std::move(p);
  }

  bool write(const std::string& key, const std::string& backend, std::int64_t ttl_ms, bool if_absent,
             PinTicket* ticket = nullptr) {
    if (!conn_) return false;
    auto* op = new Op{this, wallClockMs(), metrics::StoreOp::kSet, key, backend, ttl_ms, if_absent, ticket};
    bool ok = if_absent ? conn_->command(onOp, op, "SET %b %b PX %lld NX", key.data(), key.size(), backend.data(),
                                         backend.size(), static_cast<long long>(ttl_ms))
                        : conn_->command(onOp, op, "SET %b %b PX %lld", key.data(), key.size(), backend.data(),
                                         backend.size(), static_cast<long long>(ttl_ms));
    if (!ok) delete op;
    return ok;
  }

  // A set that did not land: to the next master (a set() made since wins).
  void requeue(const Op& op) {
    if (connected_ && write(op.key, op.backend, op.ttl_ms, op.if_absent)) return;
    if (!pending_.count(op.key)) pend(op.key, Pending{op.backend, op.ttl_ms, op.if_absent});
  }

  // --- connections -------------------------------------------------------------

  RedisConnection::Options serverOptions(const conf::HostPort& at) const {
    RedisConnection::Options o;
    o.address = at;
    o.tls = tls_;
    o.username = url_.username;
    o.password = url_.password;
    o.db = url_.db;
    o.expect_master = sentinel();
    o.connect_timeout_ms = connect_timeout_ms_;
    o.reply_timeout_ms = cfg_.redis_options.reply_timeout;
    return o;
  }

  // Sentinels get the URL's credentials too, as a sentinel with its own
  // password (requirepass) usually shares the master's; one without a
  // password refuses the AUTH and answers the rest.
  RedisConnection::Options sentinelOptions(const conf::HostPort& at) const {
    RedisConnection::Options o;
    o.address = at;
    o.username = url_.username;
    o.password = url_.password;
    o.auth_optional = true;
    o.connect_timeout_ms = connect_timeout_ms_;
    o.reply_timeout_ms = cfg_.redis_options.reply_timeout;
    return o;
  }

  void openServer(const conf::HostPort& at) {
    if (closed_) return;
    master_ = at;
    conn_ = RedisConnection::open(loop_, serverOptions(at), this, pool_);
  }

  // Tries again after a backoff: the server of the URL, or the sentinels.
  void retry() {
    if (closed_) return;
    backoff_ms_ = backoff_ms_ ? std::min<std::int64_t>(backoff_ms_ * 2, kMaxBackoffMs) : 100;
    uv_timer_start(
        &retry_timer_,
        [](uv_timer_t* t) {
          auto* s = static_cast<RedisStore*>(t->data);
          if (s->conn_) return;
          if (s->sentinel()) {
            s->discover();
          } else {
            s->openServer(s->url_.address);
          }
        },
        static_cast<std::uint64_t>(backoff_ms_), 0);
  }

  void setUp() {
    connected_ = true;
    metrics_.affinity_store_up.set(1);
    log::info("redis connected", {{"address", master_.str()}, {"pending_pins", static_cast<std::uint64_t>(pending_.size())}});
    backoff_ms_ = 0;
    auto pins = std::move(pending_);
    pending_.clear();
    for (auto& [k, p] : pins) {
      if (!write(k, p.backend, p.ttl_ms, p.if_absent)) pend(k, p);
    }
  }

  void setDown(const std::string& why) {
    connected_ = false;
    metrics_.affinity_store_up.set(0);
    log::warn("redis down: falling back to local pins and hashing", {{"address", master_.str()}, {"error", why}});
  }

  // The data connection cannot go on (READONLY, another master named).
  void dropServer(const std::string& why) {
    if (!conn_) return;
    RedisConnection* c = std::exchange(conn_, nullptr);
    if (connected_) {
      setDown(why);
    } else {
      log::warn("redis connect failed", {{"address", master_.str()}, {"error", why}});
    }
    c->close();  // its sets in flight go back to pending_
  }

  void onRedisReady(RedisConnection* c) override {
    if (c == conn_) {
      setUp();
    } else if (c == query_) {
      if (!c->command(onMasterAddr, this, "SENTINEL get-master-addr-by-name %b", url_.master_name.data(),
                      url_.master_name.size())) {
        std::exchange(query_, nullptr)->close();
        nextSentinel();
      }
    } else if (c == watch_) {
      if (!c->subscribe("+switch-master", onSubscribed, this)) {
        std::exchange(watch_, nullptr)->close();
        scheduleWatch();
      }
    }
  }

  void onRedisClosed(RedisConnection* c, const RedisFailure& f) override {
    if (c == conn_) {
      conn_ = nullptr;
      if (connected_) {
        setDown(f.why);
      } else if (f.timeout_ms) {
        log::warn("redis connect failed", {{"address", master_.str()}, {"error", f.why}, {"timeout_ms", f.timeout_ms}});
      } else {
        log::warn("redis connect failed", {{"address", master_.str()}, {"error", f.why}});
      }
      retry();
    } else if (c == query_) {
      query_ = nullptr;
      log::warn("redis sentinel failed", {{"sentinel", c->address().str()}, {"error", f.why}});
      nextSentinel();
    } else if (c == watch_) {
      watch_ = nullptr;
      log::warn("redis sentinel subscription lost", {{"sentinel", c->address().str()}, {"error", f.why}});
      ++watch_index_;
      scheduleWatch();
    }
  }

  // --- sentinels ---------------------------------------------------------------

  // Asks the sentinels in turn, from the last one that answered, until one
  // names the master; when none does, tries again after a backoff.
  void discover() {
    if (closed_ || query_) return;
    asked_ = 0;
    askSentinel();
  }
  void askSentinel() {
    if (closed_) return;
    if (asked_ >= url_.sentinels.size()) {
      log::warn("redis master not found: no sentinel named it", {{"master", url_.master_name}});
      return retry();
    }
    ++asked_;
    query_ = RedisConnection::open(loop_, sentinelOptions(url_.sentinels[next_sentinel_ % url_.sentinels.size()]),
                                   this, pool_);
  }
  void nextSentinel() {
    ++next_sentinel_;
    askSentinel();
  }

  static void onMasterAddr(void* priv, redisReply* reply) {
    auto* s = static_cast<RedisStore*>(priv);
    if (!reply || s->closed_ || !s->query_) return;  // a failed connection: onRedisClosed went on
    RedisConnection* q = std::exchange(s->query_, nullptr);
    std::string sentinel = q->address().str();
    std::optional<conf::HostPort> at;
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 && reply->element[0]->type == REDIS_REPLY_STRING &&
        reply->element[1]->type == REDIS_REPLY_STRING) {
      std::string port(reply->element[1]->str, reply->element[1]->len);
      char* end = nullptr;
      unsigned long p = std::strtoul(port.c_str(), &end, 10);
      if (end && *end == '\0' && p > 0 && p <= 65535)
        at = conf::HostPort{std::string(reply->element[0]->str, reply->element[0]->len), static_cast<std::uint16_t>(p)};
    }
    std::string answer = reply->type == REDIS_REPLY_ERROR ? std::string(reply->str, reply->len)
                         : reply->type == REDIS_REPLY_NIL ? "unknown master"
                                                          : "not an address";
    q->close();
    if (!at) {
      log::warn("redis sentinel failed", {{"sentinel", sentinel}, {"master", s->url_.master_name}, {"error", answer}});
      return s->nextSentinel();
    }
    s->masterFound(*at);
  }

  // The sentinels name `at` as the master.
  void masterFound(const conf::HostPort& at) {
    if (conn_ && master_ == at) return;  // there already, or on the way
    uv_timer_stop(&retry_timer_);
    if (conn_) dropServer("the sentinels name another master: " + at.str());
    openServer(at);
  }

  void startWatch() {
    if (closed_ || watch_) return;
    watch_ = RedisConnection::open(loop_, sentinelOptions(url_.sentinels[watch_index_ % url_.sentinels.size()]),
                                   this, pool_);
  }
  void scheduleWatch() {
    if (closed_) return;
    watch_backoff_ms_ = watch_backoff_ms_ ? std::min<std::int64_t>(watch_backoff_ms_ * 2, kMaxBackoffMs) : 100;
    uv_timer_start(
        &watch_timer_, [](uv_timer_t* t) { static_cast<RedisStore*>(t->data)->startWatch(); },
        static_cast<std::uint64_t>(watch_backoff_ms_), 0);
  }

  static void onSubscribed(void* priv, redisReply* reply) {
    auto* s = static_cast<RedisStore*>(priv);
    if (!reply || s->closed_ || !s->watch_) return;
    if (reply->type == REDIS_REPLY_ERROR) {
      log::warn("redis sentinel subscription lost",
                {{"sentinel", s->watch_->address().str()}, {"error", std::string(reply->str, reply->len)}});
      std::exchange(s->watch_, nullptr)->close();
      ++s->watch_index_;
      return s->scheduleWatch();
    }
    s->watch_backoff_ms_ = 0;
    // A switch may have happened while nobody listened: ask again.
    s->discover();
  }

  void onRedisPush(RedisConnection* c, redisReply* reply) override {
    if (c != watch_ || closed_) return;
    // ["message", channel, payload]
    const redisReply* channel = reply->element[1];
    const redisReply* payload = reply->element[reply->elements - 1];
    if (channel->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING) return;
    if (std::string_view(channel->str, channel->len) != "+switch-master") return;
    auto at = parseSwitchMaster(std::string_view(payload->str, payload->len), url_.master_name);
    if (!at) return;
    log::info("redis master switched", {{"master", url_.master_name}, {"from", master_.str()}, {"to", at->str()}});
    backoff_ms_ = 0;
    masterFound(*at);
  }

  // --- replies -----------------------------------------------------------------

  static void onGet(void* priv, redisReply* reply) {
    auto* t = static_cast<PinTicket*>(priv);
    auto* s = static_cast<RedisStore*>(t->store);
    std::int64_t now = wallClockMs();
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    std::string backend;
    if (reply && reply->type == REDIS_REPLY_STRING) backend.assign(reply->str, reply->len);
    if (!s->closed_ && reply) {
      s->metrics_.storeSeconds(metrics::StoreOp::kGet).observe(static_cast<double>(now - t->started_ms) / 1000.0);
      if (ok && !backend.empty()) s->cacheSet(t->key, backend, now, s->cfg_.ttl);
    }
    if (t->waiter) {
      if (!ok) {
        s->metrics_.affinityLookup(metrics::AffinityResult::kStoreError);
        std::optional<std::string> stale = s->closed_ ? std::nullopt : s->stale_.get(t->key, now);
        if (stale) backend = *stale;
      }
      t->waiter->onPinLookup(ok, backend);
    }
    s->dropTicket(t);
  }

  static void onOp(void* priv, redisReply* reply) {
    auto* op = static_cast<Op*>(priv);
    RedisStore* s = op->store;
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    if (!s->closed_) {
      if (reply) s->metrics_.storeSeconds(op->op).observe(static_cast<double>(wallClockMs() - op->started_ms) / 1000.0);
      bool readonly = reply && isReadonly(reply);
      // The master became a replica: drop it (its other sets in flight go
      // back to pending_ with it), then this set too.
      if (readonly) s->dropServer("READONLY: the master became a replica");
      if (op->op == metrics::StoreOp::kSet) {
        if (!reply || readonly) {
          s->requeue(*op);
        } else if (op->if_absent && reply->type == REDIS_REPLY_NIL) {
          // SET NX not done: the store holds another pin, which the next lookup reads.
          s->cache_.erase(op->key);
          s->stale_.erase(op->key);
        }
      }
      if (readonly) s->retry();
    }
    if (PinTicket* t = op->ticket) {
      if (t->waiter) t->waiter->onPinStored(ok && !s->closed_);
      s->dropTicket(t);
    }
    delete op;
  }

  uv_loop_t* loop_;
  conf::Affinity cfg_;
  const conf::RedisUrl& url_;  // *cfg_.redis
  metrics::Metrics& metrics_;
  std::shared_ptr<const TlsClientContext> tls_;  // rediss://
  std::int64_t connect_timeout_ms_;
  BufferPool pool_{8};  // TLS record buffers of this loop's connections
  RedisConnection* conn_ = nullptr;   // the data connection
  RedisConnection* query_ = nullptr;  // asking a sentinel where the master is
  RedisConnection* watch_ = nullptr;  // subscribed to +switch-master on a sentinel
  conf::HostPort master_;             // where conn_ goes
  bool connected_ = false;            // conn_ answered its hello (authenticated; the master)
  bool closed_ = false;
  uv_timer_t retry_timer_;
  uv_timer_t watch_timer_;
  std::int64_t backoff_ms_ = 0;
  std::int64_t watch_backoff_ms_ = 0;
  std::size_t next_sentinel_ = 0;  // the one to ask first: the last that answered
  std::size_t asked_ = 0;          // in this round
  std::size_t watch_index_ = 0;
  balancer::MemoryPinStore cache_;                       // fresh: answers without a round trip
  balancer::MemoryPinStore stale_{100'000};              // last known, for when Redis is away
  std::unordered_map<std::string, Pending> pending_;     // pins no master has acknowledged yet
  std::unordered_map<std::string, std::int64_t> refreshed_;
  std::deque<PinTicket*> tickets_;
};

}  // namespace

std::shared_ptr<const TlsClientContext> redisTlsContext(const conf::Affinity& cfg, std::vector<std::string>* errors) {
  if (!cfg.redis || !cfg.redis->tls) return nullptr;
  conf::ClientTls want = cfg.redis_options.tls.value_or(conf::ClientTls{});
  // Loaded once, by the first caller (Server::run, before the workers), and
  // shared by every worker's store: a store is not rebuilt on reload.
  static std::mutex mu;
  static std::optional<conf::ClientTls> loaded_for;
  static std::shared_ptr<const TlsClientContext> loaded;
  static std::vector<std::string> loaded_errors;
  std::lock_guard<std::mutex> lock(mu);
  if (!loaded_for || !(*loaded_for == want)) {
    loaded_errors.clear();
    loaded = TlsClientContext::load(want, "affinity.redis.tls", &loaded_errors);
    loaded_for = want;
  }
  errors->insert(errors->end(), loaded_errors.begin(), loaded_errors.end());
  return loaded;
}

std::unique_ptr<PinStore> makePinStore(uv_loop_t* loop, const conf::Affinity& cfg, std::int64_t connect_timeout_ms,
                                       SharedMemoryPins& shared, metrics::Metrics& metrics) {
  if (!cfg.redis) return std::make_unique<MemoryStore>(shared, metrics);
  std::vector<std::string> errors;
  std::shared_ptr<const TlsClientContext> tls = redisTlsContext(cfg, &errors);
  for (const std::string& e : errors) log::error("redis store unusable: TLS", {{"error", e}});
  return std::make_unique<RedisStore>(loop, cfg, connect_timeout_ms, std::move(tls), metrics);
}

}  // namespace tether::proxy
