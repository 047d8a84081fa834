#include "proxy/health_checker.h"

#include <random>

#include "health/ejector.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/io/transport.h"
#include "proxy/log.h"
#include "proxy/worker.h"

namespace tether::proxy {

using balancer::Backend;
using balancer::BackendState;

std::string checkRequest(const std::string& path, const std::string& host) {
  http::RequestHead h;
  h.method = http::kMethodGet;
  h.target = path;
  h.headers.add("Host", host);
  h.headers.add("User-Agent", "tether-health-check");
  h.headers.add("Accept", "*/*");
  h.headers.add("Connection", "close");
  std::string out(http::requestHeadSize(h, {}), '\0');
  out.resize(http::writeRequestHead(h, {}, out.data()));
  return out;
}

CheckReader::CheckReader(const conf::Health& cfg)
    : expect_(health::checkExpectFrom(cfg)),
      matcher_(cfg.expect_body),
      decoder_(http::H1Decoder::Type::kResponse, http::H1Decoder::Limits{}) {
  decoder_.expectResponseTo(http::kMethodGet, false);
  decoder_.setBodySink(
      [](void* ctx, const char* p, std::size_t n) {
        static_cast<health::BodyMatcher*>(ctx)->feed(std::string_view(p, n));
      },
      &matcher_);
}

bool CheckReader::feed(const char* data, std::size_t len) {
  if (done_) return true;
  bool after_head = false;
  for (;;) {
    // After a head, once more even with nothing left: that ends a response
    // without a body (a 204).
    if (len == 0 && !after_head) return false;
    after_head = false;
    std::size_t used = 0;
    http::H1Decoder::Event ev = decoder_.execute(data, len, &used);
    data += used;
    len -= used;
    switch (ev) {
      case http::H1Decoder::Event::kNeedMore:
        break;
      case http::H1Decoder::Event::kError: {
        // What came after the body decided is not looked at, whatever the cuts.
        if (decided()) return conclude();
        std::string why = "bad response: " + std::string(decoder_.errorReason());
        std::string_view name = decoder_.errorName();
        // llhttp's own name when it found the fault (ours carry none).
        if (name != "HPE_OK" && name != "HPE_USER") why += " (" + std::string(name) + ")";
        return fail(std::move(why));
      }
      case http::H1Decoder::Event::kHead:
        // A 1xx is followed by the final head, on the same decoder.
        if (!decoder_.response().informational()) status_ = decoder_.response().status;
        after_head = true;
        continue;
      case http::H1Decoder::Event::kComplete:
        return conclude();
    }
    // The body may decide before it ends: the needle found, or the inspected
    // bound passed without it.
    if (decided()) return conclude();
    if (len == 0) return false;
  }
}

void CheckReader::eof(const char* read_error) {
  if (done_) return;
  const bool mid = status_ || decoder_.midMessage();
  if (decided() || (!read_error && decoder_.finish() == http::H1Decoder::Event::kComplete)) {
    conclude();  // decided before the end, or a response without length ends here
    return;
  }
  if (mid) {
    fail("connection closed mid-response");
  } else {
    fail(read_error ? std::string(read_error) : std::string("connection closed before a response"));
  }
}

bool CheckReader::conclude() {
  done_ = true;
  verdict_ = health::evaluateMatched(expect_, status_, matcher_.found());
  if (!verdict_.ok() && !expect_.body_substring.empty() && matcher_.done() && !matcher_.found() &&
      status_ >= expect_.status_min && status_ <= expect_.status_max) {
    verdict_.reason += " in its first " + std::to_string(health::kMaxInspectedBodyBytes) + " bytes";
  }
  return true;
}

bool CheckReader::fail(std::string reason) {
  done_ = true;
  verdict_ = health::CheckVerdict{health::CheckResult::kFail, std::move(reason)};
  return true;
}

namespace {

// The TLS of one check's connection: a client TlsTransport over its socket,
// plaintext fed to the check's reader. Lives as long as the socket (freed in
// its close callback, with it); `reader` is cleared when the check is over.
struct CheckTls final : TransportOwner {
  uv_stream_t* sock = nullptr;
  CheckReader* reader = nullptr;
  SSL* ssl = nullptr;  // owned by transport
  std::unique_ptr<TlsTransport> transport;
  uv_write_t write_req;
  char plain[8192];
  std::string failure;
  bool failed = false;

