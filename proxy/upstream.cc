#include "proxy/upstream.h"

#include "proxy/log.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace tether::proxy {

UpstreamConn::UpstreamConn(UpstreamPool& pool, balancer::Backend& backend) : pool_(pool), backend_(backend) {
  uv_tcp_init(pool.worker().loop(), &tcp_);
  tcp_.data = this;
  backend.connections.fetch_add(1, std::memory_order_relaxed);
}

// The connect request lives only while connecting: a pooled or tunnelled
// connection does not carry it.
int UpstreamConn::connect(Session* owner) {
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
  if (c->owner_) {
    c->owner_->onUpstreamConnected(status);
  } else {
    c->close();
  }
}

void UpstreamConn::setReading(bool on) {
  if (on == reading_ || closing_) return;
  int rc = on ? uv_read_start(stream(), onAlloc, onRead) : uv_read_stop(stream());
  if (rc == 0) reading_ = on;
}

void UpstreamConn::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(h->data);
  if (c->owner_) {
    c->owner_->onUpstreamAlloc(buf);
  } else {
    *buf = uv_buf_init(c->pool_.worker().discardBuffer(), 4096);
  }
}

void UpstreamConn::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<UpstreamConn*>(s->data);
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
  auto* c = new UpstreamConn(*this, b);
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
