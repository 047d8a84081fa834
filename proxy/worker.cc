#include "proxy/worker.h"

#include <malloc.h>

#include <fcntl.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

#include "health/ejector.h"
#include "proxy/forward/tunnel.h"
#include "proxy/log.h"
#include "proxy/net.h"
#include "proxy/session.h"

namespace tether::proxy {

Worker::Worker(Runtime& rt, std::uint32_t index)
    : rt_(rt), index_(index), upstreams_(*this), access_log_(rt.access_log) {
  uv_loop_init(&loop_);
  loop_.data = this;
  uv_async_init(&loop_, &async_, onAsync);
  async_.data = this;
  uv_timer_init(&loop_, &sweep_timer_);
  sweep_timer_.data = this;
  uv_timer_init(&loop_, &spread_timer_);
  spread_timer_.data = this;
  uv_timer_init(&loop_, &deadline_timer_);
  deadline_timer_.data = this;
  uv_idle_init(&loop_, &tls_idle_);
  tls_idle_.data = this;
  config_ = rt.config();
  access_log_.start(&loop_, config_->access_log);
  upstreams_.setMaxIdlePerBackend(config_->limits.max_idle_upstream_per_backend);
  picker_kind_ = config_->balance;
  std::random_device rd;
  std::uint64_t seed = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ index;
  picker_ = balancer::makePicker(picker_kind_, seed);
  static const char* kHex = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) request_prefix_[i] = kHex[(seed >> (i * 4)) & 15];
  pins_ = makePinStore(&loop_, config_->affinity, config_->timeouts.connect, *rt.memory_pins, rt.metrics);
  buildPlans();
}

void Worker::buildPlans() { plans_ = forward::AffinityPlans(*config_); }

const conf::Compression& Worker::compressionFor(std::string_view path) const {
  const conf::Config& cfg = config();
  for (const conf::Route& r : cfg.routes) {
    if (path.substr(0, r.match.path_prefix.size()) == r.match.path_prefix)
      return r.compression ? *r.compression : cfg.compression;
  }
  return cfg.compression;
}

forward::CacheStore* Worker::cacheFor(std::string_view path, std::size_t* route, const conf::Cache** cfg) {
  const conf::Config& c = config();
  for (std::size_t i = 0; i < c.routes.size(); ++i) {
    const conf::Route& r = c.routes[i];
    if (path.substr(0, r.match.path_prefix.size()) != r.match.path_prefix) continue;
    if (!r.cache || !r.cache->enabled) return nullptr;
    if (caches_.size() < c.routes.size()) caches_.resize(c.routes.size());
    if (!caches_[i]) caches_[i] = std::make_unique<forward::CacheStore>(r.cache->max_size, r.cache->max_object);
    *route = i;
    *cfg = &*r.cache;
    return caches_[i].get();
  }
  return nullptr;
}

void Worker::cacheResized(std::size_t before, std::size_t after) {
  if (before != after) metrics().cache_bytes.add(static_cast<std::int64_t>(after) - static_cast<std::int64_t>(before));
}

void Worker::requestCachePurge(std::string prefix) {
  {
    std::lock_guard<std::mutex> lock(drain_mu_);
    purge_requests_.push_back(std::move(prefix));
  }
  uv_async_send(&async_);
}

void Worker::purgeCaches(const std::string& prefix) {
  for (auto& store : caches_) {
    if (!store) continue;
    std::size_t before = store->bytes();
    store->purge(prefix);
    cacheResized(before, store->bytes());
  }
}

// The backend table only grows: the candidate list follows it by appending,
// instead of being rebuilt for every pick.
std::span<balancer::Backend* const> Worker::candidates() {
  std::size_t n = rt_.backends.size();
  while (pick_scratch_.size() < n) pick_scratch_.push_back(rt_.backends.at(pick_scratch_.size()));
  return pick_scratch_;
}

