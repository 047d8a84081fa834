#include "proxy/upstream.h"

#include "proxy/log.h"
#include "proxy/session.h"
#include "proxy/worker.h"
#include "proxy/write_req.h"

namespace tether::proxy {

UpstreamConn::UpstreamConn(UpstreamPool& pool, balancer::Backend& backend,
                           std::shared_ptr<const TlsClientContext> tls)
    : pool_(pool), backend_(backend), tls_ctx_(std::move(tls)) {
  uv_tcp_init(pool.worker().loop(), &tcp_);
  tcp_.data = this;
  backend.connections.fetch_add(1, std::memory_order_relaxed);
}

UpstreamConn::~UpstreamConn() {
  if (cipher_write_) cipher_write_->ctx = nullptr;  // a late completion only returns it to the pool
}

// The connect request lives only while connecting: a pooled or tunnelled
// connection does not carry it.
int UpstreamConn::connect(UpstreamOwner* owner) {
  owner_ = owner;
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, &tcp_, reinterpret_cast<const sockaddr*>(&backend_.addr), onConnect);
  if (rc != 0) delete req;
  return rc;
}

void UpstreamConn::onConnect(uv_connect_t* req, int status) {
  auto* c = static_cast<UpstreamConn*>(req->data);
  delete req;  // libuv is done with it; a close cancels it with UV_ECANCELED first
  if (status == UV_ECANCELED || c->closing_) return;
  if (!c->owner_) {
    c->close();
  } else if (status == 0 && c->tls_ctx_) {
    c->startTls();
  } else {
    c->owner_->onUpstreamConnected(status);
  }
}

// ---------------------------------------------------------------------------
// TLS

void UpstreamConn::startTls() {
  // The server name (SNI, certificate check) is the context's: the URL's
  // host unless tls.server_name says otherwise.
  ssl_ = tls_ctx_->newSsl(std::string(), pool_.sessionCache(backend_.id));
  if (!ssl_) {
    handshakeFailed("out of memory");
    return;
  }
  TransportOwner& self = *this;  // a private base: converted here, where it is accessible
  tls_ = std::make_unique<TlsTransport>(self, ssl_, pool_.worker().buffers(), nullptr);
  setReading(true);
  if (!reading_) {
    handshakeFailed("cannot read the socket");
    return;
  }
  onTls(tls_->resume());  // the ClientHello
}

void UpstreamConn::handshakeFailed(const std::string& why) {
  std::string reason = ssl_ ? tlsClientFailure(ssl_, why) : why;
  log::warn("upstream TLS handshake failed", {{"backend", backend_.name}, {"url", backend_.url}, {"error", reason}});
  UpstreamOwner* owner = owner_;
  close();
  if (owner) owner->onUpstreamConnected(UV_EPROTO);
}

// What the transport made of the socket's bytes. Plaintext has already gone
// to the owner (plainAdded); here the handshake, the peer's end and failures.
void UpstreamConn::onTls(Transport::Result r) {
  if (closing_) return;
  if (!handshook_) {
    if (r.fault != Transport::Fault::kNone || failed_) {
      handshakeFailed(r.fault == Transport::Fault::kNotTls ? "the backend does not speak TLS"
                      : failed_                             ? failure_
                                                            : tls_->error());
      return;
    }
    if (r.eof) {
      handshakeFailed("connection closed during the handshake");
      return;
    }
    if (!r.handshook) return;
    handshook_ = true;
    log::debug("upstream TLS connected", {{"backend", backend_.name}, {"version", tls_->tlsVersion()},
                                          {"resumed", SSL_session_reused(ssl_) ? "yes" : "no"}});
    if (SSL_session_reused(ssl_)) {
      pool_.worker().metrics().backend(backend_.id).upstream_tls_resumed.inc();
    } else {
      pool_.worker().metrics().backend(backend_.id).upstream_tls_full.inc();
    }
    if (!owner_) {
      close();
      return;
    }
    owner_->onUpstreamConnected(0);
    // Records that came with the server's last flight wait for the owner's
    // next read (resume from its deferred callback).
    return;
  }
  if (failed_) {
    log::debug("upstream TLS failed", {{"backend", backend_.name}, {"error", failure_}});
    if (owner_) {
      owner_->onUpstreamRead(UV_ECONNRESET, nullptr);
    } else {
      close();
    }
    return;
  }
  if (r.eof && !eof_) {
    // Once: a close_notify and the FIN after it are one end.
    eof_ = true;
    if (owner_) {
      owner_->onUpstreamRead(UV_EOF, nullptr);
    } else {
      close();
    }
  }
}

