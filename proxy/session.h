// A session: one downstream connection and everything it causes.
//
// The session owns the client's TCP handle, its timer, its two HTTP/1
// decoders (proxy/http, lent by the worker), the state of the current
// request (rq_, made afresh for each) and the upstream connection it
// borrowed from the pool for it. Header policy and the retry rule are
// proxy/forward's; the session carries out what they decide.
// It runs one request at a time (pipelined requests wait, unparsed, in the
// read buffer and are answered in order) and, after a 101, becomes a tunnel.
//
//   kIdle ──bytes──▶ kHead ──head──▶ kUpstream ──connected──▶ kExchange ─┬─▶ kIdle
//     ▲                                 ▲ (retry)                         ├─▶ kTunnel ─▶ kClosing
//     └──────────── keep-alive ─────────┴─────────────────────────────────┴─▶ kClosing
//
// Memory: an idle session (keep-alive or tunnel) holds no buffer and no
// decoder; buffers are taken from the worker's pool when bytes arrive and
// given back when nothing in them is pending.
//
// Lifetime: created by Worker::onConnection, destroyed in the close callback
// of its last handle, after which it unlinks itself from the worker. Never
// destroyed inside a read or write callback's stack frame other than via
// uv_close.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "metrics/metrics.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/io/transport.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/forward/retry.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/intrusive_list.h"
#include "proxy/pin_store.h"
#include "proxy/websocket_frame.h"

namespace tether::balancer {
struct Backend;
}
namespace tether::forward {
class Encoder;
}