namespace {

bool wasTried(std::span<const std::uint32_t> tried, std::uint32_t id) {
  for (std::uint32_t t : tried)
    if (t == id) return true;
  return false;
}

}  // namespace

balancer::Backend* Worker::placeByHash(std::uint64_t key_hash, std::span<const std::uint32_t> tried) {
  std::int64_t wall = nowWallMs();
  last_pick_capped_ = false;  // a placement ignores the cap (the request queues for its backend)
  auto accept = [&](const balancer::Backend& b) { return b.available(wall) && !wasTried(tried, b.id); };
  return placer_.pick(candidates(), accept, key_hash);
}

Worker::~Worker() { uv_loop_close(&loop_); }

namespace {

// Binds a listening socket ourselves, for SO_REUSEPORT (one accept queue per
// worker, spread by the kernel).
int bindSocket(const conf::HostPort& hp, bool reuse_port, int* fd_out, std::string* err) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp.port);
  int rc = getaddrinfo(hp.host.empty() ? nullptr : hp.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    *err = hp.str() + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = hp.str() + ": " + std::strerror(errno);
    freeaddrinfo(res);
    return -1;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
    *err = hp.str() + ": " + std::strerror(errno);
    ::close(fd);
    freeaddrinfo(res);
    return -1;
  }
  freeaddrinfo(res);
  *fd_out = fd;
  return 0;
}

}  // namespace

std::string Worker::bind(const conf::Config& config, std::vector<std::string>* bound,
                         const std::vector<std::string>* same, const UpgradePlan* plan,
                         bool defer_listen) {
  bool reuse_port = config.workers > 1;
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    conf::HostPort hp = config.listeners[i].address;
    std::string where = "listeners[" + std::to_string(i) + "].address: ";
    std::vector<int> fds;
    const std::vector<InheritedTake>* takes =
        plan && i < plan->proxy.size() && index_ < plan->proxy[i].size() ? &plan->proxy[i][index_] : nullptr;
    if (takes && !takes->empty()) {
      for (const InheritedTake& t : *takes) {
        int fd = t.shared ? fcntl(t.fd, F_DUPFD_CLOEXEC, 3) : t.fd;
        if (fd < 0) return where + hp.str() + ": inherited socket: " + std::strerror(errno);
        fds.push_back(fd);
      }
    } else {
      if (same && i < same->size()) {
        // Same port as worker 0 (which may have been given port 0).
        const std::string& s = (*same)[i];
        hp.port = static_cast<std::uint16_t>(std::stoi(s.substr(s.rfind(':') + 1)));
      }
      int fd = -1;
      std::string err;
      if (bindSocket(hp, reuse_port, &fd, &err) != 0) return where + err;
      fds.push_back(fd);
    }
    for (std::size_t k = 0; k < fds.size(); ++k) {
      auto l = std::make_unique<ListenerHandle>();
      l->worker = this;
      l->index = i;
      l->tls = config.listeners[i].tls;
      l->h2c = config.listeners[i].h2c;
      uv_tcp_init(&loop_, &l->tcp);
      l->tcp.data = l.get();
      int rc = uv_tcp_open(&l->tcp, fds[k]);
      if (rc == 0 && !defer_listen) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), kBacklog, onConnection);
      if (rc != 0) {
        std::string e = where + hp.str() + ": " + uv_strerror(rc);
        uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), nullptr);
        listeners_.push_back(std::move(l));
        for (std::size_t j = k + 1; j < fds.size(); ++j) ::close(fds[j]);
        return e;
      }
      if (bound && k == 0) bound->push_back(localAddress(&l->tcp));
      listening_.push_back({i, config.listeners[i].address.str(), fds[k]});
      listeners_.push_back(std::move(l));
    }
  }
  return {};
}

void Worker::requestListen() {
  want_listen_ = true;
  uv_async_send(&async_);
}

