// Upstream connections and the per-loop pool of idle ones.
//
// An UpstreamConn is one TCP connection to one backend. While a stream uses
// it, its events go to that stream (owner); while idle it sits in the pool,
// keeps reading (a read of EOF or of any byte means the backend closed or
// misbehaved: the connection is dropped at once, before a request can be
// sent on it) and holds no buffer. Loop-affine: one pool per worker.
//
// To an https:// backend the connection carries a client TlsTransport
// (proxy/io/transport.h) and is its TransportOwner: connect() reports to the
// owner only once the handshake is done (a certificate that does not verify
// is a failed connect, logged with the backend and OpenSSL's reason), and the
// owner reads plaintext into its own buffer (onUpstreamAlloc/onUpstreamRead)
// and writes plaintext through write(), writeOwn() and shutdown(). While idle,
// records that carry no bytes (TLS 1.3 session tickets) are consumed; a
// close_notify, EOF or any plaintext byte drops the connection. The
// session a server gives is kept per backend (the pool's TlsSessionCache),
// so the next connection resumes it.
//
// Lifetime: owned by the pool while idle, by the session while active;
// destroyed only in its close callback (libuv's rule). close() is idempotent.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "balancer/backend.h"
#include "proxy/intrusive_list.h"
#include "proxy/io/tls_client.h"
#include "proxy/io/transport.h"
#include "proxy/io/free_list.h"

namespace tether::proxy {

class UpstreamPool;

// Who a connection in use reports to: the stream proxying a request over it,
// or the connection it became a tunnel of.
class UpstreamOwner {
 public:
  // The connect (and TLS handshake) is done: status 0, or a libuv error.
  virtual void onUpstreamConnected(int status) = 0;
  // Room for bytes from the backend (plaintext).
  virtual void onUpstreamAlloc(uv_buf_t* buf) = 0;
  // As libuv's read callback: bytes into the room given, 0, EOF or an error.
  virtual void onUpstreamRead(ssize_t nread, const uv_buf_t* buf) = 0;
  // A write the connection queued (TLS: write()) is done.
  virtual void onUpstreamWritten(int status) = 0;

 protected:
  ~UpstreamOwner() = default;
};

struct WriteReq;

class UpstreamConn final : public ListHook<>, private TransportOwner {
 public:
  // `tls`: the backend's TLS (https://), or nullptr for plain TCP.
  UpstreamConn(UpstreamPool& pool, balancer::Backend& backend, std::shared_ptr<const TlsClientContext> tls);
  ~UpstreamConn();
  uv_tcp_t* tcp() { return &tcp_; }
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  balancer::Backend& backend() const { return backend_; }
  bool reused() const { return reused_; }
  bool closing() const { return closing_; }

  // Starts a non-blocking connect; the owner's onUpstreamConnected(status)
  // fires later (never synchronously). Returns a uv error when the connect
  // could not even start.
  int connect(UpstreamOwner* owner);
  void setOwner(UpstreamOwner* s) { owner_ = s; }
  // Reads stay on across owners and idle time (no epoll_ctl per request):
  // bytes go to the owner, or, while idle, mean the connection is unusable.
  // Only backpressure turns them off.
  void setReading(bool on);
  void markConnected() { connected_ = true; }
  UpstreamOwner* owner() const { return owner_; }
  void close();

  // TLS only (tls()). Plaintext to the backend: 0 written, 1 queued (the
  // owner's onUpstreamWritten follows, never from inside this call), < 0
  // failed. Without TLS the owner writes stream() itself.
  bool tls() const { return tls_ != nullptr; }
  int write(uv_buf_t* bufs, unsigned n);
  // A few bytes of the owner's own (close frames), after what was written
  // before; copied if they cannot go at once. Both transports.
  void writeOwn(const char* data, std::size_t len);
  // Shuts the sending side (TLS: after a close_notify) once everything
  // before is written; `cb` runs as uv_shutdown's would. Both transports.
  int shutdown(uv_shutdown_t* req, uv_shutdown_cb cb);
  // Decrypted-but-undelivered records are held (the owner's buffer was
  // full): resume() hands them over; the owner calls it from its own
  // deferred callback, never from inside a read callback of this connection.
  bool buffered() const { return tls_ && handshook_ && tls_->buffered(); }
  void resume();

 private:
  friend class UpstreamPool;
  // TransportOwner
  bool plainRoom(char** data, std::size_t* len) override;
  void plainAdded(std::size_t n) override;
  int socketWrite(uv_buf_t* bufs, unsigned n) override;
  void plainWritten(int status) override;
  uv_stream_t* socket() override { return stream(); }
  void transportFailed(const char* what, const std::string& why) override;

  void startTls();
  void onTls(Transport::Result r);
  void handshakeFailed(const std::string& why);
  static void onSocketWritten(void* ctx, int status);
  static void onConnect(uv_connect_t* req, int status);
  static void onClose(uv_handle_t* h);
  static void onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  bool reading_ = false;

  uv_tcp_t tcp_;
  UpstreamPool& pool_;
  balancer::Backend& backend_;
  UpstreamOwner* owner_ = nullptr;
  std::int64_t idle_since_ = 0;
  bool reused_ = false;
  bool closing_ = false;
  bool idle_ = false;
  bool connected_ = false;  // counted in upstream_connections{state=active} while not idle

  std::shared_ptr<const TlsClientContext> tls_ctx_;
  std::unique_ptr<TlsTransport> tls_;
  SSL* ssl_ = nullptr;        // owned by tls_; for the handshake's failure reason
  WriteReq* cipher_write_ = nullptr;  // the one queued ciphertext write, from the worker's pool
  std::string failure_;       // set by transportFailed: what went wrong, for the log
  bool handshook_ = false;
  bool failed_ = false;
  bool eof_ = false;  // the backend's end was passed on
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
  // The TLS session to resume on the next connection to backend `id`.
  TlsSessionCache* sessionCache(std::uint32_t id);

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
  // By backend id; never shrinks, so that an SSL's pointer to its entry stays valid.
  std::vector<std::unique_ptr<TlsSessionCache>> sessions_;
  std::vector<PoolDemand> demand_;                  // by backend id
  std::uint32_t max_idle_ = 64;
};

}  // namespace tether::proxy