  bool plainRoom(char** data, std::size_t* len) override {
    if (!reader || reader->done()) return false;
    *data = plain;
    *len = sizeof plain;
    return true;
  }
  void plainAdded(std::size_t n) override {
    if (reader) reader->feed(plain, n);
  }
  int socketWrite(uv_buf_t* bufs, unsigned n) override {
    unsigned i = 0;
    if (int r = writeWhatFits(sock, bufs, n, &i); r != 1) return r;
    write_req.data = this;
    if (uv_write(&write_req, sock, bufs + i, n - i, [](uv_write_t* req, int status) {
          auto* t = static_cast<CheckTls*>(req->data);
          if (status != UV_ECANCELED && t->reader) t->transport->socketWritten(status);
        }) != 0) {
      return UV_EPIPE;
    }
    return 1;
  }
  void plainWritten(int) override {}
  uv_stream_t* socket() override { return sock; }
  void transportFailed(const char* what, const std::string& why) override {
    failed = true;
    failure = std::string(what) + ": " + why;
  }
  // Why the handshake failed, or "".
  std::string handshakeFailure(const Transport::Result& r) const {
    if (!transport->handshaking()) return failed ? failure : std::string();
    if (r.fault == Transport::Fault::kNotTls) return "tls: the backend does not speak TLS";
    if (r.fault != Transport::Fault::kNone || failed) {
      return "tls: " + tlsClientFailure(ssl, failed ? failure : transport->error());
    }
    return {};
  }
};

// A check's socket and, to an https:// backend, its TLS; freed together.
struct CheckSocket {
  uv_tcp_t tcp;  // first: the handle's address is the struct's
  std::unique_ptr<CheckTls> tls;
};

}  // namespace

struct HealthChecker::Check {
  HealthChecker* owner;
  Backend* backend;
  conf::Health cfg;
  health::HealthState state;
  uv_timer_t timer;       // next check, then this check's timeout
  uv_tcp_t* tcp = nullptr;  // the connection of the check in progress
  uv_connect_t connect_req;
  uv_write_t write_req;
  std::string request;
  std::unique_ptr<CheckReader> reader;  // the answer of the check in progress
  std::uint64_t generation = 0;  // a stale callback sees another generation
  bool running = false;
  bool stopped = false;
  char buf[8192];
  std::mt19937 rng{std::random_device{}()};

  Check(HealthChecker* o, Backend* b, const conf::Health& c)
      : owner(o), backend(b), cfg(c), state(c.rise, c.fall) {}

  std::uint64_t jittered(std::int64_t ms) {
    // ±10 % so that checks of many tethers do not beat in step.
    std::int64_t j = ms / 10;
    if (j <= 0) return static_cast<std::uint64_t>(ms);
    std::uniform_int_distribution<std::int64_t> d(-j, j);
    return static_cast<std::uint64_t>(ms + d(rng));
  }

  void schedule(std::uint64_t ms) {
    if (stopped) return;
    uv_timer_start(&timer, onTimer, ms, 0);
  }

  static void onTimer(uv_timer_t* t) {
    Check* c = static_cast<Check*>(t->data);
    if (c->running) {
      c->finish(health::CheckVerdict{health::CheckResult::kTimeout, "timeout after " + std::to_string(c->cfg.timeout) + "ms"});
    } else {
      c->begin();
    }
  }

  void begin() {
    running = true;
    ++generation;
    reader = std::make_unique<CheckReader>(cfg);
    request = checkRequest(cfg.path, backend->host_header);
    auto* sock = new CheckSocket;
    tcp = &sock->tcp;
    uv_tcp_init(owner->loop_, tcp);
    if (std::shared_ptr<const TlsClientContext> ctx = owner->tls_source_ ? owner->tls_source_(*backend) : nullptr) {
      SSL* ssl = ctx->newSsl(std::string());  // the context knows the server name
      if (ssl) {
        sock->tls = std::make_unique<CheckTls>();
        sock->tls->sock = reinterpret_cast<uv_stream_t*>(tcp);
        sock->tls->reader = reader.get();
        sock->tls->ssl = ssl;
        sock->tls->transport = std::make_unique<TlsTransport>(*sock->tls, ssl, owner->buffers_, nullptr);
      }
    }
    tcp->data = this;
    connect_req.data = reinterpret_cast<void*>(generation);
    uv_timer_start(&timer, onTimer, static_cast<std::uint64_t>(cfg.timeout), 0);
    int rc = uv_tcp_connect(&connect_req, tcp, reinterpret_cast<const sockaddr*>(&backend->addr), onConnect);
    if (rc != 0) finish(health::CheckVerdict{health::CheckResult::kFail, std::string("connect: ") + uv_strerror(rc)});
  }