void Worker::startListening() {
  if (stopping_) return;
  for (auto& l : listeners_) {
    auto* stream = reinterpret_cast<uv_stream_t*>(&l->tcp);
    if (uv_is_closing(reinterpret_cast<uv_handle_t*>(stream))) continue;
    int rc = uv_listen(stream, kBacklog, onConnection);
    if (rc != 0) {
      log::error("listen failed", {{"listener", static_cast<std::uint64_t>(l->index)}, {"error", uv_strerror(rc)}});
    }
  }
}

void Worker::closeListeners() {
  for (auto& l : listeners_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&l->tcp)))
      uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp), nullptr);
  }
}

void Worker::run() {
  uv_timer_start(&sweep_timer_, onSweep, 1000, 1000);
  uv_run(&loop_, UV_RUN_DEFAULT);
}

void Worker::requestStop() {
  want_stop_ = true;
  uv_async_send(&async_);
}

void Worker::requestForceStop() {
  want_force_ = true;
  uv_async_send(&async_);
}

void Worker::requestHandOff() {
  want_handoff_ = true;
  uv_async_send(&async_);
}

void Worker::requestGraceOver() {
  want_grace_over_ = true;
  uv_async_send(&async_);
}

void Worker::requestConfigUpdate() {
  want_config_ = true;
  uv_async_send(&async_);
}

void Worker::requestTunnelDrain(std::int64_t backend_id) {
  {
    std::lock_guard<std::mutex> lock(drain_mu_);
    drain_requests_.push_back(backend_id);
  }
  uv_async_send(&async_);
}

void Worker::onAsync(uv_async_t* a) {
  Worker* w = static_cast<Worker*>(a->data);
  if (w->want_config_.exchange(false)) w->applyConfig();
  std::vector<std::int64_t> drains;
  std::vector<std::string> purges;
  {
    std::lock_guard<std::mutex> lock(w->drain_mu_);
    drains.swap(w->drain_requests_);
    purges.swap(w->purge_requests_);
  }
  for (std::int64_t id : drains) w->drainTunnels(id);
  for (const std::string& prefix : purges) w->purgeCaches(prefix);
  if (w->want_listen_.exchange(false)) w->startListening();
  if (w->want_handoff_.exchange(false)) w->stopAccepting();
  if (w->want_stop_.exchange(false)) w->beginStop();
  if (w->want_grace_over_.exchange(false)) w->graceOver();
  if (w->want_force_.exchange(false)) w->forceStop();
}

void Worker::applyConfig() {
  conf::ConfigPtr previous = config_;
  config_ = rt_.config();
  if (previous != config_) {
    purgeCaches("");
    caches_.clear();
  }
  access_log_.configure(config_->access_log);
  upstreams_.setMaxIdlePerBackend(config_->limits.max_idle_upstream_per_backend);
  buildPlans();
  if (config_->balance != picker_kind_) {
    picker_kind_ = config_->balance;
    picker_ = balancer::makePicker(picker_kind_, request_counter_ ^ 0x9e3779b97f4a7c15ull);
  }
}

void Worker::stopAccepting() {
  if (stopping_) return;
  stopping_ = true;
  closeListeners();
  log::debug("listeners closed", {{"worker", index_}});
  sessions_.forEach([](Session* s) {
    if (!s->tunnelTo(nullptr)) s->goAway();
  });
  maybeFinishStop();
}

void Worker::beginStop() {
  stopAccepting();
  if (tunnels_told_) return;
  tunnels_told_ = true;
  drainTunnels(-1);  // 1001 to every tunnel, spread over websocket_close_spread if set
  maybeFinishStop();
}

void Worker::graceOver() {
  beginStop();
  sessions_.forEach([](Session* s) { s->graceOver(); });
}

void Worker::forceStop() {
  sessions_.forEach([](Session* s) { s->close(); });
}