void UpstreamConn::resume() {
  if (!closing_ && tls_ && handshook_) onTls(tls_->resume());
}

bool UpstreamConn::plainRoom(char** data, std::size_t* len) {
  if (closing_ || !handshook_ || (owner_ && !reading_)) return false;
  if (!owner_) {
    // Idle: any plaintext byte is a fault (plainAdded drops the connection).
    *data = pool_.worker().discardBuffer();
    *len = 4096;
    return true;
  }
  uv_buf_t b;
  owner_->onUpstreamAlloc(&b);
  *data = b.base;
  *len = b.len;
  return b.len > 0;
}

void UpstreamConn::plainAdded(std::size_t n) {
  if (owner_) {
    owner_->onUpstreamRead(static_cast<ssize_t>(n), nullptr);
  } else {
    log::debug("bytes on an idle upstream connection", {{"backend", backend_.name}});
    close();
  }
}

int UpstreamConn::socketWrite(uv_buf_t* bufs, unsigned n) {
  if (closing_) return UV_EPIPE;
  return pool_.worker().send(stream(), cipher_write_, onSocketWritten, this, bufs, n);
}

void UpstreamConn::onSocketWritten(void* ctx, int status) {
  auto* c = static_cast<UpstreamConn*>(ctx);
  c->cipher_write_ = nullptr;
  if (status == UV_ECANCELED || c->closing_) return;
  c->tls_->socketWritten(status);
  if (c->failed_ && !c->closing_) c->onTls({});
}

void UpstreamConn::plainWritten(int status) {
  if (owner_) owner_->onUpstreamWritten(status);
}

void UpstreamConn::transportFailed(const char* what, const std::string& why) {
  failed_ = true;
  failure_ = std::string(what) + ": " + why;
}

int UpstreamConn::write(uv_buf_t* bufs, unsigned n) {
  if (closing_ || failed_) return UV_EPIPE;
  return tls_->write(bufs, n);
}

void UpstreamConn::writeOwn(const char* data, std::size_t len) {
  if (closing_) return;
  if (tls_) {
    tls_->writeOwn(data, len);
  } else {
    writeCopied(stream(), data, len);
  }
}

int UpstreamConn::shutdown(uv_shutdown_t* req, uv_shutdown_cb cb) {
  if (closing_) return UV_EPIPE;
  return tls_ ? tls_->shutdown(req, cb) : uv_shutdown(req, stream(), cb);
}

void UpstreamConn::setReading(bool on) {
  if (on == reading_ || closing_) return;
  int rc = on ? uv_read_start(stream(), onAlloc, onRead) : uv_read_stop(stream());
  if (rc == 0) reading_ = on;
}

void UpstreamConn::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  if (c->tls_) {
    std::size_t len = 0;
    char* p = c->tls_->readSpace(&len);
    *buf = uv_buf_init(p, static_cast<unsigned>(len));
  } else if (c->owner_) {
    c->owner_->onUpstreamAlloc(buf);
  } else {
    *buf = uv_buf_init(c->pool_.worker().discardBuffer(), 4096);
  }
}

void UpstreamConn::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(s->data);
  if (c->tls_ && !c->closing_) {
    // Ciphertext: the transport turns it into plaintext for the owner (or
    // finds it on an idle connection).
    if (nread > 0) {
      c->onTls(c->tls_->received(static_cast<std::size_t>(nread)));
    } else if (nread == UV_EOF) {
      c->onTls(c->tls_->eof());
    } else if (nread == UV_ENOBUFS) {
      c->setReading(false);  // the record buffer is full: the owner's next read resumes
    } else if (nread < 0) {
      if (!c->handshook_) {
        c->handshakeFailed(uv_strerror(static_cast<int>(nread)));
      } else if (c->owner_) {
        c->owner_->onUpstreamRead(nread, buf);
      } else {
        c->close();
      }
    }
    return;
  }
  if (c->owner_) {
    c->owner_->onUpstreamRead(nread, buf);
  } else if (c->idle_) {
    c->pool_.onIdleRead(c, nread);
  } else if (nread < 0 && !c->closing_) {
    c->close();
  }
}

void UpstreamConn::close() {
  if (closing_) return;
  closing_ = true;
  if (tls_) tls_->cancel();
  if (idle_) {
    pool_.idleList(backend_.id).remove(this);
    idle_ = false;
    pool_.worker().metrics().backend(backend_.id).upstream_idle.dec();
    connected_ = false;  // no longer counted anywhere
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClose);
}

