#include "proxy/session.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "balancer/backend.h"
#include "proxy/forward/header_policy.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/http/status.h"
#include "proxy/io/tls.h"
#include "proxy/log.h"
#include "proxy/stream.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "proxy/write_req.h"

namespace tether::proxy {

namespace {

using http::HeaderKind;
using http::HeaderList;

constexpr std::int64_t kLingerMs = 2'000;
constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();
// HTTP/2 drain: the final GOAWAY follows the first after about a round trip
// (RFC 9113 §6.8), so that streams the client opened meanwhile are served.
constexpr std::int64_t kGoAwayStepMs = 1'000;
constexpr char kH2Preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::size_t kH2PrefaceLen = sizeof kH2Preface - 1;

}  // namespace

// ---------------------------------------------------------------------------
// Lifetime

Session::Session(Worker& worker, const ListenerHandle& listener) : worker_(worker), listener_(listener) {
  client_ip_[0] = 0;
  deadline_kind = kDeadlineSession;
  peer_.ip = std::string_view(client_ip_, 0);
  peer_.addr = client_addr_;
  peer_.tls = listener.tls;
  peer_.tls_version = "-";
}

// The decoder comes from the worker's pool when a request's first bytes
// arrive and goes back when the connection is idle again (or a tunnel).
void Session::takeDecoder() {
  if (decoder_) return;
  decoder_ = worker_.takeRequestDecoder();  // reset when given back
  const conf::Limits& lim = worker_.config().limits;
  http::H1Decoder::Limits req;
  req.max_head_bytes = lim.max_request_header_bytes;
  req.max_trailer_bytes = lim.max_request_header_bytes;
  req.max_body_bytes = lim.max_request_body_bytes;
  decoder_->setLimits(req);
  decoder_->setBodySink(onRequestBody, this);
}

// One stream per request, made afresh: the first byte of a request, or an
// answer before any (a refusal). Downstream bytes already read belong to it.
Stream& Session::openStream() {
  if (!stream_) {
    stream_ = worker_.makeStream(*this, in_.end);
    peer_.tls_version = transport().tlsVersion();
  }
  return *stream_;
}

forward::Exchange& Session::ex() { return stream_->ex(); }
const forward::Exchange& Session::ex() const { return stream_->ex(); }

http::RequestHead& Session::request() { return decoder_->request(); }

std::string_view Session::protocolName() const {
  return stream_ && stream_->ex().http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

void Session::reap() {
  if (retired_ && retired_->depth() == 0) worker_.destroyStream(std::exchange(retired_, nullptr));
}

void Session::reap(Stream* s) {
  if (retired_ == s) reap();
}

Session::~Session() {
  worker_.cancelDeadline(this);  // (close() did; a no-op then)
  h2_.reset();
  if (retired_) worker_.destroyStream(std::exchange(retired_, nullptr));
  if (stream_) worker_.destroyStream(std::exchange(stream_, nullptr));
  if (decoder_) worker_.giveRequestDecoder(decoder_);
}

void Session::start(uv_stream_t* server) {
  uv_loop_t* loop = worker_.loop();
  uv_tcp_init(loop, &client_);
  client_.data = this;
  ++open_handles_;
  last_activity_ = worker_.now();
  timer_deadline_ = last_activity_;
  req_started_ms_ = last_activity_;
  worker_.metrics().downstream_total.inc();
  worker_.metrics().downstream_active.inc();
  counted_active_ = true;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&client_)) != 0) {
    close();
    return;
  }
  uv_tcp_nodelay(&client_, 1);
  sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&client_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      peer_.family = 4;
      std::memcpy(client_addr_, &a->sin_addr, 4);
      inet_ntop(AF_INET, &a->sin_addr, client_ip_, sizeof client_ip_);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      peer_.family = 6;
      std::memcpy(client_addr_, &a->sin6_addr, 16);
      inet_ntop(AF_INET6, &a->sin6_addr, client_ip_, sizeof client_ip_);
    }
    peer_.ip = std::string_view(client_ip_, std::strlen(client_ip_));
  }
  std::uint64_t limit = worker_.config().limits.max_connections;
  if (limit && worker_.runtime().downstream_connections.fetch_add(1) >= limit) {
    refused_ = true;
    worker_.newRequestId(openStream().ex().request_id);
    log::warn("connection refused", {{"reason", "max_connections"}, {"client", peer_.ip}});
    if (listener_.tls) {
      close();  // no handshake to spend on a connection that is refused anyway
    } else {
      respondError(503, "tether: too many connections\n");
    }
    return;
  }
  if (listener_.tls) {
    std::shared_ptr<const TlsContext> ctx = worker_.runtime().tls(listener_.index);
    SSL* ssl = ctx ? ctx->newSsl() : nullptr;
    if (!ssl) {
      log::error("tls: cannot create a connection", {{"client", peer_.ip}});
      close();
      return;
    }
    TransportOwner& owner = *this;
    tls_ = std::make_unique<TlsTransport>(owner, ssl, worker_.buffers(), std::move(ctx));
  }
  transition(State::kIdle);
  updateReading();
}

void Session::close() {
  if (closing_) return;
  closing_ = true;
  state_ = State::kClosing;
  if (down_write_) { down_write_->ctx = nullptr; down_write_ = nullptr; }
  if (up_write_) { up_write_->ctx = nullptr; up_write_ = nullptr; }
  if (stream_) stream_->abort();
  if (h2_) h2_->abortAll(client_gone_ ? metrics::ClosedBy::kClient : metrics::ClosedBy::kTether);
  if (tunnel_counted_) finishTunnelMetrics();
  if (upstream_) {
    upstream_->setOwner(nullptr);
    std::exchange(upstream_, nullptr)->close();
  }
  releaseBuffer(in_);
  releaseBuffer(up_in_);
  releaseBuffer(out_);
  if (stream_) stream_->ex().releaseBuffers();
  if (counted_active_) {
    worker_.metrics().downstream_active.dec();
    if (!refused_) worker_.runtime().downstream_connections.fetch_sub(1);
    counted_active_ = false;
  }
  if (refused_) worker_.runtime().downstream_connections.fetch_sub(1);
  refused_ = false;
  worker_.cancelDeadline(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&client_), onClosed);
  transport().cancel();
}

void Session::onClosed(uv_handle_t* h) {
  Session* s = static_cast<Session*>(h->data);
  if (--s->open_handles_ == 0) {
    Worker& w = s->worker_;
    w.sessionClosed(s);  // unlinks and deletes
  }
}

