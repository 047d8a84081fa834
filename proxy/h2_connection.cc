#include "proxy/h2_connection.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "balancer/backend.h"
#include "proxy/forward/header_policy.h"
#include "proxy/forward/tunnel.h"
#include "proxy/forward/websocket_frame.h"
#include "proxy/h2_settings.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/http/status.h"
#include "proxy/io/sanitizer.h"
#include "proxy/log.h"
#include "proxy/stream.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"
#include "proxy/write_req.h"

namespace tether::proxy {

namespace {

constexpr std::uint32_t kInternalError = 2;  // RST_STREAM INTERNAL_ERROR (RFC 9113 §7)

constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// A Sec-WebSocket-Key for the upstream upgrade (RFC 6455 §4.1: 16 random
// bytes, base64): an HTTP/2 client sends none (RFC 8441 §5).
std::string webSocketKey(std::uint64_t a, std::uint64_t b) {
  unsigned char raw[18] = {};
  std::memcpy(raw, &a, 8);
  std::memcpy(raw + 8, &b, 8);
  std::string out;
  for (int i = 0; i < 18; i += 3) {
    unsigned v = (raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2];
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  out.resize(22);
  out += "==";
  return out;
}

// A worker keeps what its closed streams leave, so that the next stream of
// any of its connections allocates nothing: H2Stream blocks, map nodes, and
// request heads with their storage (at most kSpares each, and no buffer of
// a head above kKeptBytes). None under AddressSanitizer, so that a pointer kept
// to a closed stream is reported instead of aliasing the next one.
#ifdef TETHER_ASAN
constexpr std::size_t kSpares = 0;
#else
constexpr std::size_t kSpares = 64;
#endif
constexpr std::size_t kKeptBytes = 4096;

struct SpareBlocks {
  std::vector<void*> blocks;
  ~SpareBlocks() {
    for (void* b : blocks) ::operator delete(b);
  }
};
thread_local SpareBlocks spare_blocks;
thread_local std::vector<std::unique_ptr<http::RequestHead>> spare_heads;

std::unique_ptr<http::RequestHead> spareHead() {
  if (spare_heads.empty()) return std::make_unique<http::RequestHead>();
  std::unique_ptr<http::RequestHead> h = std::move(spare_heads.back());
  spare_heads.pop_back();
  return h;
}

void keepHead(std::unique_ptr<http::RequestHead> h) {
  if (!h || spare_heads.size() >= kSpares) return;
  h->clearKeeping(kKeptBytes);
  spare_heads.push_back(std::move(h));
}

}  // namespace

thread_local std::vector<H2Connection::StreamMap::node_type> H2Connection::spare_nodes_;

// One request stream of the connection, as its Stream sees its downstream.
// The request body waits here, framed for HTTP/1.1 as the upstream head says
// (as it is for a length, chunked otherwise), until the backend takes it;
// the response goes to the codec as the client's window allows.
class H2Connection::H2Stream final : public Downstream, public UpstreamOwner {
 public:
  H2Stream(H2Connection& c, std::int32_t id) : head(spareHead()), c_(c), id_(id), last_byte_ms_(c.worker_.now()) {}
  ~H2Stream() {
    setPending(0);
    up_in_.release(c_.worker_.buffers());
    if (up_write_) up_write_->ctx = nullptr;
    keepHead(std::move(head));
  }
  static void* operator new(std::size_t n) {
    if (n != sizeof(H2Stream) || spare_blocks.blocks.empty()) return ::operator new(n);
    void* b = spare_blocks.blocks.back();
    spare_blocks.blocks.pop_back();
    return b;
  }
  static void operator delete(void* p, std::size_t n) {
    if (n != sizeof(H2Stream) || spare_blocks.blocks.size() >= kSpares) return ::operator delete(p);
    spare_blocks.blocks.push_back(p);
  }

  std::int32_t id() const { return id_; }
  Stream* stream = nullptr;
  std::unique_ptr<http::RequestHead> head;  // never null
  bool resume_pending = false;

  void body(const char* data, std::size_t len) {
    if (body_.capacity() < c_.codec_.settings().initial_window) body_.reserve(c_.codec_.settings().initial_window);  // never moves after
    if ((taken_ || up_taken_) && body_.size() + len > body_.capacity()) {
      // More than the window the codec enforces (never, by flow control):
      // the bytes a write references must not move.
      if (tunnel_) {
        finishTunnel(true);
      } else {
        c_.codec_.resetStream(id_, kInternalError);
        c_.cancel(*this);
      }
      return;
    }
    body_.append(data, len);
    last_byte_ms_ = c_.worker_.now();
    if (tunnel_) pumpTunnel();
  }
  void end(const http::HeaderList* trailers) {
    ended_ = true;
    if (tunnel_) {
      tunnel_->client_half_closed = true;
      tunnel_->noteCloser(metrics::ClosedBy::kClient);
      pumpTunnel();
      return;
    }
    last_byte_ms_ = c_.worker_.now();
    if (head->framing != http::Framing::kChunked || !trailers) return;
    trailers_ = *trailers;
    forward::filterTrailers(trailers_);
  }
  // The client's window opened: the rest of a body write goes on.
  void writable() {
    if (tunnel_) {
      pumpTunnel();
      return;
    }
    if (!pending_len_) return;
    std::size_t took = give(pending_, pending_len_);
    pending_ += took;
    setPending(pending_len_ - took);
    if (took) progress();
    c_.flushSoon();
    if (pending_len_ == 0) {
      blocked_since_ = -1;
      if (stream) stream->onResponseWritten();
    }
  }
  std::int64_t blockedSince() const { return pending_len_ ? blocked_since_ : -1; }

