// Upstream connections and the per-loop pool of idle ones.
//
// An UpstreamConn is one TCP connection to one backend. While a session uses
// it, its events go to that session (owner); while idle it sits in the pool,
// keeps reading (a read of EOF or of any byte means the backend closed or
// misbehaved: the connection is dropped at once, before a request can be
// sent on it) and holds no buffer. Loop-affine: one pool per worker.
//
// Lifetime: owned by the pool while idle, by the session while active;
// destroyed only in its close callback (libuv's rule). close() is idempotent.
#pragma once

#include <uv.h>

#include <cstdint>
#include <vector>

#include "balancer/backend.h"
#include "proxy/intrusive_list.h"
#include "proxy/io/free_list.h"

namespace tether::proxy {

class Session;
class UpstreamPool;

class UpstreamConn : public ListHook<> {
 public:
  UpstreamConn(UpstreamPool& pool, balancer::Backend& backend);
  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  balancer::Backend& backend() const { return backend_; }
  bool reused() const { return reused_; }
  bool closing() const { return closing_; }

  // Starts a non-blocking connect; the owner's onUpstreamConnected(status)
  // fires later (never synchronously). Returns a uv error when the connect
  // could not even start.
  int connect(Session* owner);
  void setOwner(Session* s) { owner_ = s; }
  // Reads stay on across owners and idle time (no epoll_ctl per request):
  // bytes go to the owner, or, while idle, mean the connection is unusable.
  // Only backpressure turns them off.
  void setReading(bool on);
  void markConnected() { connected_ = true; }
  Session* owner() const { return owner_; }
  void close();

 private:
  friend class UpstreamPool;
  static void onConnect(uv_connect_t* req, int status);
  static void onClose(uv_handle_t* h);
  static void onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  bool reading_ = false;

  uv_tcp_t tcp_;
  UpstreamPool& pool_;
  balancer::Backend& backend_;
  Session* owner_ = nullptr;
  std::int64_t idle_since_ = 0;
  bool reused_ = false;
  bool closing_ = false;
  bool idle_ = false;
  bool connected_ = false;  // counted in upstream_connections{state=active} while not idle
  bool in_use_ = false;     // counted in the pool's demand for its backend (owned by a session)
};

class Worker;

class UpstreamPool {
 public:
  explicit UpstreamPool(Worker& worker) : worker_(worker) {}
  ~UpstreamPool();
  Worker& worker() { return worker_; }

  // An idle connection to this backend, or nullptr. The caller becomes owner.
  UpstreamConn* takeIdle(balancer::Backend& b);
  // A new, not yet connected connection (the caller connects it).
  UpstreamConn* create(balancer::Backend& b);
  // Hands a connection back after a complete exchange. It is kept if it is
  // reusable and the pool has room (below), else closed.
  //
  // Room: a backend keeps up to max_idle_upstream_per_backend idle
  // connections, and more while the idle and the used ones together stay
  // within the most connections in use at once in the last one to two
  // seconds (its demand). 5,000 concurrent clients thus keep about 5,000
  // upstream connections instead of closing and reopening all but 64 of them
  // on every burst; when the load falls, the sweep closes the excess (oldest
  // first) a second or two later. The demand never exceeds connections that
  // were open at once, so it adds no descriptors beyond what the peak used.
  void release(UpstreamConn* c);
  // Once a second: closes idle connections older than idle_ms (all of them
  // with idle_ms < 0), starts a new demand period and closes the idle
  // connections beyond the room the last two periods justify.
  void sweep(std::int64_t now_ms, std::int64_t idle_ms);
  std::size_t idleCount() const;
  void setMaxIdlePerBackend(std::uint32_t n) { max_idle_ = n; }

  // Internal: the connection's handle is gone.
  void onClosed(UpstreamConn* c);

 private:
  friend class UpstreamConn;
  void onIdleRead(UpstreamConn* c, ssize_t nread);
  IntrusiveList<UpstreamConn>& idleList(std::uint32_t backend_id);

  Worker& worker_;
  // A backend's connections in use (owned by sessions, connecting or
  // connected) and the most in use at once lately (free_list.h).
  PoolDemand& demand(std::uint32_t backend_id);
  void takeInUse(UpstreamConn* c);
  void dropInUse(UpstreamConn* c);

  std::vector<IntrusiveList<UpstreamConn>*> idle_;  // by backend id
  std::vector<PoolDemand> demand_;                  // by backend id
  std::uint32_t max_idle_ = 64;
};

}  // namespace tether::proxy
