// A session: one downstream connection and everything it causes.
//
// The session owns the client's TCP handle, its deadline (one entry in the
// worker's DeadlineHeap, proxy/io/deadline_heap.h), its two HTTP/1
// decoders (proxy/http, lent by the worker), the current request's exchange
// (proxy/forward/exchange.h: that request's state, made afresh for each) and
// the upstream connection it borrowed from the pool for it. Header policy
// and the retry rule are proxy/forward's; the session carries out what they
// decide.
// It runs one request at a time (pipelined requests wait, unparsed, in the
// read buffer and are answered in order) and, after a 101, becomes a tunnel
// (proxy/forward/tunnel.h holds its state, made in place of the exchange).
//
//   kIdle ──bytes──▶ kHead ──head──▶ kUpstream ──connected──▶ kExchange ─┬─▶ kIdle
//     ▲                                 ▲ (retry)                         ├─▶ kTunnel ─▶ kClosing
//     └──────────── keep-alive ─────────┴─────────────────────────────────┴─▶ kClosing
//
// Memory: an idle session (keep-alive or tunnel) holds no buffer, no
// decoder and no exchange; buffers are taken from the worker's pool when
// bytes arrive and given back when nothing in them is pending.
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
#include "proxy/io/deadline_heap.h"
#include "proxy/io/transport.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/forward/exchange.h"
#include "proxy/forward/retry.h"
#include "proxy/forward/tunnel.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/intrusive_list.h"
#include "proxy/pin_store.h"

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


struct QueueTag;
struct TlsTag;

class Session final : public ListHook<>,
                      public ListHook<QueueTag>,
                      public ListHook<TlsTag>,
                      public PinWaiter,
                      public DeadlineEntry,
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
  void markGoAway() {
    if (tunnel_) tunnel_->goaway_marked = true;
  }
  bool goAwayMarked() const { return tunnel_ && tunnel_->goaway_marked && !tunnel_->going_away; }
  void close();

  // UpstreamConn and pool callbacks.
  void onUpstreamConnected(int status);
  void onUpstreamAlloc(uv_buf_t* buf);
  void onUpstreamRead(ssize_t nread, const uv_buf_t* buf);
  // A write the upstream connection queued (TLS: UpstreamConn::write) is done.
  void onUpstreamWritten(int status);

  // A backend slot freed while this session waited in the worker's queue
  // (limits.max_connections_per_backend).
  void onSlot(balancer::Backend* b);
  // The backend this queued session would take now (its own for a pinned or
  // placed request), or nullptr while it must wait.
  balancer::Backend* slotCandidate();

  // The affinity store's answer (PinWaiter).
  void onPinLookup(bool store_ok, const std::string& backend) override;
  void onPinStored(bool stored) override;

  // The deadline armTimer() scheduled has come (Worker::onDeadlines).
  void onDeadline();

  // TLS: plaintext or ciphertext held by the record layer may be read now
  // (deferred by updateReading, which runs inside other callbacks).
  void onTlsResume();

  enum class State : std::uint8_t { kIdle, kHead, kUpstream, kExchange, kTunnel, kClosing };
  State state() const { return state_; }

 private:
  // Where an error came from decides its status and whether a retry is safe.
  using Fault = forward::Fault;

  void transition(State to);
  void takeCodecs();
  // The current request's exchange, made when there is none.
  forward::Exchange& openExchange();
  // Closing, or answered and on the way out (closeGracefully): no more
  // request or response processing.
  bool done() const { return closing_ || state_ == State::kClosing; }

  // Downstream side.
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWritten(uv_write_t* req, int status);
  void onDownstreamWritten(int status);
  std::int64_t deadline() const;
  std::int64_t bodyDeadline(std::int64_t d) const;
  bool bodyTimedOut() const;
  void requestBodyTimeout();
  void onTimeout();
  void afterRequestWrite();
  void afterResponseWrite();
  void writeRaw(uv_stream_t* to, const char* data, std::size_t len);
  int shutdownClient(uv_shutdown_t* req, uv_shutdown_cb cb);
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
  bool startAffinity(const std::shared_ptr<const forward::AffinityPlan>& plan);
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
  bool encoderFlushable() const;
  // routes[].cache (forward/cache.h): answers the request from the cache
  // (true), or notes whether its response is to be stored; the response's
  // head and body as they are sent.
  bool serveFromCache(std::string_view path);
  void cacheResponseHead(const http::ResponseHead& r, const http::ExtraFields& extra);
  void storeCached();
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
  WriteReq* down_write_ = nullptr;  // queued write to the client, from the worker's pool
  WriteReq* up_write_ = nullptr;    // queued write to the backend
  HttpCodecs* codecs_ = nullptr;  // while a request is read or answered
  IoBuffer in_;       // downstream bytes: request heads, bodies, tunnel bytes to the backend
  IoBuffer up_in_;    // upstream bytes: response heads, bodies, tunnel bytes to the client
  UpstreamConn* upstream_ = nullptr;
  balancer::Backend* backend_ = nullptr;
  forward::Exchange* ex_ = nullptr;  // the current request's, from the worker's pool
  TcpTransport tcp_{*this};
  std::unique_ptr<TlsTransport> tls_;  // on a TLS listener, until it turns out not to speak TLS

  State state_ = State::kIdle;
  std::uint8_t open_handles_ = 0;
  bool down_writing_ = false;
  bool up_writing_ = false;
  bool down_reading_ = false;
  bool closing_ = false;

  bool up_reading_ = false;
  bool refused_ = false;
  bool tunnel_counted_ = false;   // counted as an open tunnel
  bool served_ = false;           // a request was answered on this connection
  bool close_after_ = false;       // close the client connection after this response
  bool client_eof_ = false;
  bool counted_active_ = false;
  std::int64_t last_down_ms_ = 0;  // last downstream byte: timeouts.request_body
  std::int64_t req_started_ms_ = 0;
  std::int64_t last_activity_ = 0;
  std::int64_t timer_deadline_ = 0;  // start of the current wait (connect, first byte, close)
  std::uint64_t req_started_ns_ = 0;  // uv_hrtime() at req_started_ms_, for the access log
  std::string log_path_;           // for the access log, when enabled

  std::unique_ptr<forward::Tunnel> tunnel_;  // after a 101

  char client_ip_[46];
  std::uint8_t client_ip_len_ = 0;
  std::uint8_t client_family_ = 0;
  std::uint8_t client_addr_[16] = {};
};

}  // namespace tether::proxy
