#include "proxy/session.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "balancer/affinity_key.h"
#include "balancer/backend.h"
#include "balancer/picker.h"
#include "health/ejector.h"
#include "proxy/forward/compression.h"
#include "proxy/forward/header_policy.h"
#include "proxy/forward/retry.h"
#include "proxy/forwarded.h"
#include "proxy/http/status.h"
#include "proxy/log.h"
#include "proxy/io/tls.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

namespace tether::proxy {


namespace {

// Compressed output waiting to be written, beyond which the backend is read
// no further (backpressure).
constexpr std::size_t kMaxCompressedPending = 64 * 1024;

using balancer::Backend;
using forward::AffinityState;
using forward::Exchange;

using http::HeaderKind;
using http::HeaderList;

constexpr std::int64_t kLingerMs = 2'000;

bool idempotent(std::uint8_t m) {
  switch (m) {
    case http::kMethodGet: case http::kMethodHead: case http::kMethodOptions: case http::kMethodPut:
    case http::kMethodDelete: case http::kMethodTrace:
      return true;
    default:
      return false;
  }
}

metrics::Method metricMethod(std::uint8_t m) {
  switch (m) {
    case http::kMethodGet: return metrics::Method::kGet;
    case http::kMethodHead: return metrics::Method::kHead;
    case http::kMethodPost: return metrics::Method::kPost;
    case http::kMethodPut: return metrics::Method::kPut;
    case http::kMethodDelete: return metrics::Method::kDelete;
    case http::kMethodPatch: return metrics::Method::kPatch;
    case http::kMethodOptions: return metrics::Method::kOptions;
    case http::kMethodConnect: return metrics::Method::kConnect;
    case http::kMethodTrace: return metrics::Method::kTrace;
    default: return metrics::Method::kOther;
  }
}

// A buffer with room for `need` more bytes: a pool buffer when that is
// enough, else one from the heap, the held bytes moved along. Only while no
// write references the buffer.
void reserve(BufferPool& pool, IoBuffer& b, std::uint32_t need) {
  if (!b.data) {
    if (need <= BufferPool::kSize) {
      b.data = pool.get();
      b.cap = BufferPool::kSize;
    } else {
      b.data = static_cast<char*>(std::malloc(need));
      b.cap = need;
    }
    b.end = 0;
    return;
  }
  if (b.end + need <= b.cap) return;
  std::uint32_t cap = b.end + need;
  char* big = static_cast<char*>(std::malloc(cap));
  std::memcpy(big, b.data, b.end);
  if (b.heap()) {
    std::free(b.data);
  } else {
    pool.put(b.data);
  }
  b.data = big;
  b.cap = cap;
}

}  // namespace

// ---------------------------------------------------------------------------
// Lifetime

Session::Session(Worker& worker, const ListenerHandle& listener) : worker_(worker), listener_(listener) {
  client_ip_[0] = 0;
}

// The decoders come from the worker's pool when a request's first bytes
// arrive and go back when the connection is idle again (or a tunnel): an
// idle keep-alive connection holds none.
void Session::takeCodecs() {
  if (codecs_) return;
  codecs_ = worker_.takeCodecs();  // reset when given back
  const conf::Limits& lim = worker_.config().limits;
  http::H1Decoder::Limits req;
  req.max_head_bytes = lim.max_request_header_bytes;
  req.max_trailer_bytes = lim.max_request_header_bytes;
  req.max_body_bytes = lim.max_request_body_bytes;
  http::H1Decoder::Limits resp;
  resp.max_head_bytes = lim.max_response_header_bytes;
  resp.max_trailer_bytes = lim.max_response_header_bytes;
  codecs_->request.setLimits(req);
  codecs_->request.setBodySink(onRequestBody, this);
  codecs_->response.setLimits(resp);
  codecs_->response.setBodySink(onResponseBody, this);
}

// One exchange per request, made afresh: the first byte of a request, or an
// answer before any (a refusal). Downstream bytes already read belong to it.
Exchange& Session::openExchange() {
  if (!ex_) ex_ = worker_.makeExchange(in_.end);
  return *ex_;
}

Session::~Session() {
  worker_.cancelDeadline(this);  // (close() did; a no-op then)
  if (codecs_) worker_.giveCodecs(codecs_);
  endAffinity();
  if (ex_) worker_.destroyExchange(ex_);
}

void Session::countActive(bool on) {
  if (!ex_ || on == ex_->active_counted || !backend_) return;
  ex_->active_counted = on;
  if (on) {
    backend_->active_requests.fetch_add(1, std::memory_order_relaxed);
  } else {
    backend_->active_requests.fetch_sub(1, std::memory_order_relaxed);
    if (worker_.config().limits.max_connections_per_backend) worker_.slotFreed();
  }
}

void Session::start(uv_stream_t* server) {
  uv_loop_t* loop = worker_.loop();
  uv_tcp_init(loop, &client_);
  client_.data = this;
  ++open_handles_;
  last_activity_ = worker_.now();
  timer_deadline_ = last_activity_;
  req_started_ms_ = last_activity_;  // what an answer before any request (refusal, not TLS) logs from
  req_started_ns_ = uv_hrtime();
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
      client_family_ = 4;
      std::memcpy(client_addr_, &a->sin_addr, 4);
      inet_ntop(AF_INET, &a->sin_addr, client_ip_, sizeof client_ip_);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      client_family_ = 6;
      std::memcpy(client_addr_, &a->sin6_addr, 16);
      inet_ntop(AF_INET6, &a->sin6_addr, client_ip_, sizeof client_ip_);
    }
    client_ip_len_ = static_cast<std::uint8_t>(std::strlen(client_ip_));
  }
  std::uint64_t limit = worker_.config().limits.max_connections;
  if (limit && worker_.runtime().downstream_connections.fetch_add(1) >= limit) {
    refused_ = true;
    worker_.newRequestId(openExchange().request_id);
    log::warn("connection refused", {{"reason", "max_connections"}, {"client", std::string_view(client_ip_, client_ip_len_)}});
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
      log::error("tls: cannot create a connection", {{"client", std::string_view(client_ip_, client_ip_len_)}});
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
  if (down_write_) { down_write_->session = nullptr; down_write_ = nullptr; }
  if (up_write_) { up_write_->session = nullptr; up_write_ = nullptr; }
  if (ex_ && ex_->queued) {
    ex_->queued = false;
    worker_.dequeue(this);
  }
  if (tunnel_counted_) finishTunnelMetrics();
  countActive(false);
  endAffinity();
  if (ex_ && ex_->sse && backend_) worker_.metrics().backend(backend_->id).sse_active.dec();
  releaseUpstream(false);
  releaseBuffer(in_);
  releaseBuffer(up_in_);
  // The exchange itself stays until the session is destroyed: callers up
  // the stack may still read it.
  if (ex_) ex_->releaseBuffers();
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
    case State::kUpstream:
    case State::kExchange:
      close_after_ = true;
      break;
    case State::kTunnel:
      sendGoingAway();
      break;
    case State::kClosing:
      break;
  }
}

bool Session::tunnelTo(const Backend* b) const {
  return state_ == State::kTunnel && (b == nullptr || backend_ == b);
}

// Every edge of the diagram in session.h; anything else is our bug.
void Session::transition(State to) {
  State from = state_;
  bool ok = false;
  switch (to) {
    case State::kIdle: ok = from == State::kIdle || from == State::kExchange || from == State::kHead; break;
    case State::kHead: ok = from == State::kIdle; break;
    case State::kUpstream: ok = from == State::kHead || from == State::kUpstream || from == State::kExchange; break;
    case State::kExchange: ok = from == State::kUpstream || from == State::kHead; break;
    case State::kTunnel: ok = from == State::kExchange; break;
    case State::kClosing: ok = true; break;
  }
  if (!ok) {
    log::error("session state bug", {{"from", static_cast<int>(from)}, {"to", static_cast<int>(to)}});
    close();
    return;
  }
  state_ = to;
  if (to == State::kHead) {
    req_started_ms_ = worker_.now();
    req_started_ns_ = uv_hrtime();
  }
  timer_deadline_ = worker_.now();
  armTimer();
}

// ---------------------------------------------------------------------------
// Timers: one timer per session. Activity only stamps last_activity_; the timer
// re-arms itself for the remainder when it fires early (cheaper than
// restarting it on every read).

std::int64_t Session::deadline() const {
  const conf::Timeouts& t = worker_.config().timeouts;
  const conf::Limits& lim = worker_.config().limits;
  switch (state_) {
    case State::kIdle:
      if (transport().handshaking()) return req_started_ms_ + t.request_header;  // from the accept
      return last_activity_ + (served_ ? t.downstream_idle : t.request_header);
    case State::kHead: return req_started_ms_ + t.request_header;
    case State::kUpstream:
      if (ex_->queued) return timer_deadline_ + lim.queue_timeout;
      if (ex_->looking_up && ex_->aff) return timer_deadline_ + ex_->aff->plan->cfg.lookup_timeout;
      return bodyDeadline(timer_deadline_ + t.connect);
    case State::kExchange: {
      std::int64_t d = ex_->request_sent && !ex_->response_started ? timer_deadline_ + t.upstream_first_byte
                                                                  : last_activity_ + t.upstream_idle;
      d = bodyDeadline(d);
      if (ex_->pin_hold && ex_->aff) d = std::min(d, pinHoldDeadline());
      return d;
    }
    case State::kTunnel:
      if (tunnel_->going_away) return timer_deadline_ + t.websocket_close;
      return last_activity_ + t.tunnel_idle;
    case State::kClosing: return timer_deadline_ + kLingerMs;
  }
  return last_activity_ + t.downstream_idle;
}

// timeouts.request_body: while the request body is incomplete, a gap
// without a byte from the client is bounded too.
std::int64_t Session::bodyDeadline(std::int64_t d) const {
  std::int64_t limit = worker_.config().timeouts.request_body;
  if (ex_->request_done || limit <= 0 || !ex_->head_done) return d;
  return std::min(d, last_down_ms_ + limit);
}

std::int64_t Session::pinHoldDeadline() const { return ex_->aff->hold_since + ex_->aff->plan->cfg.lookup_timeout; }

bool Session::bodyTimedOut() const {
  std::int64_t limit = worker_.config().timeouts.request_body;
  return !ex_->request_done && ex_->head_done && limit > 0 && worker_.now() >= last_down_ms_ + limit;
}