void Session::goAway() {
  switch (state_) {
    case State::kIdle:
      // A kept-alive connection closes now (its client sends the next request
      // on a new one, as after any idle close). One that has not had its first
      // request yet gets it answered: its client may have sent it already, and
      // closing would lose it (request_header bounds the wait).
      if (served_) {
        close();
      } else {
        close_after_ = true;
      }
      break;
    case State::kHead:
    case State::kStream:
      close_after_ = true;
      break;
    case State::kTunnel:
      sendGoingAway();
      break;
    case State::kH2:
      if (goaway_notice_ms_ >= 0) break;
      goaway_notice_ms_ = worker_.now();
      h2_->shutdownNotice();
      armTimer();
      break;
    case State::kClosing:
      break;
  }
}

bool Session::tunnelTo(const balancer::Backend* b) const {
  return state_ == State::kTunnel && (b == nullptr || backend_ == b);
}

void Session::drainTunnels(const balancer::Backend* b) {
  if (state_ == State::kH2) {
    h2_->drainTunnels(b);
  } else if (tunnelTo(b)) {
    sendGoingAway();
  }
}

std::size_t Session::markGoAway(const balancer::Backend* b) {
  if (state_ == State::kH2) return h2_->markTunnels(b);
  return tunnelTo(b) && tunnel_->markGoAway() ? 1 : 0;
}

std::size_t Session::goAwayMarked(std::size_t n) {
  if (n == 0) return 0;
  if (state_ == State::kH2) return h2_->drainMarked(n);
  if (state_ != State::kTunnel || !tunnel_->goAwayDue()) return 0;
  sendGoingAway();
  return 1;
}

void Session::graceOver() {
  if (state_ == State::kTunnel) return;
  if (state_ == State::kH2 && h2_->tunnels() > 0) {
    h2_->abortRequests();
    return;
  }
  close();
}

// Every edge of the diagram in session.h; anything else is our bug.
void Session::transition(State to) {
  State from = state_;
  bool ok = false;
  switch (to) {
    case State::kIdle: ok = from == State::kIdle || from == State::kStream || from == State::kHead; break;
    case State::kHead: ok = from == State::kIdle; break;
    case State::kStream: ok = from == State::kHead; break;
    case State::kTunnel: ok = from == State::kStream; break;
    case State::kH2: ok = from == State::kIdle; break;
    case State::kClosing: ok = true; break;
  }
  if (!ok) {
    log::error("session state bug", {{"from", static_cast<int>(from)}, {"to", static_cast<int>(to)}});
    close();
    return;
  }
  state_ = to;
  if (to == State::kHead) req_started_ms_ = worker_.now();
  timer_deadline_ = worker_.now();
  armTimer();
}

// ---------------------------------------------------------------------------
// Deadlines: the session's own waits; a stream bounds its own.

std::int64_t Session::deadline() const {
  const conf::Timeouts& t = worker_.config().timeouts;
  switch (state_) {
    case State::kIdle:
      if (transport().handshaking()) return req_started_ms_ + t.request_header;  // from the accept
      return last_activity_ + (served_ ? t.downstream_idle : t.request_header);
    case State::kHead: return req_started_ms_ + t.request_header;
    case State::kStream: return kNoDeadline;
    case State::kTunnel:
      if (tunnel_->going_away) return timer_deadline_ + t.websocket_close;
      return last_activity_ + t.tunnel_idle;
    case State::kH2: {
      // The final GOAWAY of a drain; no stream for downstream_idle; a
      // stream's response held by a client that does not read (its window
      // stays shut) for downstream_idle.
      std::int64_t d = kNoDeadline;
      if (goaway_notice_ms_ >= 0 && !goaway_final_) d = goaway_notice_ms_ + kGoAwayStepMs;
      if (h2_->active() == 0) d = std::min(d, last_activity_ + t.downstream_idle);
      if (std::int64_t b = h2_->blockedSince(); b >= 0) d = std::min(d, b + t.downstream_idle);
      if (std::int64_t w = h2_->tunnelDeadline(); w >= 0) d = std::min(d, w);
      return d;
    }
    case State::kClosing: return timer_deadline_ + kLingerMs;
  }
  return last_activity_ + t.downstream_idle;
}

// The entry only ever moves earlier here; one that comes early re-arms
// itself (onDeadline), and one that comes while the state has no deadline
// (a stream bounds its own) lapses there. So a request costs the session no
// heap operation when it ends, and none when it starts unless its
// request_header bound is nearer than the idle one.
void Session::armTimer() {
  if (closing_) return;
  std::int64_t d = deadline();
  if (d == kNoDeadline) return;
  if (scheduled() && deadline_at <= d) return;
  worker_.scheduleDeadline(this, std::max(d, worker_.now()));
}

void Session::touch() { last_activity_ = worker_.now(); }

void Session::onDeadline() {
  reap();
  if (h2_) h2_->bury();
  if (closing_) return;
  std::int64_t d = deadline();
  if (d == kNoDeadline) return;
  if (worker_.now() < d) {
    armTimer();
    return;
  }
  onTimeout();
}

void Session::onTimeout() {
  switch (state_) {
    case State::kIdle:
      if (transport().handshaking()) {
        log::debug("tls handshake timeout", {{"client", peer_.ip}});
        worker_.metrics().tls_handshakes_error.inc();
      }
      close();
      break;
    case State::kHead:
      log::debug("request header timeout", {{"client", peer_.ip}});
      worker_.metrics().request_timeouts_header.inc();
      worker_.newRequestId(ex().request_id);
      respondError(408, "tether: request header timeout\n");
      break;
    case State::kStream:
      break;
    case State::kTunnel:
      tunnel_->noteCloser(metrics::ClosedBy::kTether);
      close();
      break;
    case State::kH2: {
      const conf::Timeouts& t = worker_.config().timeouts;
      std::int64_t now = worker_.now();
      if (goaway_notice_ms_ >= 0 && !goaway_final_ && now >= goaway_notice_ms_ + kGoAwayStepMs) {
        goaway_final_ = true;
        h2_->finalGoAway();
        if (closing_ || state_ == State::kClosing) return;
      }
      h2_->expireTunnels(now);
      if (closing_ || state_ == State::kClosing) return;
      bool idle_over = h2_->active() == 0 && now >= last_activity_ + t.downstream_idle;
      std::int64_t b = h2_->blockedSince();
      bool stalled = b >= 0 && now >= b + t.downstream_idle;
      if (!idle_over && !stalled) {
        armTimer();
        return;
      }
      if (idle_over && !stalled && !goaway_final_) {
        // Idle: a GOAWAY first, so that the client knows no stream was lost;
        // the connection closes once it is written (h2Done).
        goaway_final_ = true;
        h2_->finalGoAway();
        if (closing_ || state_ == State::kClosing) return;
        touch();
        armTimer();
        return;
      }
      log::debug("http2: idle connection closed", {{"client", peer_.ip}});
      h2_->abortAll(metrics::ClosedBy::kTether);
      closeGracefully();
      break;
    }
    case State::kClosing:
      close();
      break;
  }
}