void Worker::drainTunnels(std::int64_t backend_id) {
  const balancer::Backend* b = backend_id < 0 ? nullptr : rt_.backends.at(static_cast<std::size_t>(backend_id));
  std::int64_t spread = config_->timeouts.websocket_close_spread;
  std::size_t marked = 0;
  sessions_.forEach([&](Session* s) {
    if (spread <= 0) {
      s->drainTunnels(b);
    } else {
      marked += s->markGoAway(b);
    }
  });
  if (marked == 0) return;
  // Spread the going-away closes over the window, so that thousands of
  // clients do not all reconnect in the same second.
  goaway_left_ += marked;
  std::int64_t ticks = std::max<std::int64_t>(1, spread / kSpreadTickMs);
  goaway_batch_ = std::max<std::size_t>(1, (goaway_left_ + static_cast<std::size_t>(ticks) - 1) / static_cast<std::size_t>(ticks));
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&spread_timer_)))
    uv_timer_start(&spread_timer_, onSpread, 0, kSpreadTickMs);
}

void Worker::onSpread(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  std::size_t n = 0;
  w->sessions_.forEach([&](Session* s) { n += s->goAwayMarked(w->goaway_batch_ - n); });
  w->goaway_left_ = n >= w->goaway_left_ ? 0 : w->goaway_left_ - n;
  if (n == 0 || w->goaway_left_ == 0) {
    w->goaway_left_ = 0;
    uv_timer_stop(t);
  }
}

void Worker::maybeFinishStop() {
  if (!stopping_ || !sessions_.empty() || finished_) return;
  finished_ = true;
  upstreams_.sweep(0, -1);
  pins_->close();
  uv_timer_stop(&sweep_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&spread_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&tls_idle_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  access_log_.close();  // every session is gone: this worker's last lines
  if (on_drained_) on_drained_();
}

void Worker::deferTlsResume(Session* s) {
  if (static_cast<ListHook<TlsTag>*>(s)->linked()) return;
  tls_resume_.pushBack(s);
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&tls_idle_))) uv_idle_start(&tls_idle_, onTlsIdle);
}

void Worker::onTlsIdle(uv_idle_t* h) {
  Worker* w = static_cast<Worker*>(h->data);
  // Only those deferred before this pass: a session that defers itself again
  // waits for the next one, so the loop still polls in between.
  for (std::size_t n = w->tls_resume_.size(); n > 0; --n) {
    Session* s = w->tls_resume_.popFront();
    if (!s) break;
    s->onTlsResume();
  }
  if (w->tls_resume_.empty()) uv_idle_stop(h);
}

void Worker::scheduleDeadline(DeadlineEntry* s, std::int64_t at) {
  deadlines_.schedule(s, at);
  if (deadline_timer_at_ < 0 || at < deadline_timer_at_) armDeadlineTimer();
}

void Worker::cancelDeadline(DeadlineEntry* s) {
  if (!s->scheduled() && !due_.empty()) {
    // Popped for this pass but not run yet: a stream may be destroyed by
    // another entry's callback.
    for (DeadlineEntry*& e : due_)
      if (e == s) e = nullptr;
  }
  deadlines_.cancel(s);
}

// The timer is armed for the earliest deadline, or not at all; a cancelled
// earliest one leaves it armed, and it fires early to re-arm (cheaper than
// re-arming on every cancel).
void Worker::armDeadlineTimer() {
  DeadlineEntry* e = deadlines_.earliest();
  if (!e) {
    uv_timer_stop(&deadline_timer_);
    deadline_timer_at_ = -1;
    return;
  }
  std::int64_t wait = std::max<std::int64_t>(0, e->deadline_at - now());
  uv_timer_start(&deadline_timer_, onDeadlines, static_cast<std::uint64_t>(wait), 0);
  deadline_timer_at_ = now() + wait;
}