namespace tether::proxy {

class Worker;
class UpstreamConn;
class Session;
struct ListenerHandle;

// A write request from the worker's pool; `session` is cleared when the
// session closes first, so a late callback only returns the request.
struct WriteReq {
  uv_write_t req;
  Session* session = nullptr;
  bool upstream = false;
  WriteReq* next_free = nullptr;
};

// A session's two HTTP/1 decoders, lent by the worker from a request's first
// byte until its answer is done: an idle keep-alive connection and a tunnel
// hold none. Their heads keep their storage in the worker's pool.
struct HttpCodecs {
  http::H1Decoder request{http::H1Decoder::Type::kRequest, {}};
  http::H1Decoder response{http::H1Decoder::Type::kResponse, {}};
  HttpCodecs* next_free = nullptr;
};

// A byte buffer from the pool or, for a head larger than a pool buffer, from
// the heap: [0, end) holds data.
struct IoBuffer {
  char* data = nullptr;
  std::uint32_t cap = 0;
  std::uint32_t end = 0;
  bool heap() const { return cap > BufferPool::kSize; }
};

struct AffinityPlan;
struct AffinityState;

struct QueueTag;
struct TlsTag;

class Session final : public ListHook<>,
                      public ListHook<QueueTag>,
                      public ListHook<TlsTag>,
                      public PinWaiter,
                      private TransportOwner {
 public:
  Session(Worker& worker, const ListenerHandle& listener);
  ~Session();

  // Accepts from `server`. On failure the session closes itself.
  void start(uv_stream_t* server);
  // Worker shutdown: an idle kept-alive session closes now, one in a request
  // (or still waiting for its first) closes when the response is done, a
  // tunnel gets close frames 1001.
  void goAway();
  // A backend went away: tunnels to it get close frames 1001.
  bool tunnelTo(const balancer::Backend* b) const;
  // A going-away close waiting for its turn in a spread window.
  void markGoAway() { goaway_marked_ = true; }
  bool goAwayMarked() const { return goaway_marked_ && !going_away_; }
  void close();

  // UpstreamConn and pool callbacks.
  void onUpstreamConnected(int status);
  void onUpstreamAlloc(uv_buf_t* buf);
  void onUpstreamRead(ssize_t nread, const uv_buf_t* buf);

  // A backend slot freed while this session waited in the worker's queue
  // (limits.max_connections_per_backend).
  void onSlot(balancer::Backend* b);
  // The backend this queued session would take now (its own for a pinned or
  // placed request), or nullptr while it must wait.
  balancer::Backend* slotCandidate();

  // The affinity store's answer (PinWaiter).
  void onPinLookup(bool store_ok, const std::string& backend) override;
  void onPinStored(bool stored) override;

  // TLS: plaintext or ciphertext held by the record layer may be read now
  // (deferred by updateReading, which runs inside other callbacks).
  void onTlsResume();

  enum class State : std::uint8_t { kIdle, kHead, kUpstream, kExchange, kTunnel, kClosing };
  State state() const { return state_; }

 private:
  static constexpr std::uint8_t kNoMethod = 0xff;  // logged as "-"

 public:

 private:
  // Where an error came from decides its status and whether a retry is safe.
  using Fault = forward::Fault;

  void transition(State to);
  void takeCodecs();
  // Closing, or answered and on the way out (closeGracefully): no more
  // request or response processing.
  bool done() const { return closing_ || state_ == State::kClosing; }

  // Downstream side.
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWritten(uv_write_t* req, int status);
  void onDownstreamWritten(int status);
  void onUpstreamWritten(int status);
  std::int64_t deadline() const;
  std::int64_t bodyDeadline(std::int64_t d) const;
  bool bodyTimedOut() const;
  void requestBodyTimeout();
  void onTimeout();
  void afterRequestWrite();
  void afterResponseWrite();
  void writeRaw(uv_stream_t* to, const char* data, std::size_t len);
  int shutdownClient(uv_shutdown_t* req, uv_shutdown_cb cb);
  static void onTimer(uv_timer_t* t);
  static void onClosed(uv_handle_t* h);
  static void onShutdown(uv_shutdown_t* req, int status);

  void onDownstreamData();
  void onDownstreamEof();
  void parseRequest();
  void parseRequestBody();
  void requestParseError();
  void countActive(bool on);
  bool applyRequestPolicy(int* status, const char** reason);
  void sealRequestChunk();
  void finishRequestBody();
  void dispatch();
  std::string_view clientAddress(char (&out)[46]) const;
  bool startAffinity(const std::shared_ptr<const AffinityPlan>& plan);
  void proceed(balancer::Backend* b);
  void pinTo(balancer::Backend* b, bool repin);
  void endAffinity();
  void sniffSid(std::string_view body);
  void confirmPin(const std::string& store_key, const std::string& backend);
  void releasePinHold(metrics::PinConfirm why);
  std::int64_t pinHoldDeadline() const;
  void connectUpstream();
  void onUpstreamReady();
  void buildUpstreamHead();
  void pumpRequest();
  void onUpstreamFailure(Fault fault, int uv_status);
  void parseResponse();
  void responseComplete();
  void buildDownstreamHead();
  void pumpResponse();
  // Response compression (compression:): whether this response is
  // compressed, and its encoder's output after the bytes read so far.
  void startCompression(http::ResponseHead& r, bool* chunk);
  bool compressFlush(bool finish);
  void finishExchange();
  void startNextRequest();
  void respondError(int status, const char* reason);
  void closeGracefully();
  void releaseUpstream(bool reusable);
  void armTimer();
  void touch();

  // Tunnel.
  void enterTunnel();
  void pumpTunnel();
  void tunnelEof(bool from_client);
  void sendGoingAway();
  void finishTunnelMetrics();
  void noteCloser(metrics::ClosedBy by, std::uint16_t code = 0);

  // Writes: the remainder of a partial try_write is queued; while a write is
  // queued on a side, the source feeding that side is not read.
  int sendOrQueue(uv_stream_t* to, WriteReq*& slot, bool upstream, uv_buf_t* bufs, unsigned n);
  bool writeDownstream(uv_buf_t* bufs, unsigned n);
  bool writeUpstream(uv_buf_t* bufs, unsigned n);
  void updateReading();
  bool wantDownstream() const;
  void releaseBuffer(IoBuffer& b);
  bool ensureBuffer(IoBuffer& b);

  void logAccess();

  // The client's transport (proxy/io/transport.h): TCP, or TLS on a TLS
  // listener. What its reads bring, and what it asks of the session.
  void onTransport(Transport::Result r);
  bool plainRoom(char** data, std::size_t* len) override;
  void plainAdded(std::size_t n) override;
  int socketWrite(uv_buf_t* bufs, unsigned n) override;
  void plainWritten(int status) override;
  uv_stream_t* socket() override { return reinterpret_cast<uv_stream_t*>(&client_); }
  void transportFailed(const char* what, const std::string& why) override;
  Transport& transport() { return tls_ ? static_cast<Transport&>(*tls_) : tcp_; }
  const Transport& transport() const { return tls_ ? static_cast<const Transport&>(*tls_) : tcp_; }

  // The decoders' body sinks (h1_decoder.h): decoded body bytes.
  static void onRequestBody(void* ctx, const char* data, std::size_t len);
  static void onResponseBody(void* ctx, const char* data, std::size_t len);
  bool appendTrailers(IoBuffer& b, const http::HeaderList& trailers);
  http::RequestHead& request() { return codecs_->request.request(); }

  Worker& worker_;
  const ListenerHandle& listener_;
  uv_tcp_t client_;
  uv_timer_t timer_;
  WriteReq* down_write_ = nullptr;  // queued write to the client, from the worker's pool
  WriteReq* up_write_ = nullptr;    // queued write to the backend
  HttpCodecs* codecs_ = nullptr;  // while a request is read or answered
  IoBuffer in_;       // downstream bytes: request heads, bodies, tunnel bytes to the backend
  IoBuffer up_in_;    // upstream bytes: response heads, bodies, tunnel bytes to the client
  IoBuffer up_head_;  // the request head as sent upstream (kept until the response starts, for a retry)
  IoBuffer down_head_;  // response head(s) for the client, then a re-encoded chunked body
  IoBuffer up_body_;    // a chunked request body, re-encoded for the backend
  UpstreamConn* upstream_ = nullptr;
  balancer::Backend* backend_ = nullptr;
  std::unique_ptr<AffinityState> aff_;  // this request's affinity key and lookup, when it has one
  TcpTransport tcp_{*this};
  std::unique_ptr<TlsTransport> tls_;  // on a TLS listener, until it turns out not to speak TLS

  State state_ = State::kIdle;
  std::uint8_t open_handles_ = 0;
  bool down_writing_ = false;
  bool up_writing_ = false;
  bool down_reading_ = false;
  bool closing_ = false;

  // What one request causes, created with it and dropped when it ends
  // (startNextRequest makes a fresh one): nothing is reset by hand. Offsets
  // into in_: [req_start, head_end) head, [body_sent, parsed) body bytes
  // parsed and not yet forwarded; parsed is where the decoder stands. Into
  // up_in_ the same way: [resp_body_sent, resp_parsed).
  struct Compressing;
  struct Request {
    std::uint32_t req_start = 0;
    std::uint32_t head_end = 0;
    std::uint32_t body_sent = 0;
    std::uint32_t parsed = 0;
    std::uint32_t resp_body_sent = 0;
    std::uint32_t resp_parsed = 0;
    std::uint8_t attempts = 0;
    std::uint8_t tried_count = 0;
    std::uint32_t tried[4] = {};
    std::uint16_t status = 0;
    bool head_done = false;
    bool head_written = false;      // up_head_ queued to the backend
    bool abort_when_flushed = false;
    bool upgrade_accepted = false;
    std::uint32_t down_head_sent = 0;
    bool request_done = false;      // whole request parsed
    bool request_sent = false;      // whole request written upstream
    bool request_trimmed = false;   // request bytes were dropped from in_: no replay
    bool upgrade = false;           // request asked for an upgrade
    bool head_request = false;
    bool response_started = false;  // any response byte received from the backend
    bool response_head_sent = false;  // final response head queued to the client
    bool response_done = false;
    bool resp_keep_alive = false;
    bool dechunk = false;           // HTTP/1.0 client, chunked response: send the body plain
    bool rechunk = false;           // chunked response to an HTTP/1.1 client: re-encoded
    bool req_chunked = false;       // chunked request body: re-encoded into up_body_
    bool resp_extra = false;        // the backend sent bytes beyond the response's framing
    http::ChunkStager req_stager;
    http::ChunkStager resp_stager;
    std::uint32_t up_body_sent = 0;  // up_body_ [0, up_body_sent) is queued or written
    bool retrying = false;
    bool pin_hold = false;   // the response waits for the store to hold the pin it reveals
    bool pin_sync = false;   // inside confirmPin
    bool request_id_present = false;
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::int64_t first_byte_ms = -1;
    // For the access log, from uv_hrtime() (microseconds; the loop's clock has milliseconds).
    std::uint64_t first_byte_ns = 0;       // the first response byte; 0 = none yet
    std::uint64_t connect_started_ns = 0;  // a new upstream connect began
    std::int64_t connect_us = -1;          // its duration; 0 = a pooled connection; -1 = none
    bool upstream_reused = false;          // the upstream connection came from the pool
    // The body is compressed on its way to the client (forward/compression.h);
    // set with the final response head.
    std::unique_ptr<Compressing> zip;
  };
  Request rq_;

  std::uint8_t method_ = kNoMethod;  // http::kMethod*, once the head is decoded
  std::uint8_t http_minor_ = 1;
  bool up_reading_ = false;
  bool refused_ = false;
  bool active_counted_ = false;   // counted in backend_->active_requests
  bool tunnel_counted_ = false;   // counted as an open tunnel
  bool served_ = false;           // a request was answered on this connection
  bool looking_up_ = false;       // waiting for the pin store
  bool queued_ = false;           // waiting for a backend under its connection cap
  balancer::Backend* queued_for_ = nullptr;  // ... for this one (a pin or a placement)
  bool keep_alive_ = true;         // the client's wish
  bool close_after_ = false;       // close the client connection after this response
  bool sse_ = false;
  bool compress_vary_ = false;     // buildDownstreamHead: the response is eligible for compression
  bool client_eof_ = false;
  bool counted_active_ = false;
  std::uint64_t client_hash_ = 0;  // consistent_hash: the client's address, hashed at dispatch
  std::int64_t last_down_ms_ = 0;  // last downstream byte: timeouts.request_body
  std::int64_t req_started_ms_ = 0;
  std::int64_t last_activity_ = 0;
  std::int64_t timer_deadline_ = 0;  // start of the current wait (connect, first byte, close)
  std::int64_t armed_at_ = 0;        // when the timer fires, if armed
  bool timer_armed_ = false;
  std::uint64_t req_started_ns_ = 0;  // uv_hrtime() at req_started_ms_, for the access log
  char request_id_[32];
  std::string log_path_;           // for the access log, when enabled

  // Tunnel.
  FrameObserver ws_client_{true};   // frames from the client
  FrameObserver ws_backend_{false}; // frames from the backend
  std::uint32_t ws_counted_[2] = {};  // messages already added to the metrics
  bool client_half_closed_ = false;
  bool backend_half_closed_ = false;
  bool going_away_ = false;
  bool goaway_marked_ = false;
  std::int64_t tunnel_started_ms_ = 0;
  std::uint16_t close_code_ = 0;
  metrics::ClosedBy close_by_ = metrics::ClosedBy::kTether;
  bool close_known_ = false;

  char client_ip_[46];
  std::uint8_t client_ip_len_ = 0;
  std::uint8_t client_family_ = 0;
  std::uint8_t client_addr_[16] = {};
};

}  // namespace tether::proxy