// ---------------------------------------------------------------------------
// Buffers and reading

bool Session::ensureBuffer(IoBuffer& b) {
  if (b.data) return true;
  b.data = worker_.buffers().get();
  b.cap = BufferPool::kSize;
  b.end = 0;
  return b.data != nullptr;
}

void Session::releaseBuffer(IoBuffer& b) { b.release(worker_.buffers()); }

void Session::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  Session* s = static_cast<Session*>(h->data);
  if (s->state_ == State::kClosing || s->closing_) {
    *buf = uv_buf_init(s->worker_.discardBuffer(), 4096);
    return;
  }
  std::size_t len = 0;
  char* p = s->transport().readSpace(&len);
  *buf = uv_buf_init(p, static_cast<unsigned>(len));
}

void Session::onRead(uv_stream_t* st, ssize_t nread, const uv_buf_t*) {
  Session* s = static_cast<Session*>(st->data);
  s->reap();
  if (s->h2_) s->h2_->bury();
  if (s->state_ == State::kClosing) {
    if (nread < 0) s->close();  // lingering close: the client is done
    return;
  }
  if (nread > 0) {
    s->touch();
    s->onTransport(s->transport().received(static_cast<std::size_t>(nread)));
  } else if (nread == UV_ENOBUFS) {
    // The buffer is full (TLS: the ciphertext buffer): stop reading until
    // what it holds has moved on.
    s->updateReading();
  } else if (nread == 0) {
    if (s->in_.end == 0) s->releaseBuffer(s->in_);
  } else if (nread == UV_EOF) {
    s->onTransport(s->transport().eof());
  } else {
    if (s->state_ == State::kTunnel) s->tunnel_->noteCloser(metrics::ClosedBy::kClient);
    s->client_gone_ = true;
    s->close();
  }
}

bool Session::wantDownstream() const {
  bool in_room = !in_.data || in_.end < in_.cap;
  switch (state_) {
    case State::kIdle:
    case State::kHead:
      return !resume_pending_;  // a full buffer is grown or refused in parseRequest
    case State::kStream:
      return in_room && !client_eof_ && !(stream_ && stream_->upstreamWriting());
    case State::kTunnel:
      if (tunnel_->going_away) return !tunnel_->client_half_closed;
      return !tunnel_->client_half_closed && !up_writing_ && in_room;
    case State::kH2:
      return !h2_->codec().outputOverBound();
    case State::kClosing:
      return true;
  }
  return false;
}

void Session::updateReading() {
  if (closing_) return;
  bool want_down = wantDownstream();
  if (tls_ && state_ != State::kClosing) {
    // What the record layer holds is read without waiting for the socket; a
    // full ciphertext buffer waits for that before the socket is read again.
    if (want_down && transport().buffered()) worker_.deferTlsResume(this);
    if (!transport().readable()) want_down = false;
  }
  auto* down = reinterpret_cast<uv_stream_t*>(&client_);
  if (want_down != down_reading_) {
    if (want_down) {
      uv_read_start(down, onAlloc, onRead);
    } else {
      uv_read_stop(down);
    }
    down_reading_ = want_down;
  }
  if (state_ == State::kTunnel && upstream_ && !upstream_->closing()) {
    bool up_room = !up_in_.data || up_in_.end < up_in_.cap;
    bool want_up = tunnel_->going_away ? !tunnel_->backend_half_closed
                                       : !tunnel_->backend_half_closed && !down_writing_ && up_room;
    upstream_->setReading(want_up);
    if (want_up && upstream_->buffered()) worker_.deferTlsResume(this);
  }
}

void Session::deferResume() { worker_.deferTlsResume(this); }

// ---------------------------------------------------------------------------
// Writes

bool Session::writeDownstream(uv_buf_t* bufs, unsigned n) {
  int r = transport().write(bufs, n);
  if (r < 0) {
    client_gone_ = true;  // its socket failed
    close();
    return false;
  }
  if (r == 1) {
    down_writing_ = true;
    updateReading();
  }
  return true;
}

void Session::onDownWritten(void* ctx, int status) {
  Session* s = static_cast<Session*>(ctx);
  s->reap();
  if (s->h2_) s->h2_->bury();
  s->down_write_ = nullptr;
  s->transport().socketWritten(status);
}

void Session::onUpWritten(void* ctx, int status) {
  Session* s = static_cast<Session*>(ctx);
  s->up_write_ = nullptr;
  s->onUpstreamWritten(status);
}

void Session::onDownstreamWritten(int status) {
  down_writing_ = false;
  if (status != 0) {
    client_gone_ = true;  // its socket failed
    close();
    return;
  }
  switch (state_) {
    case State::kStream:
    case State::kHead:
      if (out_.data && out_sent_ == out_.end) {
        out_sent_ = 0;
        releaseBuffer(out_);
      }
      if (stream_) {
        stream_->onResponseWritten();
        if (closing_) return;
      }
      updateReading();
      break;
    case State::kTunnel:
      if (up_in_.data && tunnel_->up_in_sent == up_in_.end) {
        tunnel_->up_in_sent = 0;
        releaseBuffer(up_in_);
      }
      pumpTunnel();
      break;
    case State::kH2:
      h2_->written();
      if (closing_ || state_ == State::kClosing) return;
      updateReading();
      break;
    case State::kClosing:
      break;
    default:
      updateReading();
  }
}

// Writes a few bytes we made ourselves (close frames); copied if they cannot
// go out at once.
void Session::writeRaw(uv_stream_t* to, const char* data, std::size_t len) {
  if (to == reinterpret_cast<uv_stream_t*>(&client_)) {
    transport().writeOwn(data, len);
  } else if (upstream_ && to == upstream_->stream()) {
    upstream_->writeOwn(data, len);
  } else {
    writeCopied(to, data, len);
  }
}

// ---------------------------------------------------------------------------
// Downstream: request heads and bodies

void Session::onDownstreamData() {
  last_down_ms_ = worker_.now();
  switch (state_) {
    case State::kIdle:
      if (resume_pending_) return;  // the deferred pass starts it
      if (!served_ && !tls_ && listener_.h2c) {
        std::size_t n = std::min<std::size_t>(in_.end, kH2PrefaceLen);
        if (std::memcmp(in_.data, kH2Preface, n) == 0) {
          if (n < kH2PrefaceLen) return;  // maybe the preface: wait for the rest
          startH2();
          if (!closing_) feedH2();
          return;
        }
      }
      takeDecoder();
      openStream();
      transition(State::kHead);
      parseRequest();
      break;
    case State::kHead:
      parseRequest();
      break;
    case State::kStream:
      if (!ex().request_done) {
        parseRequest();
        if (done()) return;
        stream_->onRequestBody();
        if (done()) return;
      }
      updateReading();
      break;
    case State::kTunnel:
      pumpTunnel();
      break;
    case State::kH2:
      feedH2();
      break;
    case State::kClosing:
      break;
  }
}