// Every session whose deadline has come runs its onDeadline() once; what they
// schedule meanwhile (even for now) waits for the next turn of the loop.
void Worker::onDeadlines(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  w->deadline_timer_at_ = -1;
  std::int64_t now = w->now();
  w->due_.clear();
  while (DeadlineEntry* e = w->deadlines_.popDue(now)) w->due_.push_back(e);
  // A session closed by another's deadline is still memory until its close
  // callback, which cannot run inside this one; onDeadline() checks closing.
  // A stream destroyed meanwhile was nulled by cancelDeadline.
  for (std::size_t i = 0; i < w->due_.size(); ++i) {
    DeadlineEntry* e = w->due_[i];
    if (!e) continue;
    if (e->deadline_kind == kDeadlineStream) {
      static_cast<Stream*>(e)->onDeadline();
    } else {
      static_cast<Session*>(e)->onDeadline();
    }
  }
  w->due_.clear();
  if (w->deadline_timer_at_ < 0) w->armDeadlineTimer();
}

void Worker::onSweep(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  w->upstreams_.sweep(w->now(), w->config_->timeouts.upstream_keepalive);
  w->buffers_.tick();
  w->streams_.tick();
  w->request_decoders_.tick();
  w->response_decoders_.tick();
  w->writes_.tick();
}

void Worker::onConnection(uv_stream_t* server, int status) {
  auto* l = static_cast<ListenerHandle*>(server->data);
  Worker* w = l->worker;
  if (status != 0) {
    log::warn("accept failed", {{"error", uv_strerror(status)}});
    return;
  }
  auto* s = new Session(*w, *l);
  w->sessions_.pushBack(s);
  w->sessions_peak_ = std::max(w->sessions_peak_, w->sessions_.size());
  s->start(server);
}

bool Worker::enqueue(Stream* s) {
  if (queue_.size() >= config_->limits.max_queue) return false;
  queue_.pushBack(s);
  return true;
}

void Worker::dequeue(Stream* s) { queue_.remove(s); }

void Worker::tunnelEnded(balancer::Backend& b, const forward::Tunnel& t) {
  metrics::BackendMetrics& bm = metrics().backend(b.id);
  bm.websocket_active.dec();
  b.active_tunnels.fetch_sub(1, std::memory_order_relaxed);
  if (config().limits.max_connections_per_backend) slotFreed();
  bm.websocket_duration.observeMs(now() - t.started_ms);
  bm.websocketClose(t.close_code, t.close_by);
}

void Worker::slotFreed() {
  if (queue_.empty() || serving_queue_) return;
  serving_queue_ = true;  // onSlot may free or take slots again: no recursion
  // In arrival order, each waiting session takes a slot it can use: a pinned
  // or placed request only on its own backend, keeping its key, client hash
  // and tried list; one taken again goes to the back.
  queue_.forEach([this](Stream* s) {
    if (balancer::Backend* b = s->slotCandidate()) {
      queue_.remove(s);
      s->onSlot(b);
    }
  });
  serving_queue_ = false;
}

void Worker::sessionClosed(Session* s) {
  sessions_.remove(s);
  tls_resume_.remove(s);
  delete s;
  // A burst of connections has ended: malloc keeps the chunks their sessions
  // freed, so give the pages back (rarely: after a thousand closes at least,
  // once half of the peak is gone, or when the last of a few hundred closes).
  std::size_t open = sessions_.size();
  if ((sessions_peak_ >= open + kTrimAfterClosed && open <= sessions_peak_ / 2) ||
      (open == 0 && sessions_peak_ >= kTrimAfterClosed / 4)) {
    malloc_trim(0);
    sessions_peak_ = open;
  }
  maybeFinishStop();
}

WriteReq* Worker::takeWriteReq() { return writes_.take(); }

void Worker::giveWriteReq(WriteReq* r) {
  r->ctx = nullptr;
  writes_.give(r);
}

namespace {

void onPooledWrite(uv_write_t* req, int status) {
  WriteReq* wr = reinterpret_cast<WriteReq*>(req);
  void (*done)(void*, int) = wr->done;
  void* ctx = wr->ctx;
  // The pool is the loop's worker's, reached through the loop's data.
  static_cast<Worker*>(req->handle->loop->data)->giveWriteReq(wr);
  if (ctx) done(ctx, status);
}

}  // namespace