  // Downstream.
  http::RequestHead& request() override { return *head; }
  const Peer& peer() const override { return c_.peer_; }
  std::string_view protocolName() const override { return "HTTP/2"; }

  unsigned takeRequestBody(uv_buf_t* bufs, unsigned max) override {
    if (max == 0 || taken_ || upgrade) return 0;  // an upgrade's DATA is the tunnel's
    bool chunked = head->framing == http::Framing::kChunked;
    if (!body_.empty()) {
      if (!chunked) {
        bufs[0] = uv_buf_init(body_.data(), static_cast<unsigned>(body_.size()));
        taken_ = body_.size();
        return 1;
      }
      if (max < 2) return 0;
      // The previous chunk's CRLF goes before this one's size line.
      char* o = line_;
      if (chunk_open_) *o++ = '\r', *o++ = '\n';
      o += http::writeChunkHeader(body_.size(), o);
      bufs[0] = uv_buf_init(line_, static_cast<unsigned>(o - line_));
      bufs[1] = uv_buf_init(body_.data(), static_cast<unsigned>(body_.size()));
      taken_ = body_.size();
      chunk_open_ = true;
      return 2;
    }
    if (chunked && ended_ && !end_taken_) {
      std::size_t crlf = chunk_open_ ? 2 : 0;
      last_.resize(crlf + http::lastChunkSize(trailers_));
      std::memcpy(last_.data(), "\r\n", crlf);
      last_.resize(crlf + http::writeLastChunk(trailers_, last_.data() + crlf));
      bufs[0] = uv_buf_init(last_.data(), static_cast<unsigned>(last_.size()));
      end_taken_ = true;
      return 1;
    }
    return 0;
  }
  void requestBodyWritten() override {
    if (!taken_) return;
    c_.codec_.consumed(id_, taken_);
    body_.erase(0, taken_);
    taken_ = 0;
    released_ = true;
    c_.flushSoon();  // the WINDOW_UPDATE
  }
  bool requestBodyReady() const override {
    if (taken_ || upgrade) return false;
    return !body_.empty() || (head->framing == http::Framing::kChunked && ended_ && !end_taken_);
  }
  bool requestSent() const override { return upgrade || (ended_ && !taken_ && !requestBodyReady()); }
  bool requestComplete() const override { return upgrade || ended_; }
  bool requestReplayable() const override { return !released_; }
  // Called as the stream writes the upstream head for an attempt: a body
  // without content-length that has fully arrived by then (a client's
  // first flight, the common case) goes with a Content-Length, as nginx
  // sends it; some applications do not read chunked request bodies.
  void rewindRequestBody() override {
    if (released_) return;
    if (ended_ && head->framing == http::Framing::kChunked && trailers_.lineBytes() == 0 && !upgrade) {
      head->framing = http::Framing::kLength;
      head->content_length = body_.size();
      char digits[24];
      auto r = std::to_chars(digits, digits + sizeof digits, body_.size());
      head->headers.add("content-length", std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
    }
    taken_ = 0;
    end_taken_ = false;
    chunk_open_ = false;
  }
  std::uint64_t bytesBeyondRequest() const override { return 0; }
  bool clientEof() const override { return false; }
  std::int64_t lastRequestByteMs() const override { return last_byte_ms_; }

  forward::DownstreamResponse responseFraming(const http::ResponseHead& r, bool reencoded) override {
    // A body whose length is known ends with its last DATA frame, and one
    // known to be empty with the head: no empty DATA frame just to end it.
    bool length = !reencoded && r.framing == http::Framing::kLength && r.status != 101;
    resp_left_ = length ? r.content_length : kUnknown;
    no_body_ = r.status != 101 && !reencoded &&
               (r.framing == http::Framing::kNone || (length && r.content_length == 0));
    forward::DownstreamResponse out;
    out.dechunk = r.framing == http::Framing::kChunked;  // HTTP/2 frames the body itself
    return out;
  }
  bool sendHead(http::ResponseHead& r, const http::ExtraFields& extra) override {
    if (r.status == 101) {
      if (!upgrade) return false;
      // RFC 8441 §5: the codec answers 200; the handshake's own fields are
      // the upstream connection's business.
      for (std::size_t i = 0; i < r.headers.size(); ++i) {
        std::string_view n = r.headers.name(i);
        if (http::iequals(n, "sec-websocket-accept")) r.headers.drop(i);
      }
    }
    bool end = false;
    if (!r.informational()) {
      head_sent_ = true;
      end = body_ended_ = no_body_;
    }
    bool ok = c_.codec_.submitResponse(id_, r, end, &extra);
    if (ok && stream) stream->ex().bytes_out += http::responseHeadSize(r, extra);
    return ok || reset_;
  }
  bool sendBody(const char* data, std::size_t len) override {
    if (reset_ || body_ended_) return false;
    std::size_t took = give(data, len);  // (counted in bytes_out by the stream)
    progress();
    if (took < len) {
      pending_ = data + took;
      setPending(len - took);
      blocked_since_ = c_.worker_.now();
      c_.flushSoon();
      c_.link_.h2Rearm();
      return true;
    }
    c_.flushSoon();
    return false;
  }
  bool flush() override {
    c_.flushSoon();
    return false;
  }
  bool sendEnd(http::HeaderList* trailers) override {
    if (reset_) return false;
    if (body_ended_) {
      c_.flushSoon();
      return false;
    }
    body_ended_ = true;
    bool sent = false;
    if (trailers) {
      forward::filterTrailers(*trailers);
      bool any = false;
      for (std::size_t i = 0; i < trailers->size() && !any; ++i) any = !trailers->dropped(i);
      if (any) sent = c_.codec_.submitTrailers(id_, *trailers);
    }
    if (!sent) c_.codec_.sendBody(id_, nullptr, 0, true);
    c_.flushSoon();
    return false;
  }
  bool writing() const override { return pending_len_ > 0; }
  void abort() override {
    if (reset_) return;
    reset_ = true;
    setPending(0);
    c_.codec_.resetStream(id_, kInternalError);
    c_.flushSoon();
  }
  std::size_t localReply(int status, const char* reason) override {
    if (reset_) return 0;
    std::size_t body_len = std::strlen(reason);
    http::ResponseHead r;
    r.status = static_cast<std::uint16_t>(status);
    http::ExtraFields extra;
    char length[24];
    auto lr = std::to_chars(length, length + sizeof length, body_len);
    extra.add("content-type", "text/plain; charset=utf-8");
    extra.add("content-length", std::string_view(length, static_cast<std::size_t>(lr.ptr - length)));
    const char* rid = stream ? stream->ex().request_id : "";
    extra.add("x-request-id", std::string_view(rid, ::strnlen(rid, 32)));
    if (status == 503) extra.add("retry-after", "1");
    if (status == 405) extra.add("allow", "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE");
    if (!c_.codec_.submitResponse(id_, r, false, &extra)) return 0;
    head_sent_ = true;
    if (c_.codec_.sendBody(id_, reason, body_len, true) < body_len) {
      c_.codec_.resetStream(id_, kInternalError);  // a client window too small for a line
    } else if (!ended_) {
      c_.codec_.stopRequestBody(id_);  // the rest of the body is not wanted
    }
    c_.flushSoon();
    return body_len + extra.bytes() + 16;
  }
  void updateReading() override {}
  void deferResume() override {
    resume_pending = true;
    c_.resume_due_ = true;
    c_.link_.h2Defer();
  }
  // An answer that ended before its request did (an early 401 or 413 from
  // the backend): the rest of the body is not wanted.
  void finished(bool) override {
    if (!ended_ && !upgrade) c_.codec_.stopRequestBody(id_);
  }
  void reap(Stream* s) override { c_.reap(*this, s); }
  void upgraded(UpstreamConn* upstream, IoBuffer& up_in, std::uint32_t up_off) override {
    // RFC 8441: the stream is a tunnel between the client's DATA frames and
    // the upstream connection, frame-aware as an HTTP/1.1 one (tunnel.h).
    backend_ = stream ? stream->backend() : nullptr;
    up_ = upstream;
    up_->setOwner(this);
    up_in_ = up_in;
    up_in = IoBuffer{};
    up_sent_ = up_off;
    tunnel_ = std::make_unique<forward::Tunnel>(c_.worker_.now());
    tunnel_last_ = c_.worker_.now();
    ++c_.tunnels_;
    c_.link_.h2Rearm();  // timeouts.tunnel_idle
    if (ended_) tunnel_->client_half_closed = true;  // END_STREAM came with the request
    pumpTunnel();
  }

  // --- RFC 8441 tunnel ------------------------------------------------------
  bool tunneling() const { return tunnel_ != nullptr; }
  // As for an HTTP/1.1 tunnel (Session::deadline): timeouts.tunnel_idle
  // after its last byte either way, timeouts.websocket_close after our
  // 1001; -1 once it is over.
  std::int64_t tunnelDeadline(const conf::Timeouts& t) const {
    if (!tunnel_ || tunnel_done_) return -1;
    return tunnel_->going_away ? goaway_ms_ + t.websocket_close : tunnel_last_ + t.tunnel_idle;
  }
  // Its deadline passed: an idle tunnel is reset; one whose peers did not
  // finish the close handshake in time ends as one that did (its HTTP/1.1
  // counterpart's connection is closed then, not reset), unless its 1001
  // never went out whole (a frame in flight that never ended).
  void expire() {
    if (!tunnel_ || tunnel_done_) return;
    tunnel_->noteCloser(metrics::ClosedBy::kTether);
    finishTunnel(!tunnel_->going_away || !close_rest_.empty() || tunnel_->close_to_client_due);
  }
  bool tunnelTo(const balancer::Backend* b) const {
    return tunnel_ && !tunnel_done_ && !tunnel_->going_away && (!b || b == backend_);
  }
  bool markGoAway(const balancer::Backend* b) { return tunnelTo(b) && tunnel_->markGoAway(); }
  bool goAwayDue() const { return tunnel_ && !tunnel_done_ && tunnel_->goAwayDue(); }

  // The client reset the stream, or the connection is closing.
  void endTunnel(metrics::ClosedBy by) {
    if (!tunnel_ || tunnel_done_) return;
    tunnel_->noteCloser(by);
    finishTunnel(false);
  }

  // Drain: close frames 1001 both ways, each between two frames of the
  // bytes it joins (a frame in flight that way is forwarded to its end
  // first: sendDueCloses), then the tunnel ends when both have answered, or
  // when timeouts.websocket_close has passed (expire).
  void goAway() {
    if (!tunnel_ || tunnel_->going_away || tunnel_done_) return;
    tunnel_->going_away = true;
    if (tunnel_->from_backend.invalid()) {
      finishTunnel(true);  // where its frames end is unknown: a reset, not a cut frame
      return;
    }
    tunnel_->close_to_client_due = true;
    tunnel_->close_to_backend_due = up_ && !tunnel_->from_client.invalid();
    tunnel_->noteCloser(metrics::ClosedBy::kTether, 1001);
    goaway_ms_ = c_.worker_.now();
    c_.link_.h2Rearm();  // timeouts.websocket_close
    pumpGoingAway();
  }

  void onUpstreamConnected(int) override {}
  void onUpstreamAlloc(uv_buf_t* buf) override {
    if (!up_in_.data) {
      up_in_.data = c_.worker_.buffers().get();
      up_in_.cap = BufferPool::kSize;
      up_in_.end = 0;
      up_sent_ = 0;
    }
    *buf = uv_buf_init(up_in_.data + up_in_.end, up_in_.cap - up_in_.end);
  }
  void onUpstreamRead(ssize_t nread, const uv_buf_t*) override {
    if (!tunnel_ || tunnel_done_) return;
    if (nread > 0) {
      up_in_.end += static_cast<std::uint32_t>(nread);
      pumpTunnel();
    } else if (nread == UV_EOF) {
      tunnel_->backend_half_closed = true;
      tunnel_->noteCloser(metrics::ClosedBy::kBackend);
      pumpTunnel();
    } else if (nread < 0) {
      tunnel_->noteCloser(metrics::ClosedBy::kBackend);
      finishTunnel(true);
    }
  }
  void onUpstreamWritten(int status) override {
    up_writing_ = false;
    if (!tunnel_ || tunnel_done_) return;
    if (status != 0) {
      tunnel_->noteCloser(metrics::ClosedBy::kBackend);
      finishTunnel(true);
      return;
    }
    c_.codec_.consumed(id_, up_taken_);
    body_.erase(0, up_taken_);
    up_taken_ = 0;
    pumpTunnel();
    c_.flushSoon();  // the WINDOW_UPDATE
  }

 private:
  static constexpr std::uint64_t kUnknown = ~std::uint64_t{0};

  std::uint32_t pending_backend() const { return up_in_.data ? up_in_.end - up_sent_ : 0; }

  static void onTunnelWritten(void* ctx, int status) {
    auto* self = static_cast<H2Stream*>(ctx);
    self->up_write_ = nullptr;
    self->onUpstreamWritten(status);
  }

  // Moves what each side has to the other, as far as the backend's socket
  // and the client's window take it; ends the tunnel once both sides have.
  void pumpTunnel() {
    if (!tunnel_ || tunnel_done_) return;
    if (tunnel_->going_away) return pumpGoingAway();
    metrics::BackendMetrics* bm = backend_ ? &c_.worker_.metrics().backend(backend_->id) : nullptr;
    // Client -> backend: the DATA bytes, then END_STREAM as a half-close.
    if (up_ && !up_writing_ && !body_.empty()) {
      tunnel_->from_client.feed(body_.data(), body_.size());
      tunnel_last_ = c_.worker_.now();
      if (!writeBodyUpstream(body_.size(), bm)) return;
    }
    // Backend -> client: as the client's window allows; the backend is not
    // read while the codec cannot take more.
    if (std::uint32_t len = pending_backend(); len > 0) {
      const char* p = up_in_.data + up_sent_;
      std::size_t took = c_.codec_.sendBody(id_, p, len, false);
      if (took) {
        tunnel_last_ = c_.worker_.now();
        tunnel_->from_backend.feed(p, took);
        if (bm) bm->bytes[static_cast<int>(metrics::Direction::kDownstream)].inc(took);
      }
      up_sent_ += static_cast<std::uint32_t>(took);
      if (up_sent_ == up_in_.end) up_in_.release(c_.worker_.buffers());
    }
    if (bm) tunnel_->account(*bm);
    if (up_ && !up_->closing()) up_->setReading(pending_backend() == 0 && !tunnel_->backend_half_closed);
    // Either side's end (EOF, END_STREAM) passed on once its bytes are.
    bool backend_drained = tunnel_->backend_half_closed && pending_backend() == 0;
    bool client_drained = tunnel_->client_half_closed && body_.empty() && !up_writing_;
    if (backend_drained && !end_sent_) {
      end_sent_ = true;
      c_.codec_.sendBody(id_, nullptr, 0, true);
    }
    if (client_drained && up_ && !shut_) {
      shut_ = true;
      auto* req = new uv_shutdown_t;
      if (up_->shutdown(req, [](uv_shutdown_t* r, int) { delete r; }) != 0) delete req;
    }
    if (backend_drained && client_drained) {
      finishTunnel(false);
      return;
    }
    c_.flushSoon();
  }

  // After our close frames, as over HTTP/1.1 (Session::pumpTunnel): what
  // the peers send is read and dropped, but watched. Each has had our close
  // frame, which a frame of the other side's must not follow (RFC 6455
  // §5.5.1); once the client has answered (and the backend has, or has
  // gone), the handshake is over and the tunnel ends without waiting out
  // websocket_close.
  void pumpGoingAway() {
    sendDueCloses();
    if (!tunnel_ || tunnel_done_) return;
    if (!close_rest_.empty()) {
      std::size_t took = c_.codec_.sendBody(id_, close_rest_.data(), close_rest_.size(), false);
      close_rest_.erase(0, took);
    }
    if (!up_writing_ && !body_.empty() && !tunnel_->close_to_backend_due) {
      tunnel_->from_client.feed(body_.data(), body_.size());
      c_.codec_.consumed(id_, body_.size());
      body_.clear();
    }
    if (std::uint32_t len = pending_backend(); len > 0 && !tunnel_->close_to_client_due) {
      tunnel_->from_backend.feed(up_in_.data + up_sent_, len);
      up_sent_ = up_in_.end;
      up_in_.release(c_.worker_.buffers());
    }
    // While a frame in flight waits for the client's window, the backend is
    // not read further.
    if (up_ && !up_->closing())
      up_->setReading(!tunnel_->backend_half_closed && !(tunnel_->close_to_client_due && pending_backend() > 0));
    bool client_done = tunnel_->from_client.closeSeen() || tunnel_->client_half_closed;
    bool backend_done = tunnel_->from_backend.closeSeen() || tunnel_->backend_half_closed || !up_;
    if (client_done && backend_done) {
      finishTunnel(!close_rest_.empty());  // our close frame cut short: a reset, not an end
      return;
    }
    c_.flushSoon();
  }

  // The first n bytes of the client's DATA to the backend; they are
  // acknowledged (the window reopens) once written. False when the write
  // failed and the tunnel is over.
  bool writeBodyUpstream(std::size_t n, metrics::BackendMetrics* bm) {
    if (bm) bm->bytes[static_cast<int>(metrics::Direction::kUpstream)].inc(n);
    uv_buf_t b = uv_buf_init(body_.data(), static_cast<unsigned>(n));
    up_taken_ = n;
    int r = up_->tls() ? up_->write(&b, 1) : c_.worker_.send(up_->stream(), up_write_, onTunnelWritten, this, &b, 1);
    if (r < 0) {
      tunnel_->noteCloser(metrics::ClosedBy::kBackend);
      finishTunnel(true);
      return false;
    }
    if (r == 1) {
      up_writing_ = true;
    } else {
      c_.codec_.consumed(id_, up_taken_);
      body_.erase(0, up_taken_);
      up_taken_ = 0;
    }
    return true;
  }

  // Going away: a due 1001 goes as soon as its side is between frames, the
  // rest of a frame in flight that way forwarded first (to the client as its
  // window allows: the close frame follows the frame's last byte).
  void sendDueCloses() {
    char frame[forward::kMaxCloseFrameBytes];
    metrics::BackendMetrics* bm = backend_ ? &c_.worker_.metrics().backend(backend_->id) : nullptr;
    if (!up_) tunnel_->close_to_backend_due = false;
    if (tunnel_->close_to_backend_due && !up_writing_) {
      if (!body_.empty()) {
        std::size_t n = tunnel_->from_client.feedToBoundary(body_.data(), body_.size());
        if (n && !writeBodyUpstream(n, bm)) return;
      }
      if (tunnel_->from_client.frameBoundary()) {
        // Behind a write in flight is fine: writes to a connection keep their order.
        std::uint32_t key = static_cast<std::uint32_t>(c_.worker_.now() * 2654435761u) ^ 0x5a5a1001u;
        std::size_t n = forward::buildCloseFrame(1001, "", true, key, frame);
        up_->writeOwn(frame, n);
        tunnel_->close_to_backend_due = false;
      } else if (tunnel_->from_client.invalid()) {
        tunnel_->close_to_backend_due = false;
      }
    }
    if (tunnel_->close_to_client_due) {
      if (std::uint32_t len = pending_backend(); len > 0 && !tunnel_->from_backend.frameBoundary()) {
        const char* p = up_in_.data + up_sent_;
        forward::FrameObserver probe = tunnel_->from_backend;
        std::size_t want = probe.feedToBoundary(p, len);
        std::size_t took = c_.codec_.sendBody(id_, p, want, false);
        if (took) {
          tunnel_->from_backend.feed(p, took);
          if (bm) bm->bytes[static_cast<int>(metrics::Direction::kDownstream)].inc(took);
          up_sent_ += static_cast<std::uint32_t>(took);
          if (up_sent_ == up_in_.end) up_in_.release(c_.worker_.buffers());
        }
      }
      if (tunnel_->from_backend.frameBoundary()) {
        // What the client's window does not take now goes when it opens:
        // never half a close frame.
        std::size_t n = forward::buildCloseFrame(1001, "", false, 0, frame);
        std::size_t took = c_.codec_.sendBody(id_, frame, n, false);
        close_rest_.assign(frame + took, n - took);
        tunnel_->close_to_client_due = false;
      } else if (tunnel_->from_backend.invalid()) {
        finishTunnel(true);
        return;
      }
    }
    if (bm) tunnel_->account(*bm);
    c_.flushSoon();
  }

  // The tunnel is over: counted, its upstream connection closed, the stream
  // ended (reset when `cut`) and its slot released.
  void finishTunnel(bool cut) {
    if (tunnel_done_) return;
    tunnel_done_ = true;
    --c_.tunnels_;
    if (backend_) c_.worker_.tunnelEnded(*backend_, *tunnel_);
    if (up_write_) {
      up_write_->ctx = nullptr;
      up_write_ = nullptr;
    }
    if (up_) {
      up_->setOwner(nullptr);
      std::exchange(up_, nullptr)->close();
    }
    up_in_.release(c_.worker_.buffers());
    if (cut) {
      c_.codec_.resetStream(id_, kInternalError);
    } else {
      if (!end_sent_) {
        end_sent_ = true;
        c_.codec_.sendBody(id_, nullptr, 0, true);
      }
      // A client that has not ended its side (its close frame sent, or none
      // within websocket_close) gets RST_STREAM NO_ERROR after our
      // END_STREAM: nothing it sends is wanted, and its stream's slot, which
      // a drain waits for, frees now rather than whenever it ends.
      if (!ended_) c_.codec_.stopRequestBody(id_);
    }
    c_.tunnelOver(*this);
  }

  void progress() { blocked_since_ = c_.worker_.now(); }
  // The rest of a response body write the client's window has not taken;
  // the connection counts the streams with one (blockedSince()).
  void setPending(std::size_t len) {
    if ((pending_len_ > 0) != (len > 0)) c_.blocked_ += len > 0 ? 1 : -1;
    pending_len_ = len;
  }
  // Body bytes to the codec, the last ones of a known length with END_STREAM.
  std::size_t give(const char* data, std::size_t len) {
    bool end = resp_left_ != kUnknown && len >= resp_left_;
    std::size_t took = c_.codec_.sendBody(id_, data, len, end);
    if (resp_left_ != kUnknown) resp_left_ -= std::min<std::uint64_t>(resp_left_, took);
    if (end && took == len) body_ended_ = true;
    return took;
  }

  H2Connection& c_;
  std::int32_t id_;
  std::string body_;      // request body bytes the backend has not taken
  std::size_t taken_ = 0;  // [0, taken_) of body_ is being written upstream
  http::HeaderList trailers_;  // the request's trailers (filtered), for the last chunk
  std::string last_;      // the last chunk, as taken
  char line_[32];
  const char* pending_ = nullptr;  // the rest of a response body write
  std::size_t pending_len_ = 0;
  std::int64_t blocked_since_ = -1;
  std::int64_t last_byte_ms_;
  std::uint64_t resp_left_ = kUnknown;  // response body bytes still due, when known
  bool ended_ = false;
  bool end_taken_ = false;
  bool chunk_open_ = false;
  bool released_ = false;
  bool reset_ = false;
  bool head_sent_ = false;
  bool no_body_ = false;     // the final head ends the stream
  bool body_ended_ = false;  // END_STREAM is given to the codec

 public:
  bool upgrade = false;  // an RFC 8441 extended CONNECT, sent upstream as an HTTP/1.1 upgrade
  std::uint64_t received = 0;  // request body bytes received

 private:
  // RFC 8441 tunnel, after the upstream's 101.
  std::unique_ptr<forward::Tunnel> tunnel_;
  UpstreamConn* up_ = nullptr;
  balancer::Backend* backend_ = nullptr;
  IoBuffer up_in_;               // bytes from the backend; [up_sent_, end) not yet given to the codec
  std::uint32_t up_sent_ = 0;
  std::size_t up_taken_ = 0;     // [0, up_taken_) of body_ is being written to the backend
  WriteReq* up_write_ = nullptr;
  bool up_writing_ = false;
  bool end_sent_ = false;
  bool shut_ = false;
  bool tunnel_done_ = false;
  std::int64_t tunnel_last_ = 0;  // the tunnel's last byte, either way
  std::int64_t goaway_ms_ = 0;    // our 1001 went out then
  std::string close_rest_;        // the part of our 1001 the client's window has not taken yet
};

H2Connection::H2Connection(Worker& worker, Link& link, const Peer& peer)
    : worker_(worker),
      link_(link),
      peer_(peer),
      codec_(*this, h2Settings(worker.config())) {
  worker_.metrics().http2_connections_active.inc();
  worker_.metrics().http2_connections_total.inc();
}

H2Connection::~H2Connection() {
  abortAll(metrics::ClosedBy::kTether);
  for (auto& [id, hs] : streams_) {
    if (hs->stream) worker_.destroyStream(std::exchange(hs->stream, nullptr));
  }
  exportCounters();
  worker_.metrics().http2_connections_active.dec();
}

H2Connection::H2Stream* H2Connection::find(std::int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

template <typename F>
void H2Connection::inCodec(F&& f) {
  bool outer = !in_codec_;
  in_codec_ = true;
  f();
  if (!outer) return;
  in_codec_ = false;
  if (std::exchange(pump_due_, false)) pump();
}

void H2Connection::pump() {
  if (in_codec_) {
    pump_due_ = true;
    return;
  }
  for (int round = 0; !writing_ && round < 64; ++round) {
    std::string_view out = codec_.output();
    if (out.empty()) break;
    int r = link_.h2Write(out.data(), out.size());
    if (r < 0) return;  // the session is closing
    if (r == 1) {
      codec_.outputInFlight();
      in_flight_ = out.size();
      writing_ = true;
      return;
    }
    inCodec([&] { codec_.wrote(out.size()); });
  }
  if (!writing_ && codec_.wantsClose()) {
    // After our GOAWAY: the client's fault unless it is the end of a drain.
    abortAll(codec_.error() == http::H2ServerCodec::Error::kNone ? metrics::ClosedBy::kTether : metrics::ClosedBy::kClient);
    link_.h2Done();
  }
}

void H2Connection::written() {
  writing_ = false;
  inCodec([&] { codec_.wrote(std::exchange(in_flight_, 0)); });
  exportCounters();
  pump();
}

bool H2Connection::feed(const char* data, std::size_t len) {
  http::H2ServerCodec::Error e = http::H2ServerCodec::Error::kNone;
  inCodec([&] { e = codec_.feed(data, len); });
  if (e != http::H2ServerCodec::Error::kNone) {
    log::debug("http2: connection error", {{"client", peer_.ip}, {"error", static_cast<int>(e)}});
  }
  exportCounters();
  pump();
  return e == http::H2ServerCodec::Error::kNone;
}

void H2Connection::bury() { dead_.clear(); }

// Stream-side output (responses, WINDOW_UPDATEs) is written from the
// deferred pass: what every stream produced in one turn of the loop goes out
// in one write (one TLS record run, one system call) instead of one each.
void H2Connection::flushSoon() {
  if (flush_due_) return;
  flush_due_ = true;
  link_.h2Defer();
}

void H2Connection::resume() {
  if (std::exchange(resume_due_, false)) resumeStreams();
  if (std::exchange(flush_due_, false)) pump();
}

void H2Connection::resumeStreams() {
  std::vector<std::int32_t> due;
  for (auto& [id, hs] : streams_) {
    if (hs->resume_pending && hs->stream) {
      hs->resume_pending = false;
      due.push_back(id);
    }
  }
  // A resumed stream may end (and be reaped): each is looked up again.
  for (std::int32_t id : due)
    if (H2Stream* hs = find(id); hs && hs->stream) hs->stream->resumeUpstream();
}

void H2Connection::abortAll(metrics::ClosedBy by) {
  abortRequests();
  std::vector<H2Stream*> tunnels;
  for (auto& [id, hs] : streams_)
    if (!hs->stream && hs->tunneling()) tunnels.push_back(hs.get());
  for (H2Stream* hs : tunnels) hs->endTunnel(by);
}

void H2Connection::abortRequests() {
  for (auto& [id, hs] : streams_)
    if (hs->stream && !hs->stream->done()) hs->stream->abort();
}

// Tunnels are not told here: the worker's drainTunnels sends their 1001s
// (spread over websocket_close_spread) when it does for HTTP/1.1 tunnels,
// which a hand-over lets run until shutdown_grace.
void H2Connection::shutdownNotice() {
  if (codec_.goingAway()) return;
  codec_.shutdownNotice();
  exportCounters();
  pump();
}

void H2Connection::finalGoAway() {
  codec_.goAway();
  exportCounters();
  pump();
}

std::int64_t H2Connection::blockedSince() const {
  if (blocked_ == 0) return -1;
  std::int64_t since = -1;
  for (const auto& [id, hs] : streams_) {
    std::int64_t b = hs->blockedSince();
    if (b >= 0 && (since < 0 || b < since)) since = b;
  }
  return since;
}

void H2Connection::exportCounters() {
  const http::H2ServerCodec::Counters& c = codec_.counters();
  metrics::Metrics& m = worker_.metrics();
  auto up = [](metrics::Counter& to, std::uint64_t now, std::uint64_t& was) {
    if (now > was) to.inc(now - was);
    was = now;
  };
  using R = metrics::Http2Reason;
  up(m.http2Goaway(R::kGraceful), c.goaway_graceful, exported_.goaway_graceful);
  up(m.http2Goaway(R::kRapidReset), c.goaway_rapid_reset, exported_.goaway_rapid_reset);
  up(m.http2Goaway(R::kGlitches), c.goaway_glitches, exported_.goaway_glitches);
  up(m.http2Goaway(R::kProtocol), c.goaway_protocol, exported_.goaway_protocol);
  up(m.http2Goaway(R::kFlood), c.goaway_flood, exported_.goaway_flood);
  up(m.http2StreamError(metrics::Http2StreamError::kRefused), c.streams_refused, exported_.streams_refused);
  up(m.http2StreamError(metrics::Http2StreamError::kProtocol), c.stream_protocol_errors,
     exported_.stream_protocol_errors);
  up(m.http2StreamError(metrics::Http2StreamError::kHeadersTooLarge), c.headers_too_large,
     exported_.headers_too_large);
  up(m.http2StreamError(metrics::Http2StreamError::kClientReset), c.premature_resets, exported_.premature_resets);
}

// ---------------------------------------------------------------------------
// The codec's events

void H2Connection::onRequestHead(std::int32_t id, std::unique_ptr<http::RequestHead>& head, bool end_stream) {
  auto owned = std::make_unique<H2Stream>(*this, id);
  H2Stream& hs = *owned;
  if (spare_nodes_.empty()) {
    streams_.emplace(id, std::move(owned));
  } else {
    StreamMap::node_type n = std::move(spare_nodes_.back());
    spare_nodes_.pop_back();
    n.key() = id;
    n.mapped() = std::move(owned);
    streams_.insert(std::move(n));
  }
  hs.head.swap(head);  // the codec's entry keeps a spare's storage for its next stream
  if (end_stream) hs.end(nullptr);
  Stream* s = worker_.makeStream(hs, hs.head->headers.bytes() + hs.head->target.size() + 16);
  hs.stream = s;
  forward::Exchange& ex = s->ex();
  ex.method = hs.head->method;
  ex.head_done = true;
  link_.h2Rearm();
  if (hs.head->upgrade) {
    // RFC 8441 (advertised only with http2.websockets): the extended CONNECT
    // becomes an HTTP/1.1 upgrade to the backend, GET with Upgrade and a key
    // of our own; its 101 is answered 200 and the stream becomes a tunnel.
    if (!http::iequals(hs.head->protocol, "websocket")) {
      s->answerLocally(501, "tether: only the websocket protocol is served over extended CONNECT\n");
      return;
    }
    hs.upgrade = true;
    hs.head->method = http::kMethodGet;
    hs.head->framing = http::Framing::kNone;
    hs.head->headers.add("upgrade", "websocket");
    hs.head->headers.add("sec-websocket-key", webSocketKey(uv_hrtime() ^ reinterpret_cast<std::uintptr_t>(&hs),
                                                          worker_.now() * 0x9e3779b97f4a7c15ull ^ static_cast<std::uint64_t>(id)));
    ex.method = http::kMethodGet;
    ex.upgrade = true;
  }
  if (!forward::applyUnderscorePolicy(hs.head->headers, worker_.config().limits.headers_with_underscores)) {
    s->answerLocally(400, "tether: header field name with an underscore\n");
    return;
  }
  s->start();
}

void H2Connection::onRequestBody(std::int32_t id, const char* data, std::size_t len) {
  H2Stream* hs = find(id);
  if (hs && hs->tunneling()) {
    hs->body(data, len);
    return;
  }
  if (hs && hs->upgrade && hs->stream && !hs->stream->done()) {
    hs->body(data, len);  // sent once the tunnel is up
    return;
  }
  if (!hs || !hs->stream || hs->stream->done()) {
    codec_.consumed(id, len);  // nobody takes it: the windows stay open
    return;
  }
  hs->stream->ex().bytes_in += len;
  std::uint64_t limit = worker_.config().limits.max_request_body_bytes;
  if (limit && (hs->received += len) > limit) {
    // A body without content-length past limits.max_request_body_bytes:
    // 413 as over HTTP/1.1 (a content-length above is refused by the codec).
    codec_.consumed(id, len);
    hs->stream->answerLocally(413, "tether: request body too large\n");
    return;
  }
  hs->body(data, len);
  if (hs->stream) hs->stream->onRequestBody();
}

void H2Connection::onRequestEnd(std::int32_t id, const http::HeaderList* trailers) {
  H2Stream* hs = find(id);
  if (hs && (hs->tunneling() || hs->upgrade)) {
    hs->end(trailers);
    return;
  }
  if (!hs || !hs->stream || hs->stream->done()) return;
  hs->end(trailers);
  hs->stream->onRequestBody();
}

void H2Connection::onStreamReset(std::int32_t id, std::uint32_t) {
  H2Stream* hs = find(id);
  if (!hs) {
    codec_.released(id);
    return;
  }
  if (!hs->stream) {
    hs->endTunnel(metrics::ClosedBy::kClient);
    return;
  }
  cancel(*hs);
}

// The upstream request is cancelled: its connection closes (never reused
// with a half-sent request or an unread answer).
void H2Connection::cancel(H2Stream& hs) {
  Stream* s = hs.stream;
  if (!s) return;
  if (!s->done()) s->abort();
  if (s->depth() == 0) reap(hs, s);
}

void H2Connection::onStreamWritable(std::int32_t id) {
  if (H2Stream* hs = find(id)) hs->writable();
}

void H2Connection::reap(H2Stream& hs, Stream* s) {
  if (!s || hs.stream != s || !s->done() || s->depth() != 0) return;
  worker_.destroyStream(s);
  hs.stream = nullptr;
  if (hs.tunneling()) return;  // the stream lives on as a tunnel (tunnelOver)
  release(hs);
}

void H2Connection::tunnelOver(H2Stream& hs) {
  if (!hs.stream) release(hs);
}

std::int64_t H2Connection::tunnelDeadline() const {
  if (tunnels_ == 0) return -1;
  const conf::Timeouts& t = worker_.config().timeouts;
  std::int64_t d = -1;
  for (const auto& [id, hs] : streams_) {
    std::int64_t at = hs->tunnelDeadline(t);
    if (at >= 0 && (d < 0 || at < d)) d = at;
  }
  return d;
}

void H2Connection::expireTunnels(std::int64_t now) {
  if (tunnels_ == 0) return;
  const conf::Timeouts& t = worker_.config().timeouts;
  std::vector<std::int32_t> ids;
  for (const auto& [id, hs] : streams_) {
    std::int64_t at = hs->tunnelDeadline(t);
    if (at >= 0 && at <= now) ids.push_back(id);
  }
  for (std::int32_t id : ids)
    if (H2Stream* hs = find(id)) hs->expire();
  flushSoon();
}

// Ending a tunnel may release its stream (erased from streams_): here and
// below, the ids are collected first.
void H2Connection::drainTunnels(const balancer::Backend* b) {
  std::vector<std::int32_t> ids;
  for (auto& [id, hs] : streams_)
    if (hs->tunnelTo(b)) ids.push_back(id);
  for (std::int32_t id : ids)
    if (H2Stream* hs = find(id)) hs->goAway();
}

std::size_t H2Connection::markTunnels(const balancer::Backend* b) {
  std::size_t n = 0;
  for (auto& [id, hs] : streams_) n += hs->markGoAway(b);
  return n;
}

std::size_t H2Connection::drainMarked(std::size_t n) {
  std::vector<std::int32_t> ids;
  for (auto& [id, hs] : streams_)
    if (ids.size() < n && hs->goAwayDue()) ids.push_back(id);
  for (std::int32_t id : ids)
    if (H2Stream* hs = find(id)) hs->goAway();
  return ids.size();
}

void H2Connection::release(H2Stream& hs) {
  std::int32_t id = hs.id();
  auto it = streams_.find(id);
  if (it != streams_.end()) {
    StreamMap::node_type n = streams_.extract(it);
    dead_.push_back(std::move(n.mapped()));
    if (spare_nodes_.size() < kSpares) spare_nodes_.push_back(std::move(n));
  }
  codec_.released(id);
  exportCounters();
  flushSoon();
  link_.h2Rearm();
}

}  // namespace tether::proxy