void Session::onDownstreamEof() {
  switch (state_) {
    case State::kIdle:
    case State::kHead:
      close();
      break;
    case State::kStream:
      client_eof_ = true;
      if (!ex().request_done) {
        // The request can never complete: nothing to answer.
        close();
        return;
      }
      close_after_ = true;
      updateReading();
      break;
    case State::kTunnel:
      tunnelEof(true);
      break;
    case State::kH2:
      client_gone_ = true;
      close();  // streams in flight are cancelled: nobody reads their answers
      break;
    case State::kClosing:
      close();
      break;
  }
}

// A request the decoder refused: its status (400, 405, 413, 431, 505) and a
// one-line reason, or a close once a response has started.
void Session::requestParseError() {
  const http::H1Decoder& d = *decoder_;
  int status = d.errorStatus() ? d.errorStatus() : 400;
  log::debug("bad request", {{"client", peer_.ip},
                             {"status", status},
                             {"reason", d.errorReason()},
                             {"error", d.errorName()}});
  if (state_ == State::kHead) worker_.newRequestId(ex().request_id);
  if (ex().response_head_sent) {
    close();
    return;
  }
  char why[160];
  std::snprintf(why, sizeof why, "tether: %.*s\n", static_cast<int>(d.errorReason().size()), d.errorReason().data());
  respondError(status, why);
}

void Session::parseRequest() {
  if (!decoder_) return close();  // a tunnel: no HTTP any more
  if (state_ != State::kHead) return parseRequestBody();
  forward::Exchange& ex = this->ex();
  http::H1Decoder& d = *decoder_;
  std::size_t used = 0;
  http::H1Decoder::Event ev = d.execute(in_.data + ex.parsed, in_.end - ex.parsed, &used);
  ex.parsed += static_cast<std::uint32_t>(used);
  if (ev == http::H1Decoder::Event::kError) return requestParseError();
  if (ev == http::H1Decoder::Event::kNeedMore) {
    // The head's bytes are in the head now: the buffer starts over.
    in_.end = ex.parsed = 0;
    return;
  }
  if (ev == http::H1Decoder::Event::kComplete) {
    // An end with no head: never (the decoder moves on only after
    // nextMessage), so a bug of ours; never guess a request from it.
    log::error("session bug: request end without a head", {});
    close();
    return;
  }
  // kHead: the body, if any, starts here.
  ex.head_done = true;
  ex.head_end = ex.body_sent = ex.parsed;
  const http::RequestHead& h = request();
  ex.method = h.method;
  ex.http_minor = h.version_minor;
  ex.keep_alive = h.keep_alive;
  ex.upgrade = h.upgrade;
  ex.head_request = h.method == http::kMethodHead;
  ex.req_chunked = h.framing == http::Framing::kChunked;
  int status = 0;
  const char* why = nullptr;
  if (!applyRequestPolicy(&status, &why)) {
    worker_.newRequestId(ex.request_id);
    respondError(status, why);
    return;
  }
  // What follows the head (maybe nothing): completes a request without body,
  // and catches body errors the head alone does not show, before anything
  // is forwarded.
  parseRequestBody();
  if (done()) return;
  transition(State::kStream);
  if (done()) return;
  stream_->start();
}

// Body bytes: a Content-Length body is forwarded as it is read, [body_sent,
// parsed) of in_; a chunked one is decoded and re-encoded into up_body
// (extensions dropped, trailers filtered), as far as up_body has room.
void Session::parseRequestBody() {
  http::H1Decoder& d = *decoder_;
  forward::Exchange& ex = this->ex();
  for (int step = 0; !done() && !ex.request_done && step < 64; ++step) {
    std::uint32_t len = in_.end - ex.parsed;
    if (ex.req_chunked) {
      if (stream_->upstreamWriting()) return;  // up_body is being written: wait for it
      reserveBuffer(worker_.buffers(), ex.up_body, 0);
      std::uint32_t room = ex.up_body.cap - ex.up_body.end;
      if (room < http::ChunkStager::kOverhead + 64) return;
      len = std::min<std::uint32_t>(len, room - http::ChunkStager::kOverhead);
      ex.req_stager.begin(ex.up_body.end);
      ex.up_body.end = ex.req_stager.dataStart();
    }
    std::size_t used = 0;
    http::H1Decoder::Event ev = d.execute(in_.data + ex.parsed, len, &used);
    ex.parsed += static_cast<std::uint32_t>(used);
    if (ex.req_chunked) {
      ex.up_body.end = ex.req_stager.seal(ex.up_body.data, ex.up_body.end);
      // Decoded: the chunked bytes read are not needed again.
      if (ex.parsed == in_.end) in_.end = ex.parsed = ex.body_sent = ex.head_end = 0;
    }
    if (ev == http::H1Decoder::Event::kError) return requestParseError();
    if (ev == http::H1Decoder::Event::kComplete) {
      ex.request_done = true;
      finishRequestBody();
      return;
    }
    if (ev == http::H1Decoder::Event::kNeedMore && ex.parsed == in_.end) return;
  }
}

// The request's end: a chunked body gets its last chunk and its trailers.
void Session::finishRequestBody() {
  if (!ex().req_chunked) return;
  HeaderList& t = decoder_->trailers();
  forward::filterTrailers(t);
  if (!appendTrailers(ex().up_body, t)) {
    respondError(431, "tether: request trailers too large\n");
  }
}

// Appends the last chunk and `trailers` to `b` (growing it when no write
// references it). False when it cannot.
bool Session::appendTrailers(IoBuffer& b, const HeaderList& trailers) {
  std::uint32_t need = static_cast<std::uint32_t>(http::lastChunkSize(trailers));
  if (!b.data || b.end + need > b.cap) reserveBuffer(worker_.buffers(), b, need);
  if (!b.data) return false;
  b.end += static_cast<std::uint32_t>(http::writeLastChunk(trailers, b.data + b.end));
  return true;
}

void Session::onRequestBody(void* ctx, const char* data, std::size_t len) {
  Session* s = static_cast<Session*>(ctx);
  forward::Exchange& ex = s->ex();
  if (!ex.req_chunked) return;  // forwarded from in_ as it is
  // parseRequestBody passed no more than fits.
  std::memcpy(ex.up_body.data + ex.up_body.end, data, len);
  ex.up_body.end += static_cast<std::uint32_t>(len);
}