  static void onConnect(uv_connect_t* req, int status) {
    auto* tcp = reinterpret_cast<uv_tcp_t*>(req->handle);
    Check* c = static_cast<Check*>(tcp->data);
    if (!c || !c->running || c->tcp != tcp) return;
    if (status != 0) {
      c->finish(health::CheckVerdict{health::CheckResult::kFail, std::string("connect: ") + uv_strerror(status)});
      return;
    }
    uv_read_start(reinterpret_cast<uv_stream_t*>(tcp),
                  [](uv_handle_t* h, std::size_t, uv_buf_t* out) {
                    Check* c = static_cast<Check*>(h->data);
                    if (CheckTls* t = c ? c->tls() : nullptr) {
                      std::size_t len = 0;
                      char* p = t->transport->readSpace(&len);
                      *out = uv_buf_init(p, static_cast<unsigned>(len));
                    } else {
                      *out = uv_buf_init(c->buf, sizeof c->buf);
                    }
                  },
                  onRead);
    if (CheckTls* t = c->tls()) {
      c->onTls(t->transport->resume());  // the ClientHello; the request once the handshake is done
      return;
    }
    c->sendRequest();
  }

  CheckTls* tls() { return tcp ? reinterpret_cast<CheckSocket*>(tcp)->tls.get() : nullptr; }

  void sendRequest() {
    uv_buf_t b = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
    if (CheckTls* t = tls()) {
      if (t->transport->write(&b, 1) < 0) finish(health::CheckVerdict{health::CheckResult::kFail, t->failure});
      return;
    }
    write_req.data = this;
    uv_write(&write_req, reinterpret_cast<uv_stream_t*>(tcp), &b, 1, [](uv_write_t*, int) {});
  }

  // What the TLS transport made of the socket's bytes (plaintext went to the reader).
  void onTls(const Transport::Result& r) {
    CheckTls* t = tls();
    bool was_handshaking = !r.handshook && t->transport->handshaking();
    if (std::string why = t->handshakeFailure(r); !why.empty()) {
      finish(health::CheckVerdict{health::CheckResult::kFail, why});
      return;
    }
    if (r.handshook) sendRequest();
    if (!running) return;
    if (reader->done()) {
      finish(reader->verdict());
    } else if (r.eof) {
      reader->eof(was_handshaking ? "tls: connection closed during the handshake" : nullptr);
      finish(reader->verdict());
    }
  }

  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* b) {
    Check* c = static_cast<Check*>(s->data);
    if (!c || !c->running) return;
    if (nread == 0) return;
    if (CheckTls* t = c->tls(); t && (nread > 0 || nread == UV_EOF)) {
      c->onTls(nread > 0 ? t->transport->received(static_cast<std::size_t>(nread)) : t->transport->eof());
      return;
    }
    if (nread > 0) {
      if (c->reader->feed(b->base, static_cast<std::size_t>(nread))) c->finish(c->reader->verdict());
      return;
    }
    if (nread == UV_EOF) {
      c->reader->eof();
    } else {
      c->reader->eof((std::string("read: ") + uv_strerror(static_cast<int>(nread))).c_str());
    }
    c->finish(c->reader->verdict());
  }