void UpstreamConn::onClose(uv_handle_t* h) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  c->pool_.onClosed(c);
}

UpstreamPool::~UpstreamPool() {
  for (auto* l : idle_) delete l;
}

IntrusiveList<UpstreamConn>& UpstreamPool::idleList(std::uint32_t id) {
  if (id >= idle_.size()) idle_.resize(id + 1, nullptr);
  if (!idle_[id]) idle_[id] = new IntrusiveList<UpstreamConn>();
  return *idle_[id];
}

UpstreamConn* UpstreamPool::takeIdle(balancer::Backend& b) {
  if (b.id >= idle_.size() || !idle_[b.id]) return nullptr;
  // Most recently used first: it is the least likely to have been closed by
  // the backend's own keep-alive timeout.
  IntrusiveList<UpstreamConn>& l = *idle_[b.id];
  UpstreamConn* c = l.back();
  if (!c) return nullptr;
  l.remove(c);
  c->idle_ = false;
  takeInUse(c);
  metrics::BackendMetrics& bm = worker_.metrics().backend(b.id);
  bm.upstream_idle.dec();
  bm.upstream_active.inc();
  return c;
}

UpstreamConn* UpstreamPool::create(balancer::Backend& b) {
  auto* c = new UpstreamConn(*this, b, worker_.runtime().backendTls(b.config_index));
  takeInUse(c);
  return c;
}

PoolDemand& UpstreamPool::demand(std::uint32_t id) {
  if (id >= demand_.size()) demand_.resize(id + 1);
  return demand_[id];
}

void UpstreamPool::takeInUse(UpstreamConn* c) {
  c->in_use_ = true;
  demand(c->backend_.id).take();
}

void UpstreamPool::dropInUse(UpstreamConn* c) {
  if (!c->in_use_) return;
  c->in_use_ = false;
  demand(c->backend_.id).give();
}

TlsSessionCache* UpstreamPool::sessionCache(std::uint32_t id) {
  if (id >= sessions_.size()) sessions_.resize(id + 1);
  if (!sessions_[id]) sessions_[id] = std::make_unique<TlsSessionCache>();
  return sessions_[id].get();
}

void UpstreamPool::release(UpstreamConn* c) {
  dropInUse(c);
  IntrusiveList<UpstreamConn>& l = idleList(c->backend_.id);
  if (!demand(c->backend_.id).keeps(l.size(), max_idle_) || c->closing_) {
    c->close();
    return;
  }
  c->owner_ = nullptr;
  c->reused_ = true;
  c->idle_ = true;
  c->idle_since_ = worker_.now();
  metrics::BackendMetrics& bm = worker_.metrics().backend(c->backend_.id);
  bm.upstream_active.dec();
  bm.upstream_idle.inc();
  l.pushBack(c);
  // Watch the idle connection: EOF or stray bytes mean it is unusable.
  c->setReading(true);
  if (!c->reading_) c->close();
}

void UpstreamPool::onIdleRead(UpstreamConn* c, ssize_t nread) {
  if (nread == 0) return;
  if (nread > 0) {
    log::debug("bytes on an idle upstream connection", {{"backend", c->backend_.name}});
  }
  c->close();
}

void UpstreamPool::onClosed(UpstreamConn* c) {
  dropInUse(c);
  c->backend_.connections.fetch_sub(1, std::memory_order_relaxed);
  if (!c->idle_ && c->connected_) worker_.metrics().backend(c->backend_.id).upstream_active.dec();
  delete c;
}

void UpstreamPool::sweep(std::int64_t now_ms, std::int64_t idle_ms) {
  for (std::uint32_t id = 0; id < idle_.size(); ++id) {
    IntrusiveList<UpstreamConn>* l = idle_[id];
    if (!l) continue;
    while (UpstreamConn* c = l->front()) {
      if (idle_ms >= 0 && now_ms - c->idle_since_ < idle_ms) break;
      c->close();
    }
    if (idle_ms < 0) continue;
    PoolDemand& d = demand(id);
    d.tick();
    while (l->front() && d.excess(l->size(), max_idle_)) l->front()->close();
  }
}

std::size_t UpstreamPool::idleCount() const {
  std::size_t n = 0;
  for (auto* l : idle_)
    if (l) n += l->size();
  return n;
}

}  // namespace tether::proxy
