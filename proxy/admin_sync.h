// Admin changes shared by every tether on one Redis: a drain, an enable or
// a weight asked of any tether is applied by all of them, and found by one
// that starts later or comes back. The keys, the channel and the merge rule
// are balancer/admin_state.h's; this is the I/O, on the main loop.
//
// Two connections of its own (RedisConnection, redis_client.h), beside the
// workers' pin stores: one for commands, one subscribed to tether:admin (a
// connection in subscribe mode runs nothing else). Both go where `locate`
// says: the server of the URL, or with sentinels the master that worker 0's
// pin store follows (a switch is seen within a second and both move).
//
// Once both are ready and the subscription confirmed, and again after any
// reconnect, the hash of every backend is read (HGETALL) and merged with
// what this tether knows (mergeAdminState): a later-started tether takes
// the fleet's state, a change made here while Redis was away is written
// unless a later one was made meanwhile, and a state Redis lost (a restart
// without persistence) is written back where still absent. A message names
// a backend whose hash changed; its hash is read again (reads of one
// backend coalesce). A change is written in one transaction (MULTI, HSET or
// HSETNX, HINCRBY version, PUBLISH, EXEC), so that the state, its version
// and the message are one step for every reader, then read back: it stays
// pending until a read shows it (or a later one) in Redis. While a write of
// a backend is in flight, reads of it that come back are set aside (they
// may predate the write) and it is read once more after.
//
// Redis down: every tether keeps what it last applied (never reverts to its
// configuration); the log says so once per outage. Hostile data (a key of
// another type, a malformed field, a message naming no backend of this
// tether) is logged and ignored; the aspect keeps its last state.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "balancer/admin_state.h"
#include "balancer/backend.h"
#include "conf/config.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/redis_client.h"

namespace tether::proxy {

class TlsClientContext;

class AdminSync : private RedisConnection::Listener {
 public:
  // Applies a state read from Redis to a backend (Server: drain, deadline,
  // weight, metrics). Called on the loop, never from inside changed(),
  // added() or close(); `before` is what applied until now.
  class Target {
   public:
    virtual void applySharedAdmin(balancer::Backend* b, const balancer::AdminState& now,
                                  const balancer::AdminState& before) = 0;

   protected:
    ~Target() = default;
  };

  struct Options {
    conf::RedisUrl url;  // credentials, database, whether sentinels name the master
    std::shared_ptr<const TlsClientContext> tls;  // rediss://
    std::int64_t connect_timeout_ms = 5'000;
    std::int64_t reply_timeout_ms = 2'000;
    std::string by;  // written with each change: who made it
  };
  // Where Redis is now; nothing while unknown (sentinels not answered yet).
  using Locate = std::function<std::optional<conf::HostPort>()>;

  // Main loop only, like everything below. `backends` and `target` outlive
  // the sync. Connects at once.
  AdminSync(uv_loop_t* loop, Options o, Locate locate, const balancer::BackendTable& backends, Target* target);
  // close() must have run, and the loop turned until its handles closed.
  ~AdminSync();

  // This tether's admin endpoint changed b (already applied here): the
  // aspects named take their values from `s`, and are written now, or once
  // Redis is back. Returns true when the write went out now and the sync is
  // up (subscribed too).
  bool changed(balancer::Backend* b, const balancer::AdminState& s, bool drain, bool weight);
  // A backend added since the start (DNS, reload): its hash is read.
  void added(balancer::Backend* b);
  // What this tether applies for `address`, nullptr when nothing shared.
  const balancer::KnownAdminState* known(const std::string& address) const;
  // Both connections ready and subscribed.
  bool up() const { return cmd_ready_ && subscribed_; }
  // The state Redis held at the start has been applied, or Redis did not
  // answer the first try (or within connect_timeout_ms of the start): until
  // then /readyz says not ready, so that a tether that starts while a
  // backend is drained takes no traffic for it first.
  bool settled() const;
  // Ends both connections and the timers. Idempotent.
  void close();

 private:
  struct Entry {
    balancer::KnownAdminState known;
    int writes = 0;        // transactions in flight
    bool reading = false;  // an HGETALL in flight
    bool reread = false;   // read again when the one in flight (or the writes) end
  };
  struct Read;
  struct Write;

  void connect();
  void retry();
  void tick();
  void drop(const std::string& why);
  void becameUp();
  void becameDown(const std::string& why);
  void syncAll();
  void read(const std::string& address);
  void write(const std::string& address, balancer::AdminWrite drain, balancer::AdminWrite weight);
  void onRead(const std::string& address, redisReply* reply);
  void onWritten(Write& w, redisReply* reply);
  void onRedisReady(RedisConnection* c) override;
  void onRedisClosed(RedisConnection* c, const RedisFailure& f) override;
  void onRedisPush(RedisConnection* c, redisReply* reply) override;
  static void onSubscribed(void* priv, redisReply* reply);

  uv_loop_t* loop_;
  Options opts_;
  Locate locate_;
  const balancer::BackendTable& backends_;
  Target* target_;
  BufferPool pool_{4};  // TLS record buffers of both connections
  RedisConnection* cmd_ = nullptr;
  RedisConnection* sub_ = nullptr;
  conf::HostPort at_;  // where both go
  bool cmd_ready_ = false;
  bool subscribed_ = false;
  bool was_up_ = false;  // for the log: an outage is told once
  bool settled_ = false;
  std::int64_t started_ms_ = 0;
  std::string refusal_;  // the last refused SUBSCRIBE's error, told once
  bool closed_ = false;
  uv_timer_t retry_timer_;
  uv_timer_t tick_timer_;
  std::int64_t backoff_ms_ = 0;
  std::unordered_map<std::string, Entry> entries_;  // by backend address
};

}  // namespace tether::proxy