// Header policy that refuses or drops, on the head as decoded.
bool Session::applyRequestPolicy(int* status, const char** why) {
  if (!forward::applyUnderscorePolicy(request().headers, worker_.config().limits.headers_with_underscores)) {
    *status = 400;
    *why = "tether: header field name with an underscore\n";
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Downstream (downstream.h): the request body for the stream

unsigned Session::takeRequestBody(uv_buf_t* bufs, unsigned max) {
  if (max == 0 || !stream_) return 0;
  forward::Exchange& ex = this->ex();
  if (ex.req_chunked) {
    if (!ex.up_body.data || ex.up_body.end <= ex.up_body_sent) return 0;
    bufs[0] = uv_buf_init(ex.up_body.data + ex.up_body_sent, ex.up_body.end - ex.up_body_sent);
    ex.up_body_sent = ex.up_body.end;
    return 1;
  }
  // For an upgrade request the decoder stopped at the end of the request:
  // what follows belongs to the tunnel and waits for the 101.
  if (ex.parsed <= ex.body_sent) return 0;
  bufs[0] = uv_buf_init(in_.data + ex.body_sent, ex.parsed - ex.body_sent);
  ex.body_sent = ex.parsed;
  return 1;
}

bool Session::requestBodyReady() const {
  const forward::Exchange& ex = this->ex();
  return ex.req_chunked ? (ex.up_body.data && ex.up_body.end > ex.up_body_sent) : ex.parsed > ex.body_sent;
}

std::uint64_t Session::bytesBeyondRequest() const {
  return in_.data && in_.end > ex().parsed ? in_.end - ex().parsed : 0;
}

bool Session::requestSent() const { return ex().request_done && !requestBodyReady(); }
bool Session::requestComplete() const { return ex().request_done; }
bool Session::requestReplayable() const { return !ex().request_trimmed; }

void Session::rewindRequestBody() {
  forward::Exchange& ex = this->ex();
  ex.body_sent = ex.head_end;
  ex.up_body_sent = 0;
}

// What went upstream is written: staged chunks start over, a full buffer
// whose bytes all went starts over (the request can no longer be replayed),
// and what is read beyond is parsed.
void Session::requestBodyWritten() {
  if (done()) return;
  forward::Exchange& ex = this->ex();
  if (ex.req_chunked && ex.up_body.data && ex.up_body_sent == ex.up_body.end) {
    if (ex.up_body.end) ex.request_trimmed = true;
    ex.up_body.end = ex.up_body_sent = 0;
    if (ex.request_done) releaseBuffer(ex.up_body);
  }
  if (!ex.req_chunked && !ex.request_done && ex.parsed == in_.end && ex.body_sent == ex.parsed && in_.end == in_.cap) {
    ex.request_trimmed = true;
    in_.end = ex.parsed = ex.body_sent = ex.head_end = ex.req_start = 0;
  }
  if (!ex.request_done && ex.parsed < in_.end) parseRequest();
  if (!done()) updateReading();
}

// ---------------------------------------------------------------------------
// Downstream (downstream.h): the response, framed for HTTP/1

forward::DownstreamResponse Session::responseFraming(const http::ResponseHead& r, bool reencoded) {
  const forward::Exchange& ex = this->ex();
  forward::DownstreamResponse out;
  bool http10 = ex.http_minor == 0;
  out.http10_client = http10;
  chunked_out_ = add_te_ = false;
  if (r.status == 101) return out;
  bool body = !ex.head_request && r.framing != http::Framing::kNone;
  if (!body) {
    // A compressed HEAD answer's head says what a GET would get.
    add_te_ = reencoded && ex.head_request && !http10 && r.framing != http::Framing::kChunked;
  } else if (r.framing == http::Framing::kLength && !reencoded) {
  } else if (r.framing == http::Framing::kClose && !reencoded) {
    close_after_ = true;
  } else if (http10) {
    close_after_ = true;  // the body ends with the connection
  } else {
    chunked_out_ = true;
    add_te_ = r.framing != http::Framing::kChunked;
  }
  if (!ex.keep_alive || worker_.stopping()) close_after_ = true;
  out.close = close_after_;
  out.dechunk = !chunked_out_ && !add_te_ && r.framing == http::Framing::kChunked;
  return out;
}

bool Session::sendHead(http::ResponseHead& r, const http::ExtraFields& extra) {
  const http::ExtraFields* fields = &extra;
  http::ExtraFields with_te;
  if (add_te_ && !r.informational()) {
    with_te = extra;
    with_te.add("Transfer-Encoding", "chunked");
    fields = &with_te;
  }
  std::uint32_t need = static_cast<std::uint32_t>(http::responseHeadSize(r, *fields));
  if (down_writing_ && out_.data && out_.end + need > out_.cap) return false;  // out_ is being written
  reserveBuffer(worker_.buffers(), out_, need);
  out_.end += static_cast<std::uint32_t>(http::writeResponseHead(r, *fields, out_.data + out_.end));
  ex().bytes_out += need;
  return true;
}

// The held head bytes, as the first buffer of a write.
unsigned Session::pendingHead(uv_buf_t* bufs) {
  if (!out_.data || out_.end <= out_sent_) return 0;
  bufs[0] = uv_buf_init(out_.data + out_sent_, out_.end - out_sent_);
  out_sent_ = out_.end;
  return 1;
}

// Ends a write: true while it is queued (onResponseWritten follows), false
// when the socket took it all at once (or the connection closed).
bool Session::writeResponse(uv_buf_t* bufs, unsigned n) {
  if (n == 0) return false;
  if (!writeDownstream(bufs, n)) return false;
  if (down_writing_) return true;
  if (out_.data && out_sent_ == out_.end) {
    out_sent_ = 0;
    releaseBuffer(out_);
  }
  return false;
}

bool Session::sendBody(const char* data, std::size_t len) {
  uv_buf_t bufs[4];
  unsigned n = pendingHead(bufs);
  if (chunked_out_) {
    std::size_t k = http::writeChunkHeader(len, chunk_line_);
    bufs[n++] = uv_buf_init(chunk_line_, static_cast<unsigned>(k));
    ex().bytes_out += k + 2;
  }
  bufs[n++] = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  if (chunked_out_) bufs[n++] = uv_buf_init(const_cast<char*>("\r\n"), 2);
  return writeResponse(bufs, n);
}

bool Session::flush() {
  uv_buf_t b;
  return writeResponse(&b, pendingHead(&b));
}

bool Session::sendEnd(HeaderList* trailers) {
  if (chunked_out_) {
    HeaderList none;
    HeaderList& t = trailers ? *trailers : none;
    forward::filterTrailers(t);
    std::uint32_t before = out_.end;
    if (!appendTrailers(out_, t)) {
      close();
      return false;
    }
    ex().bytes_out += out_.end - before;
  }
  return flush();
}

std::size_t Session::localReply(int status, const char* reason) {
  if (closing_) return 0;
  if (down_writing_) {
    close();
    return 0;
  }
  releaseBuffer(out_);
  out_sent_ = 0;
  ensureBuffer(out_);
  std::size_t body_len = std::strlen(reason);
  std::string_view phrase = http::reasonPhrase(status);
  const char* more = status == 503 ? "Retry-After: 1\r\n"
                     : status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE\r\n"
                                     : "";
  const char* rid = stream_ ? stream_->ex().request_id : "";
  int n = std::snprintf(out_.data, out_.cap,
                        "HTTP/1.1 %d %.*s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %.*s\r\n%s\r\n%s",
                        status, static_cast<int>(phrase.size()), phrase.data(), body_len,
                        static_cast<int>(::strnlen(rid, 32)), rid, more, reason);
  out_.end = static_cast<std::uint32_t>(n);
  uv_buf_t b = uv_buf_init(out_.data, out_.end);
  out_sent_ = out_.end;
  if (!writeDownstream(&b, 1)) return static_cast<std::size_t>(n);
  closeGracefully();
  return static_cast<std::size_t>(n);
}

// A refusal of the session's own (a bad request, a slow head, too many
// connections, plain text on a TLS port): through the request's stream, so
// it is counted and logged like the stream's own answers.
void Session::respondError(int status, const char* reason) {
  if (closing_) return;
  openStream().answerLocally(status, reason);
  if (!closing_ && state_ != State::kClosing) closeGracefully();
}

// The stream is done: keep-alive goes on with the next request, from the
// worker's deferred pass when bytes of it are read already (never inside
// the finished stream's calls).
void Session::finished(bool) {
  served_ = true;
  retired_ = std::exchange(stream_, nullptr);
  // A response that ended before its request did (an early 401, 413 or
  // redirect): the rest of the request body is never read as a request.
  const forward::Exchange& ex = retired_->ex();
  if (close_after_ || !ex.keep_alive || client_eof_ || worker_.stopping() || !ex.request_done) {
    closeGracefully();
    return;
  }
  startNextRequest();
}

void Session::startNextRequest() {
  const forward::Exchange& ex = retired_->ex();
  // Keep the unparsed rest of the buffer (pipelined requests) at its start.
  if (in_.data) {
    std::uint32_t rest = in_.end - ex.parsed;
    if (rest && ex.parsed) std::memmove(in_.data, in_.data + ex.parsed, rest);
    in_.end = rest;
    if (in_.heap() && rest <= BufferPool::kSize) {
      char* small = worker_.buffers().get();
      std::memcpy(small, in_.data, rest);
      std::free(in_.data);
      in_.data = small;
      in_.cap = BufferPool::kSize;
    }
    if (rest == 0) releaseBuffer(in_);
  }
  releaseBuffer(out_);
  out_sent_ = 0;
  chunked_out_ = add_te_ = false;
  if (in_.end == 0) {
    worker_.giveRequestDecoder(std::exchange(decoder_, nullptr));  // idle: no decoder held
  } else {
    decoder_->nextMessage();
    resume_pending_ = true;
  }
  touch();
  transition(State::kIdle);
  // A pipelined request starts from the deferred pass, never inside the
  // finished stream's calls.
  if (resume_pending_) worker_.deferTlsResume(this);
  updateReading();
}

// Lingering close: shut our side down after the last byte, then drain what the
// client still sends for a moment, so that its unread bytes do not turn our
// last response into a reset.
void Session::closeGracefully() {
  if (closing_ || state_ == State::kClosing) return;
  if (stream_) stream_->abort();
  state_ = State::kClosing;
  timer_deadline_ = worker_.now();
  armTimer();
  auto* req = new uv_shutdown_t;
  req->data = this;
  // The shutdown request keeps the session alive, counted before the call:
  // a TLS shutdown whose close_notify cannot be written fails the transport
  // and completes the request (onShutdown) before it returns.
  ++open_handles_;
  if (shutdownClient(req, onShutdown) != 0) {
    --open_handles_;
    delete req;
    close();
    return;
  }
  if (closing_) return;
  if (!down_reading_) {
    uv_read_start(reinterpret_cast<uv_stream_t*>(&client_), onAlloc, onRead);
    down_reading_ = true;
  }
}

void Session::onShutdown(uv_shutdown_t* req, int status) {
  Session* s = static_cast<Session*>(req->data);
  delete req;
  if (status != 0 && !s->closing_) s->close();
  if (--s->open_handles_ == 0) s->worker_.sessionClosed(s);
}

// ---------------------------------------------------------------------------
// The tunnel's upstream connection

void Session::upgraded(UpstreamConn* c, IoBuffer& up_in, std::uint32_t up_off) {
  const forward::Exchange& ex = stream_->ex();
  backend_ = stream_->backend();
  upstream_ = c;
  c->setOwner(this);
  up_in_ = up_in;
  up_in = IoBuffer{};
  tunnel_ = std::make_unique<forward::Tunnel>(worker_.now());
  tunnel_counted_ = true;
  // Bytes the client sent behind its upgrade request, and the backend behind
  // its 101, are the tunnel's first bytes. The request is over: a tunnel
  // holds no stream and no decoder.
  tunnel_->in_sent = ex.parsed;
  tunnel_->up_in_sent = up_off;
  retired_ = std::exchange(stream_, nullptr);
  worker_.giveRequestDecoder(std::exchange(decoder_, nullptr));
  releaseBuffer(out_);
  out_sent_ = 0;
  transition(State::kTunnel);
  pumpTunnel();
}

void Session::onUpstreamConnected(int) {}

void Session::onUpstreamAlloc(uv_buf_t* buf) {
  ensureBuffer(up_in_);
  *buf = uv_buf_init(up_in_.data + up_in_.end, up_in_.cap - up_in_.end);
}

void Session::onUpstreamRead(ssize_t nread, const uv_buf_t*) {
  if (closing_ || state_ != State::kTunnel) return;
  if (nread > 0) {
    up_in_.end += static_cast<std::uint32_t>(nread);
    touch();
    pumpTunnel();
    return;
  }
  if (nread == 0) {
    if (up_in_.end == 0) releaseBuffer(up_in_);
    return;
  }
  if (nread == UV_EOF) {
    tunnelEof(false);
  } else {
    tunnel_->noteCloser(metrics::ClosedBy::kBackend);
    close();
  }
}

void Session::onUpstreamWritten(int status) {
  up_writing_ = false;
  if (closing_) return;
  if (status != 0) {
    close();
    return;
  }
  if (in_.data && tunnel_->in_sent == in_.end) {
    tunnel_->in_sent = 0;
    releaseBuffer(in_);
  }
  pumpTunnel();
}

bool Session::writeTunnelUpstream(uv_buf_t* bufs, unsigned n) {
  int r = upstream_->tls() ? upstream_->write(bufs, n)
                           : worker_.send(upstream_->stream(), up_write_, onUpWritten, this, bufs, n);
  if (r < 0) {
    close();
    return false;
  }
  if (r == 1) {
    up_writing_ = true;
    updateReading();
  }
  return true;
}

// ---------------------------------------------------------------------------
// Tunnel

void Session::pumpTunnel() {
  if (closing_) return;
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  if (tunnel_->going_away) {
    sendDueCloses(bm);
    if (closing_) return;
    // After our close frames, the peers' answers are read and dropped, but
    // watched: once the client has answered (and the backend has answered or
    // gone), the handshake is over and we, its server, close the TCP
    // connection first (RFC 6455 7.1.1) instead of waiting out websocket_close.
    if (in_.data && !up_writing_ && !tunnel_->close_to_backend_due) {
      tunnel_->from_client.feed(in_.data + tunnel_->in_sent, in_.end - tunnel_->in_sent);
      in_.end = tunnel_->in_sent = 0;
      releaseBuffer(in_);
    }
    if (up_in_.data && !down_writing_ && !tunnel_->close_to_client_due) {
      tunnel_->from_backend.feed(up_in_.data + tunnel_->up_in_sent, up_in_.end - tunnel_->up_in_sent);
      up_in_.end = tunnel_->up_in_sent = 0;
      releaseBuffer(up_in_);
    }
    if ((tunnel_->from_client.closeSeen() || tunnel_->client_half_closed) &&
        (tunnel_->from_backend.closeSeen() || tunnel_->backend_half_closed || !upstream_)) {
      close();
      return;
    }
    updateReading();
    return;
  }
  if (!up_writing_ && in_.data && in_.end > tunnel_->in_sent && upstream_) {
    std::uint32_t len = in_.end - tunnel_->in_sent;
    tunnel_->from_client.feed(in_.data + tunnel_->in_sent, len);
    bm.bytes[static_cast<int>(metrics::Direction::kUpstream)].inc(len);
    uv_buf_t b = uv_buf_init(in_.data + tunnel_->in_sent, len);
    tunnel_->in_sent = in_.end;
    if (!writeTunnelUpstream(&b, 1)) return;
    if (!up_writing_) {
      tunnel_->in_sent = 0;
      releaseBuffer(in_);
    }
  }
  if (!down_writing_ && up_in_.data && up_in_.end > tunnel_->up_in_sent) {
    std::uint32_t len = up_in_.end - tunnel_->up_in_sent;
    tunnel_->from_backend.feed(up_in_.data + tunnel_->up_in_sent, len);
    bm.bytes[static_cast<int>(metrics::Direction::kDownstream)].inc(len);
    uv_buf_t b = uv_buf_init(up_in_.data + tunnel_->up_in_sent, len);
    tunnel_->up_in_sent = up_in_.end;
    if (!writeDownstream(&b, 1)) return;
    if (!down_writing_) {
      tunnel_->up_in_sent = 0;
      releaseBuffer(up_in_);
    }
  }
  tunnel_->account(bm);
  // Nothing pending on a side (e.g. the upgrade request and the 101, already
  // forwarded): an idle tunnel holds no buffer.
  if (!up_writing_ && in_.data && tunnel_->in_sent == in_.end) {
    tunnel_->in_sent = 0;
    releaseBuffer(in_);
  }
  if (!down_writing_ && up_in_.data && tunnel_->up_in_sent == up_in_.end) {
    tunnel_->up_in_sent = 0;
    releaseBuffer(up_in_);
  }
  updateReading();
}

void Session::tunnelEof(bool from_client) {
  if (from_client) {
    tunnel_->client_half_closed = true;
    tunnel_->noteCloser(metrics::ClosedBy::kClient);
  } else {
    tunnel_->backend_half_closed = true;
    tunnel_->noteCloser(metrics::ClosedBy::kBackend);
  }
  if ((tunnel_->client_half_closed && tunnel_->backend_half_closed) || tunnel_->going_away) {
    if (tunnel_->client_half_closed && tunnel_->backend_half_closed) close();
    else updateReading();
    return;
  }
  // Half-close: pass the FIN on once what we hold for that side is written.
  uv_stream_t* to = from_client ? (upstream_ ? upstream_->stream() : nullptr)
                                : reinterpret_cast<uv_stream_t*>(&client_);
  if (!to) {
    close();
    return;
  }
  auto* req = new uv_shutdown_t;
  req->data = this;
  ++open_handles_;
  uv_shutdown_cb done = [](uv_shutdown_t* r, int) {
    Session* s = static_cast<Session*>(r->data);
    delete r;
    if (--s->open_handles_ == 0) s->worker_.sessionClosed(s);
  };
  if ((from_client ? upstream_->shutdown(req, done) : shutdownClient(req, done)) != 0) {
    delete req;
    --open_handles_;
    close();
    return;
  }
  updateReading();
}

void Session::sendGoingAway() {
  if (tunnel_->going_away || closing_) return;
  // 1001 Going Away to both peers: unmasked to the client, masked to the
  // backend (RFC 6455 §5.3), each between two frames of the bytes it joins.
  // A frame in flight that way is forwarded to its end first, then the 1001
  // follows it (pumpTunnel); websocket_close bounds the wait as it bounds the
  // whole close. A direction whose frames cannot be followed gets no 1001:
  // towards the client, closing the TCP connection is then the honest end
  // (it sees an abnormal closure, 1006).
  tunnel_->going_away = true;
  if (tunnel_->from_backend.invalid()) {
    close();
    return;
  }
  tunnel_->close_to_client_due = true;
  tunnel_->close_to_backend_due = upstream_ && !tunnel_->from_client.invalid();
  tunnel_->noteCloser(metrics::ClosedBy::kTether, 1001);
  timer_deadline_ = worker_.now();
  armTimer();
  pumpTunnel();
}

// Going away: a due 1001 goes as soon as its side is between frames, the
// rest of a frame in flight that way forwarded first.
void Session::sendDueCloses(metrics::BackendMetrics& bm) {
  char frame[forward::kMaxCloseFrameBytes];
  if (!upstream_) tunnel_->close_to_backend_due = false;
  if (tunnel_->close_to_backend_due && !up_writing_) {
    if (!forwardFrameRest(true, bm)) return;
    if (tunnel_->from_client.frameBoundary()) {
      std::uint32_t key = static_cast<std::uint32_t>(worker_.now() * 2654435761u) ^ 0x5a5a1001u;
      std::size_t n = forward::buildCloseFrame(1001, "", true, key, frame);
      writeRaw(upstream_->stream(), frame, n);  // behind a write in flight: writes keep their order
      tunnel_->close_to_backend_due = false;
    } else if (tunnel_->from_client.invalid()) {
      tunnel_->close_to_backend_due = false;
    }
  }
  if (tunnel_->close_to_client_due && !down_writing_) {
    if (!forwardFrameRest(false, bm)) return;
    if (tunnel_->from_backend.frameBoundary()) {
      std::size_t n = forward::buildCloseFrame(1001, "", false, 0, frame);
      writeRaw(reinterpret_cast<uv_stream_t*>(&client_), frame, n);
      tunnel_->close_to_client_due = false;
    } else if (tunnel_->from_backend.invalid()) {
      close();
      return;
    }
  }
  tunnel_->account(bm);
}

// Forwards the bytes that end the frame in flight from one side to the
// other, and none of the next; false once the connection is closed.
bool Session::forwardFrameRest(bool to_backend, metrics::BackendMetrics& bm) {
  IoBuffer& buf = to_backend ? in_ : up_in_;
  std::uint32_t& sent = to_backend ? tunnel_->in_sent : tunnel_->up_in_sent;
  forward::FrameObserver& from = to_backend ? tunnel_->from_client : tunnel_->from_backend;
  if (!buf.data || buf.end <= sent) return true;
  std::size_t n = from.feedToBoundary(buf.data + sent, buf.end - sent);
  if (n == 0) return true;
  bm.bytes[static_cast<int>(to_backend ? metrics::Direction::kUpstream : metrics::Direction::kDownstream)].inc(n);
  uv_buf_t b = uv_buf_init(buf.data + sent, static_cast<unsigned>(n));
  sent += static_cast<std::uint32_t>(n);
  if (!(to_backend ? writeTunnelUpstream(&b, 1) : writeDownstream(&b, 1))) return false;
  if (!(to_backend ? up_writing_ : down_writing_) && sent == buf.end) {
    sent = 0;
    releaseBuffer(buf);
  }
  return true;
}

void Session::finishTunnelMetrics() {
  worker_.tunnelEnded(*backend_, *tunnel_);
  tunnel_counted_ = false;
}

// ---------------------------------------------------------------------------
// HTTP/2

void Session::startH2() {
  peer_.tls_version = transport().tlsVersion();
  H2Connection::Link& link = *this;
  h2_ = std::make_unique<H2Connection>(worker_, link, peer_);
  transition(State::kH2);
  updateReading();
}

// Every plaintext byte read goes to the codec, which keeps what it needs.
void Session::feedH2() {
  if (!in_.data || in_.end == 0) return;
  std::uint32_t n = in_.end;
  in_.end = 0;
  bool ok = h2_->feed(in_.data, n);
  if (closing_ || state_ == State::kClosing) return;
  releaseBuffer(in_);
  if (!ok) {
    // A connection error: its GOAWAY goes out, then the connection closes
    // (h2Done); nothing more is read as HTTP/2.
    h2_->abortAll(metrics::ClosedBy::kClient);
    h2_->pump();
    if (closing_ || state_ == State::kClosing) return;
  }
  updateReading();
}

int Session::h2Write(const char* data, std::size_t len) {
  if (closing_ || state_ == State::kClosing) return -1;
  uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  if (!writeDownstream(&b, 1)) return -1;
  touch();
  return down_writing_ ? 1 : 0;
}

void Session::h2Done() {
  if (closing_ || state_ == State::kClosing) return;
  closeGracefully();
}

void Session::h2Defer() { worker_.deferTlsResume(this); }

void Session::h2Rearm() { armTimer(); }

// ---------------------------------------------------------------------------
// The transport

// What a read brought, in plaintext (in_), or the transport's own news.
void Session::onTransport(Transport::Result r) {
  if (closing_) return;
  if (r.fault == Transport::Fault::kNotTls) {
    // A plain-text request on a TLS port: answer it in plain text, as nginx
    // does, rather than with a bare reset.
    worker_.metrics().tls_handshakes_error.inc();
    tls_.reset();
    worker_.newRequestId(openStream().ex().request_id);
    respondError(400, "tether: this port speaks TLS (https://), not plain HTTP\n");
    return;
  }
  if (r.fault == Transport::Fault::kHandshake) {
    worker_.metrics().tls_handshakes_error.inc();
    log::debug("tls: handshake failed",
               {{"client", peer_.ip}, {"error", transport().error()}});
    closeGracefully();
    return;
  }
  if (r.handshook) {
    worker_.metrics().tls_handshakes_ok.inc();
    if (state_ == State::kIdle && !h2_ && transport().alpn() == "h2") startH2();
    if (closing_) return;
  }
  if (in_.data && in_.end == 0) releaseBuffer(in_);
  if (r.data) onDownstreamData();
  if (closing_) return;
  if (r.eof) {
    onDownstreamEof();
  } else if (tls_) {
    updateReading();  // records still held wait for the deferred resume
  }
}

bool Session::plainRoom(char** data, std::size_t* len) {
  ensureBuffer(in_);
  if (!in_.data || in_.end == in_.cap) return false;
  *data = in_.data + in_.end;
  *len = in_.cap - in_.end;
  return true;
}

void Session::plainAdded(std::size_t n) {
  in_.end += static_cast<std::uint32_t>(n);
  if (stream_) stream_->ex().bytes_in += static_cast<std::uint64_t>(n);  // else openStream counts them
}

int Session::socketWrite(uv_buf_t* bufs, unsigned n) {
  return worker_.send(reinterpret_cast<uv_stream_t*>(&client_), down_write_, onDownWritten, this, bufs, n);
}

void Session::plainWritten(int status) { onDownstreamWritten(status); }

void Session::transportFailed(const char* what, const std::string& why) {
  log::debug(what, {{"client", peer_.ip}, {"error", why}});
  if (state_ == State::kTunnel) tunnel_->noteCloser(metrics::ClosedBy::kClient);
  close();
}

// Shuts the client's sending side once everything queued for it is written;
// on TLS after a close_notify. `cb` runs as uv_shutdown's would.
int Session::shutdownClient(uv_shutdown_t* req, uv_shutdown_cb cb) { return transport().shutdown(req, cb); }

void Session::onTlsResume() {
  reap();
  if (closing_ || state_ == State::kClosing) return;
  if (h2_) {
    h2_->bury();
    h2_->resume();
    if (closing_ || state_ == State::kClosing) return;
    if (tls_ && wantDownstream()) onTransport(transport().resume());
    return;
  }
  if (resume_pending_) {
    // A pipelined request read with the previous one starts now.
    resume_pending_ = false;
    if (in_.end > 0) {
      onDownstreamData();
      if (closing_ || state_ == State::kClosing) return;
    }
  }
  if (stream_) {
    stream_->resumeUpstream();
    if (closing_ || state_ == State::kClosing) return;
  } else if (upstream_ && upstream_->buffered()) {
    upstream_->resume();
    if (closing_ || state_ == State::kClosing) return;
  }
  if (!tls_ || !wantDownstream()) return;
  onTransport(transport().resume());
}

}  // namespace tether::proxy