// The timer only ever moves earlier here; a timer that fires before the
// current deadline re-arms itself (onDeadline). A request's transitions thus
// cost no timer operation in the steady state.
void Session::armTimer() {
  if (closing_) return;
  std::int64_t d = deadline();
  if (scheduled() && deadline_at <= d) return;  // it fires first and re-arms (onDeadline)
  worker_.scheduleDeadline(this, std::max(d, worker_.now()));
}

void Session::touch() { last_activity_ = worker_.now(); }

void Session::onDeadline() {
  if (closing_) return;
  if (worker_.now() < deadline()) {
    armTimer();
    return;
  }
  onTimeout();
}

void Session::onTimeout() {
  switch (state_) {
    case State::kIdle:
      if (transport().handshaking()) {
        log::debug("tls handshake timeout", {{"client", std::string_view(client_ip_, client_ip_len_)}});
        worker_.metrics().tls_handshakes_error.inc();
      }
      close();
      break;
    case State::kHead:
      log::debug("request header timeout", {{"client", std::string_view(client_ip_, client_ip_len_)}});
      worker_.metrics().request_timeouts_header.inc();
      worker_.newRequestId(ex_->request_id);
      respondError(408, "tether: request header timeout\n");
      break;
    case State::kUpstream:
      if (ex_->queued) {
        ex_->queued = false;
        ex_->queued_for = nullptr;
        worker_.dequeue(this);
        respondError(503, "tether: no backend slot within queue_timeout\n");
        break;
      }
      if (ex_->looking_up && ex_->aff) {
        // The store is slow: go on with what we know locally, then hashing.
        if (ex_->aff->ticket) worker_.pins().cancel(ex_->aff->ticket);
        ex_->aff->ticket = nullptr;
        worker_.metrics().affinityLookup(metrics::AffinityResult::kStoreError);
        std::optional<std::string> local = worker_.pins().peek(ex_->aff->store_key);
        onPinLookup(false, local ? *local : std::string());
        break;
      }
      if (bodyTimedOut()) {
        requestBodyTimeout();
        break;
      }
      onUpstreamFailure(Fault::kConnect, UV_ETIMEDOUT);
      break;
    case State::kExchange:
      if (ex_->pin_hold && ex_->aff && worker_.now() >= pinHoldDeadline()) {
        if (ex_->aff->set_ticket) worker_.pins().cancel(std::exchange(ex_->aff->set_ticket, nullptr));
        releasePinHold(metrics::PinConfirm::kTimeout);
      } else if (bodyTimedOut()) {
        requestBodyTimeout();
      } else if (ex_->request_sent && !ex_->response_started) {
        onUpstreamFailure(Fault::kFirstByteTimeout, UV_ETIMEDOUT);
      } else {
        onUpstreamFailure(Fault::kUpstreamTimeout, UV_ETIMEDOUT);
      }
      break;
    case State::kTunnel:
      tunnel_->noteCloser(metrics::ClosedBy::kTether);
      close();
      break;
    case State::kClosing:
      close();
      break;
  }
}

// The client stopped sending its body: 408, and the backend connection,
// which holds half a request, is closed.
void Session::requestBodyTimeout() {
  log::debug("request body timeout", {{"client", std::string_view(client_ip_, client_ip_len_)},
                                      {"request_id", std::string_view(ex_->request_id, ::strnlen(ex_->request_id, 32))}});
  worker_.metrics().request_timeouts_body.inc();
  releaseUpstream(false);
  if (ex_->response_head_sent) {
    close();
    return;
  }
  respondError(408, "tether: request body timeout\n");
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
    s->close();
  }
}

bool Session::wantDownstream() const {
  bool in_room = !in_.data || in_.end < in_.cap;
  switch (state_) {
    case State::kIdle:
    case State::kHead:
      return true;  // a full buffer is grown or refused in parseRequest
    case State::kUpstream:
      return in_room && !client_eof_;
    case State::kExchange:
      return in_room && !client_eof_ && !up_writing_;
    case State::kTunnel:
      if (tunnel_->going_away) return !tunnel_->client_half_closed;
      return !tunnel_->client_half_closed && !up_writing_ && in_room;
    case State::kClosing:
      return true;
  }
  return false;
}

void Session::updateReading() {
  if (closing_) return;
  bool want_down = wantDownstream();
  bool want_up = false;
  bool up_room = !up_in_.data || up_in_.end < up_in_.cap;
  switch (state_) {
    case State::kExchange:
      want_up = up_room && !down_writing_;
      break;
    case State::kTunnel:
      want_up = tunnel_->going_away ? !tunnel_->backend_half_closed : !tunnel_->backend_half_closed && !down_writing_ && up_room;
      break;
    default:
      break;
  }
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
  if (upstream_ && !upstream_->closing()) {
    upstream_->setReading(want_up);
    up_reading_ = want_up;
    // TLS records the connection decrypted no room for: handed over from
    // the worker's deferred pass, not from inside this call.
    if (want_up && upstream_->buffered()) worker_.deferTlsResume(this);
  } else {
    up_reading_ = false;
  }
}

// ---------------------------------------------------------------------------
// Writes

// Writes bufs to `to`: what the socket takes at once, and the rest in a write
// from the worker's pool, queued into `slot` (onWritten completes it); bufs
// are advanced past what went out. 0: all written; 1: a write is queued; < 0:
// the libuv error (UV_EPIPE when the queued write could not start).
int Session::sendOrQueue(uv_stream_t* to, WriteReq*& slot, bool upstream, uv_buf_t* bufs, unsigned n) {
  unsigned i = 0;
  if (int r = writeWhatFits(to, bufs, n, &i); r != 1) return r;
  slot = worker_.takeWriteReq();
  slot->session = this;
  slot->upstream = upstream;
  if (uv_write(&slot->req, to, bufs + i, n - i, onWritten) != 0) {
    worker_.giveWriteReq(slot);
    slot = nullptr;
    return UV_EPIPE;
  }
  return 1;
}

bool Session::writeDownstream(uv_buf_t* bufs, unsigned n) {
  int r = transport().write(bufs, n);
  if (r < 0) {
    close();
    return false;
  }
  if (r == 1) {
    down_writing_ = true;
    updateReading();
  }
  return true;
}

bool Session::writeUpstream(uv_buf_t* bufs, unsigned n) {
  // To an https:// backend the plaintext goes through the connection's TLS.
  int r = upstream_->tls() ? upstream_->write(bufs, n) : sendOrQueue(upstream_->stream(), up_write_, true, bufs, n);
  if (r < 0) {
    if (state_ == State::kTunnel) {
      close();
    } else {
      onUpstreamFailure(Fault::kUpstreamReset, r);
    }
    return false;
  }
  if (r == 1) {
    up_writing_ = true;
    updateReading();
  }
  return true;
}

void Session::onWritten(uv_write_t* req, int status) {
  WriteReq* wr = reinterpret_cast<WriteReq*>(req);
  Session* s = wr->session;
  bool upstream = wr->upstream;
  if (!s) {
    // The session closed first; the request's memory belongs to the worker pool,
    // which we reach through the loop's data.
    static_cast<Worker*>(req->handle->loop->data)->giveWriteReq(wr);
    return;
  }
  s->worker_.giveWriteReq(wr);
  if (upstream) {
    s->up_write_ = nullptr;
    s->onUpstreamWritten(status);
  } else {
    s->down_write_ = nullptr;
    s->transport().socketWritten(status);
  }
}

void Session::onDownstreamWritten(int status) {
  down_writing_ = false;
  if (status != 0) {
    close();
    return;
  }
  switch (state_) {
    case State::kExchange:
      afterResponseWrite();
      break;
    case State::kTunnel:
      if (up_in_.data && tunnel_->up_in_sent == up_in_.end) {
        tunnel_->up_in_sent = 0;
        releaseBuffer(up_in_);
      }
      pumpTunnel();
      break;
    case State::kClosing:
      break;
    default:
      updateReading();
  }
}

void Session::onUpstreamWritten(int status) {
  up_writing_ = false;
  if (status != 0) {
    if (state_ == State::kTunnel) {
      close();
    } else {
      onUpstreamFailure(Fault::kUpstreamReset, status);
    }
    return;
  }
  if (state_ == State::kTunnel) {
    if (in_.data && tunnel_->in_sent == in_.end) {
      tunnel_->in_sent = 0;
      releaseBuffer(in_);
    }
    pumpTunnel();
    return;
  }
  afterRequestWrite();
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
      takeCodecs();
      openExchange();
      transition(State::kHead);
      parseRequest();
      break;
    case State::kHead:
      parseRequest();
      break;
    case State::kUpstream:
    case State::kExchange:
      if (!ex_->request_done) {
        parseRequest();
        if (state_ == State::kExchange && !closing_) pumpRequest();
      }
      updateReading();
      break;
    case State::kTunnel:
      pumpTunnel();
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
    case State::kUpstream:
    case State::kExchange:
      client_eof_ = true;
      if (!ex_->request_done) {
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
    case State::kClosing:
      close();
      break;
  }
}

// A request the decoder refused: its status (400, 405, 413, 431, 505) and a
// one-line reason, or a close once a response has started.
void Session::requestParseError() {
  const http::H1Decoder& d = codecs_->request;
  int status = d.errorStatus() ? d.errorStatus() : 400;
  log::debug("bad request", {{"client", std::string_view(client_ip_, client_ip_len_)},
                             {"status", status},
                             {"reason", d.errorReason()},
                             {"error", d.errorName()}});
  if (state_ == State::kHead) worker_.newRequestId(ex_->request_id);
  if (ex_->response_head_sent) {
    close();
    return;
  }
  char why[160];
  std::snprintf(why, sizeof why, "tether: %.*s\n", static_cast<int>(d.errorReason().size()), d.errorReason().data());
  respondError(status, why);
}