  void closeConnection() {
    if (!tcp) return;
    tcp->data = nullptr;
    if (CheckTls* t = tls()) {
      t->reader = nullptr;  // the check is over: a late write completion finds nothing to do
      t->transport->cancel();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), [](uv_handle_t* h) { delete reinterpret_cast<CheckSocket*>(h); });
    tcp = nullptr;
  }

  void finish(const health::CheckVerdict& v) {
    running = false;
    closeConnection();
    uv_timer_stop(&timer);
    metrics::HealthResult r = v.result == health::CheckResult::kOk       ? metrics::HealthResult::kOk
                              : v.result == health::CheckResult::kTimeout ? metrics::HealthResult::kTimeout
                                                                          : metrics::HealthResult::kFail;
    owner->metrics_.backend(backend->id).healthCheck(r);
    backend->last_check_ms.store(Worker::nowWallMs(), std::memory_order_relaxed);
    const int status = reader ? reader->status() : 0;
    backend->last_check_status.store(static_cast<std::uint16_t>(status), std::memory_order_relaxed);
    backend->last_check_reason = v.ok() ? "ok" : v.reason;
    apply(v);
    schedule(jittered(health::checkInterval(cfg, state)));
  }

  void apply(const health::CheckVerdict& v) {
    std::int64_t now = Worker::nowWallMs();
    // Passive ejection: the backend is down until its time is over and then
    // until `rise` good checks in a row.
    if (backend->ejected.load(std::memory_order_relaxed)) {
      if (state.status() == health::HealthState::Status::kUp) {
        state = health::HealthState(cfg.rise, cfg.fall);
        for (std::uint32_t i = 0; i < cfg.fall; ++i) state.observe(false);
        setState(BackendState::kDown, "ejected by passive health");
      }
      if (now < backend->ejected_until_ms.load(std::memory_order_acquire)) return;
    }
    BackendState before = backend->state.load(std::memory_order_relaxed);
    health::HealthState::Transition t = state.observe(v.ok());
    if (!t.changed && before != BackendState::kDraining && before != BackendState::kRemoved) {
      // Still in step with the machine.
      return;
    }
    if (t.changed) {
      if (t.to == health::HealthState::Status::kUp) {
        health::PassiveEjector::onRecovered(*backend);
        // Slow start is for a backend coming back from down (HAProxy's
        // slowstart does the same): the first verdict at start-up, or for a
        // backend just added, leaves up_since_ms 0, i.e. full weight at once.
        // Otherwise every backend ramps together from weight 1 and configured
        // weights mean nothing for the first moments after a start.
        if (t.from == health::HealthState::Status::kDown)
          backend->up_since_ms.store(now, std::memory_order_relaxed);
      }
      setState(health::toBackendState(t.to), v.ok() ? "check passed" : v.reason);
    }
  }

  void setState(BackendState s, const std::string& reason) {
    BackendState before = backend->state.load(std::memory_order_relaxed);
    if (before == BackendState::kRemoved) return;
    if (before == s) return;
    backend->state.store(s, std::memory_order_relaxed);
    metrics::BackendMetrics& bm = owner->metrics_.backend(backend->id);
    // A drained backend shows "draining" whatever its health (see setDrain in server.cc).
    bool drained = backend->admin_drain.load(std::memory_order_relaxed);
    bm.setState(static_cast<int>(drained && s != BackendState::kRemoved ? BackendState::kDraining : s));
    bm.up.set(s == BackendState::kUp ? 1 : 0);
    log::info("backend state", {{"backend", backend->name}, {"from", balancer::toString(before)},
                                {"to", balancer::toString(s)}, {"reason", reason}});
    if (s == BackendState::kDown && before == BackendState::kUp && owner->on_down_) owner->on_down_(backend);
  }
};

HealthChecker::HealthChecker(uv_loop_t* loop, metrics::Metrics& metrics) : loop_(loop), metrics_(metrics) {}

HealthChecker::~HealthChecker() {
  for (Check* c : checks_) delete c;
}

void HealthChecker::add(Backend* b, const conf::Health& cfg) {
  Check* c = new Check(this, b, cfg);
  uv_timer_init(loop_, &c->timer);
  c->timer.data = c;
  checks_.push_back(c);
  c->schedule(0);  // the first check now: a backend is unknown until checked
}

void HealthChecker::setConfig(const conf::Health& cfg) {
  for (Check* c : checks_) {
    bool reset = c->cfg.rise != cfg.rise || c->cfg.fall != cfg.fall;
    c->cfg = cfg;
    if (reset) {
      // Keep the status; only the thresholds change.
      c->state = health::HealthState(cfg.rise, cfg.fall);
      if (c->backend->state.load() == BackendState::kUp)
        for (std::uint32_t i = 0; i < cfg.rise; ++i) c->state.observe(true);
      if (c->backend->state.load() == BackendState::kDown)
        for (std::uint32_t i = 0; i < cfg.fall; ++i) c->state.observe(false);
    }
  }
}

void HealthChecker::stop() {
  for (Check* c : checks_) {
    c->stopped = true;
    c->running = false;
    c->closeConnection();
    uv_timer_stop(&c->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer), nullptr);
  }
}

bool HealthChecker::anyUp() const {
  for (Check* c : checks_)
    if (c->backend->state.load() == BackendState::kUp) return true;
  return false;
}

}  // namespace tether::proxy