int Worker::send(uv_stream_t* to, WriteReq*& slot, void (*done)(void*, int), void* ctx, uv_buf_t* bufs,
                 unsigned n) {
  unsigned i = 0;
  if (int r = writeWhatFits(to, bufs, n, &i); r != 1) return r;
  slot = takeWriteReq();
  slot->done = done;
  slot->ctx = ctx;
  if (uv_write(&slot->req, to, bufs + i, n - i, onPooledWrite) != 0) {
    giveWriteReq(slot);
    slot = nullptr;
    return UV_EPIPE;
  }
  return 1;
}

RequestDecoder* Worker::takeRequestDecoder() { return request_decoders_.take(); }

void Worker::giveRequestDecoder(RequestDecoder* d) {
  d->reset();
  request_decoders_.give(d);
}

ResponseDecoder* Worker::takeResponseDecoder() { return response_decoders_.take(); }

void Worker::giveResponseDecoder(ResponseDecoder* d) {
  d->trimStorage();  // reset by the next stream before it reads a response
  response_decoders_.give(d);
}

Stream* Worker::makeStream(Downstream& ds, std::uint64_t bytes_read) { return streams_.make(*this, ds, bytes_read); }

void Worker::destroyStream(Stream* s) { streams_.destroy(s); }

balancer::Backend* Worker::pick(std::span<const std::uint32_t> tried, std::uint64_t key_hash, bool has_key) {
  std::int64_t now_ms = nowWallMs();
  std::uint64_t per_backend = config_->limits.max_connections_per_backend;
  last_pick_capped_ = false;
  auto accept = [&](const balancer::Backend& b) {
    if (!b.available(now_ms) || wasTried(tried, b.id)) return false;
    if (per_backend && b.load() >= per_backend) {
      last_pick_capped_ = true;
      return false;
    }
    return true;
  };
  balancer::PickContext ctx;
  ctx.now_ms = now_ms;
  ctx.slow_start_ms = config_->health.slow_start;
  ctx.key_hash = key_hash;
  ctx.has_key = has_key;
  return picker_->pick(candidates(), accept, ctx);
}

std::int64_t Worker::nowWallMs() { return wallClockMs(); }

void Worker::newRequestId(char out[32]) {
  // Two hex digits per table entry: eight stores for the counter half.
  static constexpr auto kPairs = [] {
    std::array<char[2], 256> t{};
    constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 256; ++i) t[i][0] = kHex[i >> 4], t[i][1] = kHex[i & 15];
    return t;
  }();
  std::memcpy(out, request_prefix_, 16);
  std::uint64_t c = ++request_counter_;
  for (int i = 30; i >= 16; i -= 2, c >>= 8) std::memcpy(out + i, kPairs[c & 0xff], 2);
}

void Worker::backendFailure(balancer::Backend& b) {
  std::int64_t now = nowWallMs();
  bool held = false;
  std::int64_t until =
      health::PassiveEjector(config_->passive, rt_.backends).onFailure(b, now, &held);
  if (held) {
    // Once a streak per backend at most, and across every worker at most once
    // every 10 s: a dead backend held by the floor fails every request.
    static std::atomic<std::int64_t> last_logged_ms{0};
    std::int64_t last = last_logged_ms.load(std::memory_order_relaxed);
    if (now - last >= 10'000 && last_logged_ms.compare_exchange_strong(last, now)) {
      log::warn("backend not ejected: passive.max_ejection_percent reached",
                {{"backend", b.name},
                 {"consecutive_failures", config_->passive.consecutive_failures},
                 {"max_ejection_percent", config_->passive.max_ejection_percent}});
    }
  }
  if (!until) return;
  rt_.metrics.backend(b.id).ejections.inc();
  log::warn("backend ejected", {{"backend", b.name},
                                {"consecutive_failures", config_->passive.consecutive_failures},
                                {"for_ms", until - now}});
}

void Worker::backendSuccess(balancer::Backend& b) { health::PassiveEjector::onSuccess(b); }

}  // namespace tether::proxy