void Session::parseRequest() {
  if (!codecs_) return close();  // a tunnel: no HTTP any more
  if (state_ != State::kHead) return parseRequestBody();
  http::H1Decoder& d = codecs_->request;
  std::size_t used = 0;
  http::H1Decoder::Event ev = d.execute(in_.data + ex_->parsed, in_.end - ex_->parsed, &used);
  ex_->parsed += static_cast<std::uint32_t>(used);
  if (ev == http::H1Decoder::Event::kError) return requestParseError();
  if (ev == http::H1Decoder::Event::kNeedMore) {
    // The head's bytes are in the head now: the buffer starts over.
    in_.end = ex_->parsed = 0;
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
  ex_->head_done = true;
  ex_->head_end = ex_->body_sent = ex_->parsed;
  const http::RequestHead& h = request();
  ex_->method = h.method;
  ex_->http_minor = h.version_minor;
  ex_->keep_alive = h.keep_alive;
  ex_->upgrade = h.upgrade;
  ex_->head_request = h.method == http::kMethodHead;
  ex_->req_chunked = h.framing == http::Framing::kChunked;
  int status = 0;
  const char* why = nullptr;
  if (!applyRequestPolicy(&status, &why)) {
    worker_.newRequestId(ex_->request_id);
    respondError(status, why);
    return;
  }
  // What follows the head (maybe nothing): completes a request without body,
  // and catches body errors the head alone does not show, before anything
  // is forwarded.
  parseRequestBody();
  if (done()) return;
  dispatch();
}

// Body bytes: a Content-Length body is forwarded as it is read, [body_sent,
// parsed) of in_; a chunked one is decoded and re-encoded into up_body
// (extensions dropped, trailers filtered), as far as up_body has room.
void Session::parseRequestBody() {
  http::H1Decoder& d = codecs_->request;
  for (int step = 0; !done() && !ex_->request_done && step < 64; ++step) {
    std::uint32_t len = in_.end - ex_->parsed;
    if (ex_->req_chunked) {
      if (up_writing_) return;  // up_body is being written: wait for it
      reserve(worker_.buffers(), ex_->up_body, 0);
      std::uint32_t room = ex_->up_body.cap - ex_->up_body.end;
      if (room < http::ChunkStager::kOverhead + 64) return;
      len = std::min<std::uint32_t>(len, room - http::ChunkStager::kOverhead);
      ex_->req_stager.begin(ex_->up_body.end);
      ex_->up_body.end = ex_->req_stager.dataStart();
    }
    std::size_t used = 0;
    http::H1Decoder::Event ev = d.execute(in_.data + ex_->parsed, len, &used);
    ex_->parsed += static_cast<std::uint32_t>(used);
    if (ex_->req_chunked) {
      ex_->up_body.end = ex_->req_stager.seal(ex_->up_body.data, ex_->up_body.end);
      // Decoded: the chunked bytes read are not needed again.
      if (ex_->parsed == in_.end) in_.end = ex_->parsed = ex_->body_sent = ex_->head_end = 0;
    }
    if (ev == http::H1Decoder::Event::kError) return requestParseError();
    if (ev == http::H1Decoder::Event::kComplete) {
      ex_->request_done = true;
      finishRequestBody();
      return;
    }
    if (ev == http::H1Decoder::Event::kNeedMore && ex_->parsed == in_.end) return;
  }
}

// The request's end: a chunked body gets its last chunk and its trailers.
void Session::finishRequestBody() {
  if (!ex_->req_chunked) return;
  HeaderList& t = codecs_->request.trailers();
  forward::filterTrailers(t);
  if (!appendTrailers(ex_->up_body, t)) {
    respondError(431, "tether: request trailers too large\n");
  }
}

// Appends the last chunk and `trailers` to `b` (growing it when no write
// references it). False when it cannot.
bool Session::appendTrailers(IoBuffer& b, const HeaderList& trailers) {
  std::uint32_t need = static_cast<std::uint32_t>(http::lastChunkSize(trailers));
  if (!b.data || b.end + need > b.cap) reserve(worker_.buffers(), b, need);
  if (!b.data) return false;
  b.end += static_cast<std::uint32_t>(http::writeLastChunk(trailers, b.data + b.end));
  return true;
}

void Session::onRequestBody(void* ctx, const char* data, std::size_t len) {
  Session* s = static_cast<Session*>(ctx);
  if (!s->ex_->req_chunked) return;  // forwarded from in_ as it is
  // parseRequestBody passed no more than fits.
  std::memcpy(s->ex_->up_body.data + s->ex_->up_body.end, data, len);
  s->ex_->up_body.end += static_cast<std::uint32_t>(len);
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

void Session::dispatch() {
  const conf::Config& cfg = worker_.config();
  std::string_view url = request().target;
  if (log_path_.capacity() || cfg.access_log.enabled) {
    log_path_.assign(url.substr(0, std::min<std::size_t>(url.size(), 512)));
  }
  // The request id: the client's when it sent a usable one, else ours.
  const HeaderList& h = request().headers;
  long rid = h.find(HeaderKind::kXRequestId);
  if (rid >= 0 && !h.value(static_cast<std::size_t>(rid)).empty() && h.value(static_cast<std::size_t>(rid)).size() <= sizeof ex_->request_id) {
    std::string_view v = h.value(static_cast<std::size_t>(rid));
    std::memset(ex_->request_id, 0, sizeof ex_->request_id);
    std::memcpy(ex_->request_id, v.data(), v.size());
    ex_->request_id_present = true;
  } else {
    worker_.newRequestId(ex_->request_id);
    ex_->request_id_present = false;
  }
  std::string_view path = url.substr(0, url.find('?'));
  if (serveFromCache(path)) return;
  const std::shared_ptr<const forward::AffinityPlan>* plan = worker_.affinityFor(path);
  if (plan && startAffinity(*plan)) return;  // the store answers later
  if (closing_ || backend_) return;
  bool by_client = cfg.balance == conf::Balance::kConsistentHash;
  if (by_client) {
    char text[46];
    ex_->client_hash = balancer::hashKey(clientAddress(text));
  }
  proceed(worker_.pick(std::span<const std::uint32_t>(ex_->tried, ex_->tried_count), ex_->client_hash, by_client));
}

// A request on a route with a cache: a fresh entry answers it here (304
// when its validators match), without a backend; otherwise a GET's response
// is stored as it is forwarded, if it turns out storable. The key's coding
// is the one the request negotiates, so the answer stored under it is the
// one such a client gets (compressed once, or identity when the response
// was not compressible).
bool Session::serveFromCache(std::string_view path) {
  std::size_t route = 0;
  const conf::Cache* cc = nullptr;
  forward::CacheStore* store = worker_.cacheFor(path, &route, &cc);
  if (!store) return false;
  metrics::Metrics& m = worker_.metrics();
  if (forward::requestBypass(request(), *cc) != forward::CacheBypass::kNone) {
    m.cacheRequest(metrics::Metrics::CacheResult::kBypass);
    return false;
  }
  const conf::Compression& comp = worker_.compressionFor(path);
  forward::Coding coding = comp.enabled ? forward::requestCoding(request(), comp) : forward::Coding::kIdentity;
  std::string key = forward::cacheKey(route, coding, request().target);
  // A hit is answered inside the read that brought its request; one with
  // pipelined requests behind it goes to a backend instead, so that the
  // next request is never parsed from inside this one.
  bool pipelined = in_.data && in_.end > ex_->parsed;
  std::size_t before = store->bytes();
  std::shared_ptr<const forward::CacheEntry> e = pipelined ? nullptr : store->lookup(key, worker_.now());
  worker_.cacheResized(before, store->bytes());
  if (!e) {
    m.cacheRequest(metrics::Metrics::CacheResult::kMiss);
    if (ex_->method == http::kMethodGet) {
      ex_->cache_fill = std::make_unique<forward::CacheFill>();
      ex_->cache_fill->store = store;
      ex_->cache_fill->entry = std::make_shared<forward::CacheEntry>();
      ex_->cache_fill->entry->key = std::move(key);
    }
    return false;
  }
  m.cacheRequest(metrics::Metrics::CacheResult::kHit);
  bool not_modified = forward::notModified(request(), *e);
  bool body = !not_modified && ex_->method != http::kMethodHead;
  if (!ex_->keep_alive || worker_.stopping() || !ex_->request_done) close_after_ = true;
  ex_->status = not_modified ? 304 : 200;
  ex_->cache_hit = e;
  transition(State::kUpstream);
  transition(State::kExchange);
  if (done()) return true;
  std::string head = not_modified ? "HTTP/1.1 304 Not Modified\r\n" : "HTTP/1.1 200 OK\r\n";
  head += e->fields;
  head += "Age: " + std::to_string(forward::entryAge(*e, worker_.now())) + "\r\n";
  if (!not_modified) head += "Content-Length: " + std::to_string(e->body.size()) + "\r\n";
  if (close_after_) {
    head += "Connection: close\r\n";
  } else if (ex_->http_minor == 0) {
    head += "Connection: keep-alive\r\n";
  }
  head += "X-Request-Id: ";
  head.append(ex_->request_id, ::strnlen(ex_->request_id, 32));
  head += "\r\n\r\n";
  reserve(worker_.buffers(), ex_->down_head, static_cast<std::uint32_t>(head.size()));
  std::memcpy(ex_->down_head.data, head.data(), head.size());
  ex_->down_head.end = static_cast<std::uint32_t>(head.size());
  ex_->response_head_sent = true;
  ex_->response_done = true;
  ex_->first_byte_ms = worker_.now();
  ex_->first_byte_ns = uv_hrtime();
  uv_buf_t bufs[2];
  unsigned nb = 0;
  bufs[nb++] = uv_buf_init(ex_->down_head.data, ex_->down_head.end);
  ex_->down_head_sent = ex_->down_head.end;
  if (body && !e->body.empty()) bufs[nb++] = uv_buf_init(const_cast<char*>(e->body.data()), static_cast<unsigned>(e->body.size()));
  ex_->bytes_out += ex_->down_head.end + (body ? e->body.size() : 0);
  if (!writeDownstream(bufs, nb)) return true;
  if (!down_writing_) afterResponseWrite();
  return true;
}

// The response head of a request whose answer is being stored: the fields
// the client gets, but those of this connection and this request.
void Session::cacheResponseHead(const http::ResponseHead& r, const http::ExtraFields& extra) {
  forward::CacheEntry& e = *ex_->cache_fill->entry;
  auto keep = [&e](std::string_view name, std::string_view value) {
    if (http::iequals(name, "age") || http::iequals(name, "connection") || http::iequals(name, "x-request-id") ||
        http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding") ||
        http::iequals(name, "keep-alive") || http::iequals(name, "set-cookie"))
      return;
    if (http::iequals(name, "etag")) e.etag.assign(value);
    if (http::iequals(name, "last-modified")) e.last_modified.assign(value);
    e.fields.append(name).append(": ").append(value).append("\r\n");
  };
  for (std::size_t i = 0; i < r.headers.size(); ++i)
    if (!r.headers.dropped(i)) keep(r.headers.name(i), r.headers.value(i));
  for (int i = 0; i < extra.count; ++i) keep(extra.items[i].name, extra.items[i].value);
}

// A whole response, forwarded: its entry goes into the store.
void Session::storeCached() {
  std::unique_ptr<forward::CacheFill> fill = std::move(ex_->cache_fill);
  if (!fill->ok || ex_->status != 200 || ex_->abort_when_flushed) return;
  std::int64_t now = worker_.now();
  fill->entry->body.shrink_to_fit();  // the bound counts sizes: no spare capacity is held
  fill->entry->fields.shrink_to_fit();
  fill->entry->stored_ms = now - fill->age_s * 1000;
  fill->entry->expires_ms = now + fill->lifetime_s * 1000;
  std::size_t before = fill->store->bytes();
  if (fill->store->insert(std::move(fill->entry))) worker_.metrics().cache_stored.inc();
  worker_.cacheResized(before, fill->store->bytes());
}

// The client's address after trusted_proxies (forwarded.h): what client_ip
// keys and consistent_hash use. Reads the head's X-Forwarded-For only when
// the peer is trusted.
std::string_view Session::clientAddress(char (&out)[46]) const {
  const std::vector<conf::Cidr>& trusted = worker_.config().trusted_proxies;
  PeerAddress peer{std::string_view(client_ip_, client_ip_len_), client_addr_, client_family_};
  if (!isTrusted(peer.bytes, peer.family, trusted)) return peer.text;
  const HeaderList& h = codecs_->request.request().headers;
  std::string_view xff[64];
  std::size_t n = 0;
  for (std::size_t i = 0; i < h.size() && n < std::size(xff); ++i) {
    if (h.kind(i) == HeaderKind::kXForwardedFor) xff[n++] = h.value(i);
  }
  return proxy::clientAddress(peer, std::span<const std::string_view>(xff, n), trusted, out);
}

void Session::proceed(Backend* b) {
  const std::uint64_t cap = worker_.config().limits.max_connections_per_backend;
  // Above the cap a request waits for a slot, up to queue_timeout: one whose
  // backend is decided (a pin, a placement) for a slot on that backend, the
  // others for any (every candidate was at its cap).
  if (cap && (b ? b->load() >= cap : worker_.lastPickCapped())) {
    if (worker_.enqueue(this)) {
      ex_->queued = true;
      ex_->queued_for = b;
      if (state_ != State::kUpstream) transition(State::kUpstream);
      timer_deadline_ = worker_.now();
      armTimer();
      return;
    }
    respondError(503, "tether: backends at capacity, queue full\n");
    return;
  }
  if (!b) {
    respondError(503, "tether: no backend available\n");
    return;
  }
  backend_ = b;
  countActive(true);
  connectUpstream();
}

// Finds the request's affinity key and starts its pin lookup. Returns true
// when the answer is still to come; otherwise the backend is chosen (or the
// request answered) already, or no key applies (backend_ still null).
bool Session::startAffinity(const std::shared_ptr<const forward::AffinityPlan>& plan) {
  const HeaderList& h = request().headers;
  std::vector<balancer::HeaderField>& fields = worker_.headerScratch();
  fields.clear();
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!h.dropped(i)) fields.push_back({h.name(i), h.value(i)});
  std::string_view url = request().target;
  std::size_t q = url.find('?');
  balancer::RequestView view;
  view.method = http::methodName(ex_->method);
  view.path = url.substr(0, q);
  view.query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
  view.headers = fields;
  char client_text[46];
  view.client_ip = clientAddress(client_text);

  ex_->aff = forward::startAffinity(plan, view, listener_.tls);
  if (!ex_->aff || ex_->aff->key.empty()) return false;  // none, or only a handshake to learn from
  if (!ex_->aff->set_cookie.empty()) {
    // A brand-new key: nothing to look up.
    worker_.metrics().affinityLookup(metrics::AffinityResult::kMiss);
    Backend* b = worker_.placeByHash(ex_->aff->hash, std::span<const std::uint32_t>(ex_->tried, ex_->tried_count));
    if (b) pinTo(b, false);
    proceed(b);
    return false;
  }
  ex_->looking_up = true;
  transition(State::kUpstream);
  PinTicket* t = worker_.pins().get(ex_->aff->store_key, this);
  if (ex_->aff && ex_->looking_up) ex_->aff->ticket = t;
  return true;
}

Backend* Session::slotCandidate() {
  if (ex_->queued_for) {
    const std::uint64_t cap = worker_.config().limits.max_connections_per_backend;
    return ex_->queued_for->load() < cap ? ex_->queued_for : nullptr;
  }
  bool by_client = worker_.config().balance == conf::Balance::kConsistentHash;
  return worker_.pick(std::span<const std::uint32_t>(ex_->tried, ex_->tried_count), ex_->client_hash, by_client);
}

void Session::onSlot(Backend* b) {
  if (!ex_ || !ex_->queued || closing_) return;
  ex_->queued = false;
  ex_->queued_for = nullptr;
  proceed(b);
}

void Session::onPinLookup(bool store_ok, const std::string& pinned_name) {
  if (!ex_ || !ex_->looking_up || closing_ || !ex_->aff) return;
  ex_->looking_up = false;
  ex_->aff->ticket = nullptr;
  const conf::Affinity& cfg = ex_->aff->plan->cfg;
  std::int64_t wall = Worker::nowWallMs();
  std::span<const std::uint32_t> tried(ex_->tried, ex_->tried_count);
  Backend* pinned = pinned_name.empty() ? nullptr : worker_.runtime().backends.findByName(pinned_name);
  if (pinned && pinned->available(wall)) {
    // A pin holds while its backend is up and not draining.
    if (store_ok) worker_.metrics().affinityLookup(metrics::AffinityResult::kHit);
    worker_.pins().refresh(ex_->aff->store_key, cfg.ttl);
    ex_->aff->from_pin = true;
    proceed(pinned);
    return;
  }
  if (pinned) {
    if (cfg.on_target_down == conf::OnTargetDown::kStrict) {
      respondError(503, "tether: the pinned backend is unavailable\n");
      return;
    }
    worker_.metrics().affinityLookup(metrics::AffinityResult::kRepin);
    Backend* b = worker_.placeByHash(ex_->aff->hash, tried);
    if (b) pinTo(b, true);
    proceed(b);
    return;
  }
  if (store_ok) worker_.metrics().affinityLookup(metrics::AffinityResult::kMiss);
  Backend* b = worker_.placeByHash(ex_->aff->hash, tried);
  if (b && !store_ok) {
    // No answer from the store (slow or down): the store may hold a pin we
    // could not read, made by another tether; place without replacing it.
    worker_.pins().place(ex_->aff->store_key, b->name, cfg.ttl);
  } else if (b) {
    pinTo(b, false);
  }
  proceed(b);
}

void Session::pinTo(Backend* b, bool repin) {
  if (!ex_->aff || ex_->aff->key.empty()) return;
  if (!ex_->aff->set_cookie.empty()) {
    confirmPin(ex_->aff->store_key, b->name);  // the response hands the new cookie out
  } else {
    worker_.pins().set(ex_->aff->store_key, b->name, ex_->aff->plan->cfg.ttl);
  }
  if (repin) log::info("affinity repin", {{"backend", b->name}, {"request_id", std::string_view(ex_->request_id, 32)}});
}

// The Engine.IO handshake's answer names the session id: pin it to the
// backend that issued it, so that every later poll and the upgrade find it.
void Session::sniffSid(std::string_view body) {
  balancer::EngineIoSidSniffer& sn = *ex_->aff->sniffer;
  if (ex_->status != 200) {
    ex_->aff->sniffer.reset();
    return;
  }
  sn.feed(body);
  if (sn.state() == balancer::EngineIoSidSniffer::kNeedMore) return;
  if (sn.state() == balancer::EngineIoSidSniffer::kFound && backend_) {
    balancer::KeySpec spec{balancer::KeySpec::Source::kEngineIoSid, "", ""};
    std::string key = balancer::makeKey(spec, sn.sid());
    confirmPin(balancer::pinStoreKey(key), backend_->name);
    log::debug("engine.io sid pinned", {{"backend", backend_->name}});
  }
  ex_->aff->sniffer.reset();
}

// A pin this response reveals (an Engine.IO sid, an inserted cookie): the
// client may use it at once, through another tether that shares the store,
// so the response is held (pumpResponse) until the store holds the pin, for
// at most affinity.lookup_timeout. Nothing else waits for a store write.
void Session::confirmPin(const std::string& store_key, const std::string& backend) {
  if (ex_->aff->set_ticket) worker_.pins().cancel(std::exchange(ex_->aff->set_ticket, nullptr));  // a retry re-places
  ex_->pin_hold = true;
  ex_->pin_sync = true;
  ex_->aff->hold_since = worker_.now();
  PinTicket* t = worker_.pins().setConfirmed(store_key, backend, ex_->aff->plan->cfg.ttl, this);
  ex_->pin_sync = false;
  if (!t) return;  // answered already (onPinStored)
  ex_->aff->set_ticket = t;
  armTimer();
}

void Session::onPinStored(bool stored) {
  if (!ex_ || !ex_->pin_hold || closing_ || !ex_->aff) return;
  ex_->aff->set_ticket = nullptr;
  releasePinHold(stored ? metrics::PinConfirm::kStored : metrics::PinConfirm::kUnavailable);
}

void Session::releasePinHold(metrics::PinConfirm why) {
  ex_->pin_hold = false;
  worker_.metrics().pinConfirm(why);
  if (why == metrics::PinConfirm::kUnavailable) {
    // The outage itself is logged once by the store.
    log::debug("affinity pin not stored: the store is down", {{"request_id", std::string_view(ex_->request_id, 32)}});
  } else if (why == metrics::PinConfirm::kTimeout) {
    // At most a line a second per worker: a silent store would otherwise
    // log every handshake.
    thread_local std::int64_t last_ms = -1'000'000;
    thread_local std::uint64_t unlogged = 0;
    if (worker_.now() - last_ms >= 1000) {
      log::warn("affinity pin not acknowledged within lookup_timeout",
                {{"request_id", std::string_view(ex_->request_id, 32)}, {"also_since_last_line", unlogged}});
      last_ms = worker_.now();
      unlogged = 0;
    } else {
      ++unlogged;
    }
  }
  if (ex_->pin_sync) return;  // inside confirmPin: nothing was held yet
  armTimer();
  if (state_ == State::kExchange) pumpResponse();
}

void Session::endAffinity() {
  if (!ex_ || !ex_->aff) return;
  if (ex_->aff->ticket) worker_.pins().cancel(ex_->aff->ticket);
  if (ex_->aff->set_ticket) worker_.pins().cancel(ex_->aff->set_ticket);
  ex_->aff.reset();
  ex_->looking_up = false;
}

void Session::connectUpstream() {
  UpstreamConn* c = worker_.upstreams().takeIdle(*backend_);
  if (c) {
    ex_->upstream_reused = true;
    ex_->connect_us = 0;
    upstream_ = c;
    c->setOwner(this);
    if (state_ == State::kHead) {
      transition(State::kExchange);
    } else {
      transition(State::kUpstream);
      transition(State::kExchange);
    }
    onUpstreamReady();
    return;
  }
  c = worker_.upstreams().create(*backend_);
  ex_->upstream_reused = false;
  ex_->connect_us = -1;
  ex_->connect_started_ns = uv_hrtime();
  upstream_ = c;
  transition(State::kUpstream);
  int rc = c->connect(this);
  if (rc != 0) {
    onUpstreamFailure(Fault::kConnect, rc);
    return;
  }
  updateReading();  // while connecting, the client is read only as far as in_ has room
}

void Session::onUpstreamConnected(int status) {
  if (closing_) return;
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  if (status != 0) {
    onUpstreamFailure(Fault::kConnect, status);
    return;
  }
  bm.upstream_connect.observeMs(worker_.now() - timer_deadline_);
  ex_->connect_us = static_cast<std::int64_t>((uv_hrtime() - ex_->connect_started_ns) / 1000);
  bm.upstream_active.inc();
  upstream_->markConnected();
  uv_tcp_nodelay(upstream_->tcp(), 1);
  transition(State::kExchange);
  onUpstreamReady();
}

void Session::onUpstreamReady() {
  up_reading_ = false;
  ex_->head_written = false;
  ex_->body_sent = ex_->head_end;
  ex_->up_body_sent = 0;
  buildUpstreamHead();
  http::H1Decoder& d = codecs_->response;
  d.reset();
  d.expectResponseTo(ex_->method, ex_->upgrade);
  pumpRequest();
  updateReading();
}

// The request head as the backend sees it (forward/header_policy.h), for
// this attempt's backend: a retry to another one gets its own.
void Session::buildUpstreamHead() {
  const conf::Config& cfg = worker_.config();
  http::RequestHead& r = request();
  forward::UpstreamRequest in;
  in.client_ip = std::string_view(client_ip_, client_ip_len_);
  in.trusted_peer = isTrusted(client_addr_, client_family_, cfg.trusted_proxies);
  in.tls = listener_.tls;
  in.request_id = std::string_view(ex_->request_id, 32);
  in.request_id_from_client = ex_->request_id_present;
  in.backend_host = backend_ ? std::string_view(backend_->host_header) : std::string_view();
  http::ExtraFields& extra = worker_.extraFields();
  forward::upstreamRequestFields(r, in, extra, worker_.fieldScratch());
  std::uint32_t need = static_cast<std::uint32_t>(http::requestHeadSize(r, extra));
  releaseBuffer(ex_->up_head);
  reserve(worker_.buffers(), ex_->up_head, need);
  ex_->up_head.end = static_cast<std::uint32_t>(http::writeRequestHead(r, extra, ex_->up_head.data));
}

void Session::pumpRequest() {
  if (up_writing_ || closing_ || !upstream_) return;
  uv_buf_t bufs[2];
  unsigned n = 0;
  if (!ex_->head_written) {
    bufs[n++] = uv_buf_init(ex_->up_head.data, ex_->up_head.end);
    ex_->head_written = true;
  }
  if (ex_->req_chunked) {
    if (ex_->up_body.data && ex_->up_body.end > ex_->up_body_sent) {
      bufs[n++] = uv_buf_init(ex_->up_body.data + ex_->up_body_sent, ex_->up_body.end - ex_->up_body_sent);
      ex_->up_body_sent = ex_->up_body.end;
    }
  } else if (ex_->parsed > ex_->body_sent) {
    // For an upgrade request the decoder stopped at the end of the request:
    // what follows belongs to the tunnel and waits for the 101.
    bufs[n++] = uv_buf_init(in_.data + ex_->body_sent, ex_->parsed - ex_->body_sent);
    ex_->body_sent = ex_->parsed;
  }
  if (n == 0) {
    afterRequestWrite();
    return;
  }
  if (!writeUpstream(bufs, n)) return;
  if (!up_writing_) afterRequestWrite();
}

void Session::afterRequestWrite() {
  if (closing_ || state_ != State::kExchange) return;
  if (ex_->req_chunked && ex_->up_body.data && ex_->up_body_sent == ex_->up_body.end) {
    // Written: the staged chunks start over. The request can no longer be
    // replayed.
    if (ex_->up_body.end) ex_->request_trimmed = true;
    ex_->up_body.end = ex_->up_body_sent = 0;
    if (ex_->request_done) releaseBuffer(ex_->up_body);
  }
  bool body_out = ex_->req_chunked ? (!ex_->up_body.data || ex_->up_body_sent == ex_->up_body.end) : ex_->body_sent == ex_->parsed;
  if (ex_->request_done && body_out) {
    if (!ex_->request_sent) {
      ex_->request_sent = true;
      timer_deadline_ = worker_.now();
      armTimer();
    }
  } else if (!ex_->req_chunked && ex_->parsed == in_.end && ex_->body_sent == ex_->parsed && in_.end == in_.cap) {
    // Every byte read so far went upstream and the buffer is full: start it
    // over. The request can no longer be replayed.
    ex_->request_trimmed = true;
    in_.end = ex_->parsed = ex_->body_sent = ex_->head_end = ex_->req_start = 0;
  }
  if (!ex_->request_done && ex_->parsed < in_.end) {
    parseRequest();
    if (done()) return;
    bool more = ex_->req_chunked ? (ex_->up_body.data && ex_->up_body.end > ex_->up_body_sent) : ex_->parsed > ex_->body_sent;
    if (more) {
      pumpRequest();
      return;
    }
  }
  updateReading();
}

// ---------------------------------------------------------------------------
// Upstream: responses

void Session::onUpstreamAlloc(uv_buf_t* buf) {
  ensureBuffer(up_in_);
  *buf = uv_buf_init(up_in_.data + up_in_.end, up_in_.cap - up_in_.end);
}

void Session::onUpstreamRead(ssize_t nread, const uv_buf_t* buf) {
  if (closing_) return;
  if (nread > 0) {
    up_in_.end += static_cast<std::uint32_t>(nread);
    touch();
    if (state_ == State::kTunnel) {
      pumpTunnel();
      return;
    }
    ex_->up_read_filled = buf && static_cast<std::size_t>(nread) == buf->len;
    if (!ex_->response_started) {
      ex_->response_started = true;
      ex_->first_byte_ms = worker_.now();
      ex_->first_byte_ns = uv_hrtime();
      releaseBuffer(ex_->up_head);
      armTimer();
    }
    parseResponse();
    return;
  }
  if (nread == 0) {
    if (up_in_.end == 0) releaseBuffer(up_in_);
    // The socket is drained after a read that filled its buffer: the backend
    // paused, so what the encoder holds goes out now.
    if (state_ == State::kExchange && ex_ && ex_->up_read_filled) {
      ex_->up_read_filled = false;
      if (encoderFlushable()) {
        if (!compressFlush(false)) return;
        pumpResponse();
      }
    }
    return;
  }
  if (state_ == State::kTunnel) {
    if (nread == UV_EOF) {
      tunnelEof(false);
    } else {
      tunnel_->noteCloser(metrics::ClosedBy::kBackend);
      close();
    }
    return;
  }
  if (!ex_->response_started) {
    onUpstreamFailure(Fault::kUpstreamReset, static_cast<int>(nread));
    return;
  }
  // The backend is gone mid-response. A close-delimited body ends here;
  // anything else is truncated and the client must see a closed connection.
  if (nread == UV_EOF && !ex_->response_done && codecs_ && ex_->response_head_sent &&
      codecs_->response.finish() == http::H1Decoder::Event::kComplete) {
    ex_->resp_keep_alive = false;
    close_after_ = true;
    releaseUpstream(false);
    responseComplete();
    if (closing_) return;
    pumpResponse();
    return;
  }
  if (!ex_->response_done) {
    log::warn("upstream closed mid-response", {{"backend", backend_->name}, {"request_id", std::string_view(ex_->request_id, 32)}});
    worker_.backendFailure(*backend_);
    releaseUpstream(false);
    ex_->abort_when_flushed = true;
    if (!down_writing_) close();
  } else {
    releaseUpstream(false);
  }
}

void Session::parseResponse() {
  if (!codecs_) return close();  // a tunnel: no HTTP any more
  http::H1Decoder& d = codecs_->response;
  // After a head, one more step even over zero bytes: that is how a response
  // without body (204, 304, Content-Length: 0) completes.
  bool again = false;
  while (!done() && !ex_->response_done && (ex_->resp_parsed < up_in_.end || again)) {
    again = false;
    std::uint32_t len = up_in_.end - ex_->resp_parsed;
    bool compressing = ex_->zip != nullptr;
    // Not while its output is referenced by a write, nor beyond a bound while
    // it cannot be written (a pin hold): the read buffer fills and reading stops.
    if (compressing && (ex_->zip->writing || ex_->zip->out.size() >= kMaxCompressedPending)) break;
    bool staging = ex_->response_head_sent && (ex_->dechunk || ex_->rechunk) && !compressing;
    if (staging) {
      // Decoded bytes are staged in down_head; never parse more than fits,
      // and never while it is being written.
      if (down_writing_) break;
      reserve(worker_.buffers(), ex_->down_head, 0);
      std::uint32_t room = ex_->down_head.cap - ex_->down_head.end;
      if (room < http::ChunkStager::kOverhead + 64) break;  // flush first
      len = std::min<std::uint32_t>(len, room - http::ChunkStager::kOverhead);
      if (ex_->rechunk) {
        ex_->resp_stager.begin(ex_->down_head.end);
        ex_->down_head.end = ex_->resp_stager.dataStart();
      }
    }
    std::size_t used = 0;
    http::H1Decoder::Event ev = d.execute(up_in_.data + ex_->resp_parsed, len, &used);
    ex_->resp_parsed += static_cast<std::uint32_t>(used);
    if (staging) {
      if (ex_->rechunk) ex_->down_head.end = ex_->resp_stager.seal(ex_->down_head.data, ex_->down_head.end);
      ex_->resp_body_sent = ex_->resp_parsed;  // staged: nothing is forwarded from up_in_
    } else if (compressing) {
      ex_->resp_body_sent = ex_->resp_parsed;  // taken by the encoder
    }
    switch (ev) {
      case http::H1Decoder::Event::kNeedMore:
        break;
      case http::H1Decoder::Event::kHead:
        buildDownstreamHead();
        if (done()) return;
        ex_->resp_body_sent = ex_->resp_parsed;
        again = true;
        continue;
      case http::H1Decoder::Event::kComplete:
        responseComplete();
        if (done()) return;
        continue;
      case http::H1Decoder::Event::kError: {
        log::warn("bad response", {{"backend", backend_->name},
                                   {"reason", d.errorReason()},
                                   {"error", d.errorName()}});
        worker_.backendFailure(*backend_);
        releaseUpstream(false);
        if (!ex_->response_head_sent) {
          respondError(502, "tether: bad response from backend\n");
        } else {
          ex_->abort_when_flushed = true;
          if (!down_writing_) close();
        }
        return;
      }
    }
    if (ev == http::H1Decoder::Event::kNeedMore && ex_->resp_parsed == up_in_.end) break;
  }
  if (!ex_->response_done && !done() && up_in_.data && ex_->resp_parsed == up_in_.end &&
      (!ex_->response_head_sent ||
       ((ex_->dechunk || ex_->rechunk || ex_->zip) && ex_->resp_body_sent == ex_->resp_parsed))) {
    // Everything read is in a head, staged or compressed: the buffer starts over.
    up_in_.end = ex_->resp_parsed = ex_->resp_body_sent = 0;
  }
  // All that was read is taken and the read was short (the backend has no
  // more for now): what the encoder holds goes out now, so a slowly produced
  // response is not held back. After a read that filled the buffer, the next
  // read (or libuv's empty one when the socket is drained) decides.
  if (!ex_->up_read_filled && encoderFlushable() && !compressFlush(false)) return;
  pumpResponse();
}

// The response ended at its framing: a re-encoded body gets its last chunk
// and trailers; bytes beyond the framing mean the connection is not reused.
void Session::responseComplete() {
  http::H1Decoder& d = codecs_->response;
  ex_->response_done = true;
  if (d.response().status == 101) {
    ex_->upgrade_accepted = true;  // the decoder accepts a 101 only when asked
    return;
  }
  if (ex_->resp_parsed < up_in_.end) ex_->resp_extra = true;
  if (ex_->zip) {
    if (!compressFlush(true)) return;
    if (ex_->zip->chunked && ex_->zip->encoder) {  // (no encoder: a HEAD answer, no body)
      HeaderList& t = d.trailers();
      forward::filterTrailers(t);
      ex_->zip->tail.resize(http::lastChunkSize(t));
      ex_->zip->tail.resize(http::writeLastChunk(t, ex_->zip->tail.data()));
    }
    return;
  }
  if (ex_->rechunk) {
    HeaderList& t = d.trailers();
    forward::filterTrailers(t);
    if (!appendTrailers(ex_->down_head, t)) close();
  }
}

// The response head as the client sees it (forward/header_policy.h), and
// the body framing as the client can read it: as received, re-encoded as
// chunks, or de-chunked for an HTTP/1.0 client.
void Session::buildDownstreamHead() {
  http::ResponseHead& r = codecs_->response.response();
  int status = r.status;
  bool informational = r.informational();
  if (informational && ex_->http_minor == 0) return;  // no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
  if (!informational) {
    ex_->status = static_cast<std::uint16_t>(status);
    ex_->resp_keep_alive = r.keep_alive;
    switch (r.framing) {
      case http::Framing::kClose: close_after_ = true; break;
      case http::Framing::kChunked:
        if (ex_->http_minor == 0) {
          ex_->dechunk = true;
          close_after_ = true;
        } else {
          ex_->rechunk = true;
        }
        break;
      default: break;
    }
    if (!ex_->keep_alive || worker_.stopping()) close_after_ = true;
  }
  if (ex_->cache_fill && !informational) {
    ex_->cache_fill->lifetime_s = forward::storableLifetime(r, &ex_->cache_fill->age_s);
    if (ex_->cache_fill->lifetime_s < 0) ex_->cache_fill.reset();
  }
  bool add_chunked = false;  // a compressed body of another framing goes out chunked
  if (!informational && r.status != 101) startCompression(r, &add_chunked);
  forward::DownstreamResponse out;
  out.http10_client = ex_->http_minor == 0;
  out.dechunk = ex_->dechunk || (ex_->zip && !ex_->zip->chunked);  // no Transfer-Encoding to HTTP/1.0
  out.close = close_after_;
  if (ex_->aff) out.set_cookie = ex_->aff->set_cookie;
  out.request_id = std::string_view(ex_->request_id, ex_->request_id_present ? ::strnlen(ex_->request_id, 32) : 32);
  http::ExtraFields& extra = worker_.extraFields();
  if (forward::downstreamResponseFields(r, out, extra)) ex_->sse = true;
  if (ex_->zip || ex_->compress_vary) {
    forward::compressFields(r, ex_->zip ? ex_->zip->coding : forward::Coding::kIdentity, extra,
                            worker_.fieldScratch());
    if (add_chunked) extra.add("Transfer-Encoding", "chunked");
    ex_->compress_vary = false;
  }
  std::uint32_t need = static_cast<std::uint32_t>(http::responseHeadSize(r, extra));
  if (down_writing_ && ex_->down_head.data && ex_->down_head.end + need > ex_->down_head.cap) {
    // The previous head is still being written from this buffer.
    releaseUpstream(false);
    respondError(502, "tether: response heads too large\n");
    return;
  }
  reserve(worker_.buffers(), ex_->down_head, need);
  ex_->down_head.end += static_cast<std::uint32_t>(http::writeResponseHead(r, extra, ex_->down_head.data + ex_->down_head.end));
  if (ex_->cache_fill && !informational) cacheResponseHead(r, extra);
  if (!informational) {
    ex_->response_head_sent = true;
    if (ex_->sse) worker_.metrics().backend(backend_->id).sse_active.inc();
  }
}

// Whether this response's body is compressed (forward/compression.h): the
// route's settings, the response's eligibility, the request's coding. An
// eligible response always says it varies by Accept-Encoding.
void Session::startCompression(http::ResponseHead& r, bool* add_chunked) {
  std::string_view url = request().target;
  const conf::Compression& c = worker_.compressionFor(url.substr(0, url.find('?')));
  if (!c.enabled || !forward::responseEligible(r, c)) return;
  ex_->compress_vary = true;
  forward::Coding coding = forward::requestCoding(request(), c);
  if (coding == forward::Coding::kIdentity) return;
  if (ex_->method == http::kMethodHead || r.framing == http::Framing::kNone) {
    // A HEAD answer's head says what a GET would get; there is no body.
    ex_->zip = std::make_unique<forward::CompressedBody>();
    ex_->zip->coding = coding;
    ex_->zip->finished = true;
    ex_->zip->chunked = ex_->http_minor != 0;
    *add_chunked = ex_->zip->chunked && r.framing != http::Framing::kChunked;
    return;
  }
  auto encoder = forward::makeEncoder(
      coding, c.level(coding), r.framing == http::Framing::kLength ? r.content_length : 0);
  if (!encoder) {
    log::warn("compression unavailable", {{"algorithm", std::string(forward::codingToken(coding))}});
    return;  // sent as it is: Vary was still true
  }
  ex_->zip = std::make_unique<forward::CompressedBody>();
  ex_->zip->encoder = std::move(encoder);
  ex_->zip->coding = coding;
  ex_->zip->chunked = ex_->http_minor != 0;
  ex_->dechunk = ex_->rechunk = false;  // the encoder's output is framed instead
  if (!ex_->zip->chunked) close_after_ = true;  // HTTP/1.0: the body ends with the connection
  *add_chunked = ex_->zip->chunked && r.framing != http::Framing::kChunked;
  worker_.metrics().compressed_responses[static_cast<int>(coding) - 1].inc();
}

// A compressed body whose encoder may be flushed now: not finished, its
// output not referenced by a write, the session still answering.
bool Session::encoderFlushable() const {
  return ex_->zip && !ex_->zip->writing && !ex_->zip->finished && !done();
}

// Flushes (or, at the end of the body, finishes) the encoder into zip->out.
// False when the encoder failed: the connection is closed, so the client
// never takes a truncated body for a whole one.
bool Session::compressFlush(bool finish) {
  forward::CompressedBody* z = ex_->zip.get();
  if (z->finished || (!finish && z->in_bytes == 0)) return true;
  bool ok = finish ? z->encoder->finish(&z->out) : z->encoder->flush(&z->out);
  if (finish) z->finished = true;
  worker_.metrics().compression_in[static_cast<int>(z->coding) - 1].inc(z->in_bytes);
  z->in_bytes = 0;
  if (ok && !ex_->abort_when_flushed) return true;
  log::warn("compression failed", {{"backend", backend_->name}});
  releaseUpstream(false);
  close();
  return false;
}

void Session::onResponseBody(void* ctx, const char* data, std::size_t len) {
  Session* s = static_cast<Session*>(ctx);
  if (s->ex_->aff && s->ex_->aff->sniffer) s->sniffSid(std::string_view(data, len));
  if (forward::CompressedBody* z = s->ex_->zip.get()) {
    z->in_bytes += len;
    if (!z->encoder->write(std::string_view(data, len), &z->out)) s->ex_->abort_when_flushed = true;
    return;
  }
  if (forward::CacheFill* f = s->ex_->cache_fill.get()) f->append(std::string_view(data, len), f->store->maxObject());
  if (!s->ex_->dechunk && !s->ex_->rechunk) return;  // forwarded from up_in_ as it is
  // parseResponse passed no more than fits.
  std::memcpy(s->ex_->down_head.data + s->ex_->down_head.end, data, len);
  s->ex_->down_head.end += static_cast<std::uint32_t>(len);
}

void Session::pumpResponse() {
  if (down_writing_ || closing_ || ex_->pin_hold) return;
  uv_buf_t bufs[4];
  unsigned n = 0;
  std::size_t bytes = 0;
  if (ex_->down_head.data && ex_->down_head.end > ex_->down_head_sent) {
    bufs[n++] = uv_buf_init(ex_->down_head.data + ex_->down_head_sent, ex_->down_head.end - ex_->down_head_sent);
    bytes += ex_->down_head.end - ex_->down_head_sent;
    ex_->down_head_sent = ex_->down_head.end;
  }
  if (forward::CompressedBody* z = ex_->zip.get(); z && !z->writing && (!z->out.empty() || !z->tail.empty())) {
    std::size_t zipped = z->out.size() + z->tail.size();
    if (!z->out.empty()) {
      if (forward::CacheFill* f = ex_->cache_fill.get()) f->append(z->out, f->store->maxObject());
      if (z->chunked) {
        int k = std::snprintf(z->size_line, sizeof z->size_line, "%zx\r\n", z->out.size());
        bufs[n++] = uv_buf_init(z->size_line, static_cast<unsigned>(k));
        z->out.append("\r\n");
      }
      bufs[n++] = uv_buf_init(z->out.data(), static_cast<unsigned>(z->out.size()));
    }
    if (!z->tail.empty()) bufs[n++] = uv_buf_init(z->tail.data(), static_cast<unsigned>(z->tail.size()));
    z->writing = true;
    int c = static_cast<int>(z->coding) - 1;
    worker_.metrics().compression_out[c].inc(zipped);
    bytes += zipped;
  }
  if (!ex_->dechunk && !ex_->rechunk && !ex_->zip && ex_->response_head_sent && !ex_->upgrade_accepted &&
      ex_->resp_parsed > ex_->resp_body_sent) {
    bufs[n++] = uv_buf_init(up_in_.data + ex_->resp_body_sent, ex_->resp_parsed - ex_->resp_body_sent);
    bytes += ex_->resp_parsed - ex_->resp_body_sent;
    ex_->resp_body_sent = ex_->resp_parsed;
  }
  if (n) {
    ex_->bytes_out += bytes;
    if (!writeDownstream(bufs, n)) return;
    if (down_writing_) return;
  }
  afterResponseWrite();
}

void Session::afterResponseWrite() {
  if (closing_) return;
  if (ex_->abort_when_flushed) {
    close();
    return;
  }
  if (ex_->down_head.data && ex_->down_head_sent == ex_->down_head.end) {
    ex_->down_head_sent = 0;
    releaseBuffer(ex_->down_head);
  }
  if (forward::CompressedBody* z = ex_->zip.get(); z && z->writing) {
    z->writing = false;
    z->out.clear();
    z->tail.clear();
    if (z->out.capacity() > 64 * 1024) std::string().swap(z->out);
  }
  if (up_in_.data && ex_->resp_body_sent == ex_->resp_parsed && ex_->resp_parsed == up_in_.end && !ex_->upgrade_accepted) {
    ex_->resp_body_sent = ex_->resp_parsed = 0;
    releaseBuffer(up_in_);
  }
  if (ex_->response_done) {
    if (ex_->upgrade_accepted) {
      enterTunnel();
    } else {
      finishExchange();
    }
    return;
  }
  if (up_in_.data && ex_->resp_parsed < up_in_.end) {
    parseResponse();
    return;
  }
  if (up_in_.data && up_in_.end == up_in_.cap && ex_->resp_body_sent == up_in_.end) {
    ex_->resp_body_sent = ex_->resp_parsed = 0;
    up_in_.end = 0;
  }
  // Bytes the encoder took while its output was being written, with nothing
  // more pending from the backend: flushed now, since no read may come soon.
  if (!ex_->up_read_filled && encoderFlushable() && ex_->zip->in_bytes > 0) {
    if (!compressFlush(false)) return;
    pumpResponse();
    if (closing_) return;
  }
  updateReading();
}

void Session::finishExchange() {
  const conf::Config& cfg = worker_.config();
  std::int64_t now = worker_.now();
  // Pipelined bytes already read belong to the requests that follow.
  if (in_.data && in_.end > ex_->parsed) ex_->bytes_in -= std::min<std::uint64_t>(ex_->bytes_in, in_.end - ex_->parsed);
  // An answer from the cache counts under backend="cache" and concerns no backend.
  metrics::BackendMetrics& bm = backend_ ? worker_.metrics().backend(backend_->id) : worker_.metrics().cache_answers;
  bm.request(metricMethod(ex_->method), ex_->status);
  if (ex_->upgrade && !ex_->upgrade_accepted) bm.websocketUpgrade(ex_->status);  // refused: counted with its status
  bm.request_duration.observeMs(now - req_started_ms_);
  if (ex_->first_byte_ms >= 0) bm.first_byte.observeMs(ex_->first_byte_ms - req_started_ms_);
  bm.bytes[static_cast<int>(metrics::Direction::kUpstream)].inc(ex_->bytes_in);
  bm.bytes[static_cast<int>(metrics::Direction::kDownstream)].inc(ex_->bytes_out);
  if (ex_->sse) bm.sse_active.dec();
  ex_->sse = false;
  if (!backend_) {
    // answered from the cache
  } else if (health::countsAsPassiveFailure(cfg.passive, ex_->status)) {
    worker_.backendFailure(*backend_);
  } else {
    worker_.backendSuccess(*backend_);
  }
  if (ex_->cache_fill) storeCached();
  if (cfg.access_log.enabled) logAccess();
  countActive(false);
  served_ = true;
  // A connection is reused only when the response ended exactly at its
  // framing (no stray byte a later request would read as its answer), and
  // never after an upgrade request, whatever the answer.
  bool reusable = ex_->resp_keep_alive && ex_->request_sent && !ex_->resp_extra && !ex_->upgrade &&
                  (!up_in_.data || ex_->resp_parsed == up_in_.end);
  releaseUpstream(reusable);
  // A response that ended before its request did (an early 401, 413 or
  // redirect): the rest of the request body is never read as a request.
  if (close_after_ || !ex_->keep_alive || client_eof_ || worker_.stopping() || !ex_->request_done) {
    closeGracefully();
    return;
  }
  startNextRequest();
}

void Session::startNextRequest() {
  // Keep the unparsed rest of the buffer (pipelined requests) at its start.
  if (in_.data) {
    std::uint32_t rest = in_.end - ex_->parsed;
    if (rest && ex_->parsed) std::memmove(in_.data, in_.data + ex_->parsed, rest);
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
  backend_ = nullptr;
  endAffinity();
  // Whatever the backend sent beyond the response is dropped with the
  // connection it came on: it is never read as the next answer.
  releaseBuffer(up_in_);
  // The request is over; pipelined bytes already read belong to the next
  // one, whose exchange its first byte makes.
  worker_.destroyExchange(std::exchange(ex_, nullptr));
  if (in_.end == 0) {
    worker_.giveCodecs(std::exchange(codecs_, nullptr));  // idle: no decoder held
  } else {
    codecs_->request.nextMessage();
  }
  touch();
  transition(State::kIdle);
  if (in_.end > 0) {
    onDownstreamData();
  } else {
    updateReading();
  }
}

void Session::releaseUpstream(bool reusable) {
  if (!upstream_) return;
  UpstreamConn* c = upstream_;
  upstream_ = nullptr;
  up_reading_ = false;
  if (up_write_) {
    up_write_->session = nullptr;
    up_write_ = nullptr;
    up_writing_ = false;
    reusable = false;
  }
  if (up_writing_) {  // TLS: the connection's own write is in flight
    up_writing_ = false;
    reusable = false;
  }
  c->setOwner(nullptr);
  if (reusable && !worker_.stopping()) {
    worker_.upstreams().release(c);
  } else {
    c->close();
  }
}

// One place maps a failure to a status, and decides whether to try again.
void Session::onUpstreamFailure(Fault fault, int uv_status) {
  if (closing_) return;
  Backend* b = backend_;
  bool reused = upstream_ && upstream_->reused();
  metrics::BackendMetrics& bm = worker_.metrics().backend(b->id);
  if (fault == Fault::kConnect) bm.upstream_connect_errors.inc();
  releaseUpstream(false);
  log::debug("upstream failure", {{"backend", b->name}, {"error", uv_strerror(uv_status)},
                                  {"reused", reused ? "yes" : "no"}});
  forward::Attempt a;
  a.fault = fault;
  a.response_started = ex_->response_started;
  a.request_trimmed = ex_->request_trimmed;
  a.client_eof = client_eof_;
  a.request_done = ex_->request_done;
  a.reused_connection = reused;
  a.idempotent = idempotent(ex_->method);
  a.strict_pin = ex_->aff && ex_->aff->from_pin && ex_->aff->plan->cfg.on_target_down == conf::OnTargetDown::kStrict;
  a.attempts = ex_->attempts;
  a.max_attempts = worker_.config().retries.attempts;
  forward::Retry retry = forward::decideRetry(a);
  if (retry == forward::Retry::kSameBackend) {
    // A pooled connection the backend had closed: not the backend's failure.
    ex_->retrying = true;
    ex_->head_written = false;
    ex_->request_sent = false;
    connectUpstream();
    return;
  }
  worker_.backendFailure(*b);
  if (retry == forward::Retry::kRefusePinned) {
    respondError(503, "tether: the pinned backend is unavailable\n");  // the pin stays
    return;
  }
  if (retry == forward::Retry::kOtherBackend) {
    ++ex_->attempts;
    bm.retries.inc();
    if (ex_->tried_count < 4) ex_->tried[ex_->tried_count++] = b->id;
    countActive(false);
    backend_ = nullptr;
    ex_->retrying = true;
    ex_->head_written = false;
    ex_->request_sent = false;
    std::span<const std::uint32_t> tried(ex_->tried, ex_->tried_count);
    bool by_client = worker_.config().balance == conf::Balance::kConsistentHash;
    Backend* next = ex_->aff && !ex_->aff->key.empty() ? worker_.placeByHash(ex_->aff->hash, tried)
                                               : worker_.pick(tried, ex_->client_hash, by_client);
    if (next) {
      if (ex_->aff && !ex_->aff->key.empty()) {
        worker_.metrics().affinityLookup(metrics::AffinityResult::kRepin);
        pinTo(next, true);
      }
      backend_ = next;
      countActive(true);
      connectUpstream();
      return;
    }
    backend_ = b;
  }
  if (ex_->response_head_sent) {
    close();
  } else if (forward::failureStatus(fault) == 504) {
    respondError(504, "tether: backend timed out\n");
  } else {
    respondError(502, "tether: backend unavailable\n");
  }
}

void Session::respondError(int status, const char* reason) {
  if (closing_) return;
  openExchange();  // an answer before any request has one too
  releaseUpstream(false);
  if (ex_->response_head_sent || down_writing_) {
    close();
    return;
  }
  ex_->status = static_cast<std::uint16_t>(status);
  releaseBuffer(ex_->down_head);
  ex_->down_head_sent = 0;
  ex_->dechunk = ex_->rechunk = false;
  ex_->zip.reset();
  ensureBuffer(ex_->down_head);
  std::size_t body_len = std::strlen(reason);
  std::string_view phrase = http::reasonPhrase(status);
  const char* more = status == 503 ? "Retry-After: 1\r\n"
                     : status == 405 ? "Allow: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE\r\n"
                                     : "";
  int n = std::snprintf(ex_->down_head.data, ex_->down_head.cap,
                        "HTTP/1.1 %d %.*s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %.*s\r\n%s\r\n%s",
                        status, static_cast<int>(phrase.size()), phrase.data(), body_len,
                        static_cast<int>(::strnlen(ex_->request_id, 32)), ex_->request_id, more, reason);
  ex_->down_head.end = static_cast<std::uint32_t>(n);
  ex_->bytes_out += ex_->down_head.end;
  if (backend_) worker_.metrics().backend(backend_->id).request(metricMethod(ex_->method), status);
  countActive(false);
  if (worker_.config().access_log.enabled && status != 408) {
    if (log_path_.empty() && codecs_ && ex_->head_done) log_path_.assign(request().target.substr(0, 512));
    logAccess();
  }
  backend_ = nullptr;
  ex_->head_done = false;
  uv_buf_t b = uv_buf_init(ex_->down_head.data, ex_->down_head.end);
  ex_->down_head_sent = ex_->down_head.end;
  if (!writeDownstream(&b, 1)) return;
  closeGracefully();
}

// Lingering close: shut our side down after the last byte, then drain what the
// client still sends for a moment, so that its unread bytes do not turn our
// last response into a reset.
void Session::closeGracefully() {
  if (closing_) return;
  releaseUpstream(false);
  state_ = State::kClosing;
  timer_deadline_ = worker_.now();
  armTimer();
  auto* req = new uv_shutdown_t;
  req->data = this;
  if (shutdownClient(req, onShutdown) != 0) {
    delete req;
    close();
    return;
  }
  ++open_handles_;  // the shutdown request keeps the session alive
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

void Session::logAccess() {
  // Durations in microseconds from the monotonic clock (uv_hrtime); the loop's
  // millisecond clock is too coarse for a request served in 200 us.
  std::uint64_t now_ns = uv_hrtime();
  auto sinceStart = [this](std::uint64_t ns) { return static_cast<std::int64_t>((ns - req_started_ns_) / 1000); };
  const std::string_view none("-");
  const char* protocol = ex_->method == Exchange::kNoMethod ? "-" : ex_->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  worker_.accessLog().add({{"request_id", std::string_view(ex_->request_id, ::strnlen(ex_->request_id, 32))},
                           {"client", std::string_view(client_ip_, client_ip_len_)},
                           {"method", ex_->method == Exchange::kNoMethod ? none : http::methodName(ex_->method)},
                           {"path", log_path_.empty() ? none : std::string_view(log_path_)},
                           {"protocol", protocol},
                           {"tls", transport().tlsVersion()},
                           {"status", static_cast<int>(ex_->status)},
                           {"backend", backend_ ? std::string_view(backend_->name) : ex_->cache_hit ? std::string_view("cache") : none},
                           {"bytes_in", ex_->bytes_in},
                           {"bytes_out", ex_->bytes_out},
                           AccessField::seconds("duration", sinceStart(now_ns)),
                           AccessField::seconds("ttfb", ex_->first_byte_ns ? sinceStart(ex_->first_byte_ns) : -1),
                           AccessField::seconds("upstream_connect", ex_->connect_us),
                           {"upstream_reused", ex_->upstream_reused}});
}

// ---------------------------------------------------------------------------
// Tunnel

void Session::enterTunnel() {
  tunnel_ = std::make_unique<forward::Tunnel>(worker_.now());
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  bm.websocketUpgrade(101);
  bm.websocket_active.inc();
  backend_->active_tunnels.fetch_add(1, std::memory_order_relaxed);  // before the request's slot frees
  tunnel_counted_ = true;
  countActive(false);
  if (worker_.config().access_log.enabled) logAccess();
  endAffinity();
  // Bytes the client sent behind its upgrade request, and the backend behind
  // its 101, are the tunnel's first bytes. The request is over: a tunnel
  // holds no exchange.
  tunnel_->in_sent = ex_->parsed;
  tunnel_->up_in_sent = ex_->resp_parsed;
  worker_.destroyExchange(std::exchange(ex_, nullptr));
  std::string().swap(log_path_);
  worker_.giveCodecs(codecs_);  // a tunnel parses no HTTP
  codecs_ = nullptr;
  state_ = State::kExchange;
  transition(State::kTunnel);
  pumpTunnel();
}

void Session::pumpTunnel() {
  if (closing_) return;
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  if (tunnel_->going_away) {
    // After our close frames, the peers' answers are read and dropped, but
    // watched: once the client has answered (and the backend has answered or
    // gone), the handshake is over and we, its server, close the TCP
    // connection first (RFC 6455 7.1.1) instead of waiting out websocket_close.
    if (in_.data && !up_writing_) {
      tunnel_->from_client.feed(in_.data + tunnel_->in_sent, in_.end - tunnel_->in_sent);
      in_.end = tunnel_->in_sent = 0;
      releaseBuffer(in_);
    }
    if (up_in_.data && !down_writing_) {
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
    if (!writeUpstream(&b, 1)) return;
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
  std::uint32_t m = tunnel_->from_client.messages();
  if (m != tunnel_->counted[0]) {
    bm.websocket_messages[static_cast<int>(metrics::Direction::kUpstream)].inc(m - tunnel_->counted[0]);
    tunnel_->counted[0] = m;
  }
  m = tunnel_->from_backend.messages();
  if (m != tunnel_->counted[1]) {
    bm.websocket_messages[static_cast<int>(metrics::Direction::kDownstream)].inc(m - tunnel_->counted[1]);
    tunnel_->counted[1] = m;
  }
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
  if (tunnel_->from_client.closeSeen()) {
    tunnel_->noteCloser(metrics::ClosedBy::kClient, tunnel_->from_client.closeCode());
  } else if (tunnel_->from_backend.closeSeen()) {
    tunnel_->noteCloser(metrics::ClosedBy::kBackend, tunnel_->from_backend.closeCode());
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
  // 1001 Going Away to both peers: unmasked to the client, masked to the backend
  // (RFC 6455 §5.3). Injected only between frames; otherwise once the frame in
  // flight has passed (checked again on the next pump).
  tunnel_->going_away = true;
  char frame[forward::kMaxCloseFrameBytes];
  if (!tunnel_->from_backend.frameBoundary()) {
    // The client would see a frame cut in half: closing the TCP connection is
    // the honest end (it still sees an abnormal closure, 1006).
    close();
    return;
  }
  std::size_t n = forward::buildCloseFrame(1001, "", false, 0, frame);
  writeRaw(reinterpret_cast<uv_stream_t*>(&client_), frame, n);
  if (upstream_ && tunnel_->from_client.frameBoundary()) {
    std::uint32_t key = static_cast<std::uint32_t>(worker_.now() * 2654435761u) ^ 0x5a5a1001u;
    n = forward::buildCloseFrame(1001, "", true, key, frame);
    writeRaw(upstream_->stream(), frame, n);
  }
  tunnel_->noteCloser(metrics::ClosedBy::kTether, 1001);
  timer_deadline_ = worker_.now();
  armTimer();
  updateReading();
}

void Session::finishTunnelMetrics() {
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  bm.websocket_active.dec();
  backend_->active_tunnels.fetch_sub(1, std::memory_order_relaxed);
  if (worker_.config().limits.max_connections_per_backend) worker_.slotFreed();
  bm.websocket_duration.observeMs(worker_.now() - tunnel_->started_ms);
  bm.websocketClose(tunnel_->close_code, tunnel_->close_by);
  tunnel_counted_ = false;
}

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
    worker_.newRequestId(openExchange().request_id);
    respondError(400, "tether: this port speaks TLS (https://), not plain HTTP\n");
    return;
  }
  if (r.fault == Transport::Fault::kHandshake) {
    worker_.metrics().tls_handshakes_error.inc();
    log::debug("tls: handshake failed",
               {{"client", std::string_view(client_ip_, client_ip_len_)}, {"error", transport().error()}});
    closeGracefully();
    return;
  }
  if (r.handshook) worker_.metrics().tls_handshakes_ok.inc();
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
  if (ex_) ex_->bytes_in += static_cast<std::uint64_t>(n);  // else openExchange counts them
}

int Session::socketWrite(uv_buf_t* bufs, unsigned n) {
  return sendOrQueue(reinterpret_cast<uv_stream_t*>(&client_), down_write_, false, bufs, n);
}

void Session::plainWritten(int status) { onDownstreamWritten(status); }

void Session::transportFailed(const char* what, const std::string& why) {
  log::debug(what, {{"client", std::string_view(client_ip_, client_ip_len_)}, {"error", why}});
  if (state_ == State::kTunnel) tunnel_->noteCloser(metrics::ClosedBy::kClient);
  close();
}

// Shuts the client's sending side once everything queued for it is written;
// on TLS after a close_notify. `cb` runs as uv_shutdown's would.
int Session::shutdownClient(uv_shutdown_t* req, uv_shutdown_cb cb) { return transport().shutdown(req, cb); }

void Session::onTlsResume() {
  if (closing_ || state_ == State::kClosing) return;
  if (upstream_ && up_reading_ && upstream_->buffered()) {
    upstream_->resume();
    if (closing_ || state_ == State::kClosing) return;
  }
  if (!tls_ || !wantDownstream()) return;
  onTransport(transport().resume());
}

}  // namespace tether::proxy
