// A session: one downstream HTTP/1 connection, and the Downstream
// (downstream.h) of the stream (stream.h) proxying its current request.
//
// The session owns the client's transport (TCP, or TLS on a TLS listener),
// its deadline (one entry in the worker's DeadlineHeap) for the waits that
// are its own (the first request, a head, keep-alive idle, a tunnel, the
// lingering close), the request decoder (lent by the worker while a request
// is read) and the bytes it read. It decodes one request at a time
// (pipelined requests wait, unparsed, in the read buffer and are answered in
// order), hands the head to a new stream, gives it the body as it arrives,
// and frames the response the stream gives it for its client: as it is,
// chunked, or de-chunked for HTTP/1.0. After a 101 it becomes a tunnel
// (forward/tunnel.h) between its client and the upstream connection the
// stream hands over.
//
//   kIdle ──bytes──▶ kHead ──head──▶ kStream ─┬─ finished ─▶ kIdle
//     │                                       ├─ upgraded ─▶ kTunnel ─▶ kClosing
//     │                                       └──────────────────────▶ kClosing
//     └── ALPN h2, or the HTTP/2 preface ──▶ kH2 ──────────────────▶ kClosing
//
// In kH2 the session keeps the transport, the deadline and the close, and
// its H2Connection (h2_connection.h) the streams: one Stream per HTTP/2
// request stream, each with its own Downstream.
//
// Memory: an idle session (keep-alive or tunnel) holds no buffer, no decoder
// and no stream; a finished stream is destroyed from the worker's deferred
// pass, once the calls that ended it have returned.
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
#include "proxy/downstream.h"
#include "proxy/forward/exchange.h"
#include "proxy/h2_connection.h"
#include "proxy/forward/tunnel.h"
#include "proxy/intrusive_list.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/io/deadline_heap.h"
#include "proxy/io/transport.h"
#include "proxy/upstream.h"

namespace tether::balancer {
struct Backend;
}

namespace tether::proxy {

class Worker;
class Stream;
struct WriteReq;
struct RequestDecoder;
struct ListenerHandle;
struct QueueTag;
struct TlsTag;

class Session final : public ListHook<>,
                      public ListHook<TlsTag>,
                      public DeadlineEntry,
                      public Downstream,
                      public UpstreamOwner,
                      private H2Connection::Link,
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
  // An HTTP/1.1 tunnel to `b` (nullptr: any backend).
  bool tunnelTo(const balancer::Backend* b) const;
  // Drain (Worker::drainTunnels): the tunnels to `b` (nullptr: any), this
  // HTTP/1.1 one or the RFC 8441 streams of an HTTP/2 connection, get close
  // frames 1001 now (drainTunnels); or, spread over
  // timeouts.websocket_close_spread, are marked (markGoAway: how many were)
  // and get them in their turn (goAwayMarked: up to `n`, how many did).
  void drainTunnels(const balancer::Backend* b);
  std::size_t markGoAway(const balancer::Backend* b);
  std::size_t goAwayMarked(std::size_t n);
  // shutdown_grace is over (after a hand-over): closes now, unless it holds
  // tunnels, whose close handshakes (their 1001 sent) get
  // timeouts.websocket_close; an HTTP/2 connection's other streams are reset.
  void graceOver();
  void close();

  // The deadline armTimer() scheduled has come (Worker::onDeadlines).
  void onDeadline();
  // The worker's deferred pass: TLS records held by the record layer (of
  // the client, or of the stream's upstream connection), a finished stream
  // to destroy, a pipelined request to start.
  void onTlsResume();

  enum class State : std::uint8_t { kIdle, kHead, kStream, kTunnel, kH2, kClosing };
  State state() const { return state_; }

  // Downstream (downstream.h).
  http::RequestHead& request() override;
  const Peer& peer() const override { return peer_; }
  std::string_view protocolName() const override;
  unsigned takeRequestBody(uv_buf_t* bufs, unsigned max) override;
  void requestBodyWritten() override;
  bool requestBodyReady() const override;
  bool requestSent() const override;
  bool requestComplete() const override;
  bool requestReplayable() const override;
  void rewindRequestBody() override;
  bool clientEof() const override { return client_eof_; }
  std::uint64_t bytesBeyondRequest() const override;
  std::int64_t lastRequestByteMs() const override { return last_down_ms_; }
  forward::DownstreamResponse responseFraming(const http::ResponseHead& r, bool body_reencoded) override;
  bool sendHead(http::ResponseHead& r, const http::ExtraFields& extra) override;
  bool sendBody(const char* data, std::size_t len) override;
  bool flush() override;
  bool sendEnd(http::HeaderList* trailers) override;
  bool writing() const override { return down_writing_; }
  void abort() override { close(); }
  std::size_t localReply(int status, const char* reason) override;
  void updateReading() override;
  void deferResume() override;
  void finished(bool answered) override;
  void reap(Stream* s) override;
  void upgraded(UpstreamConn* upstream, IoBuffer& up_in, std::uint32_t up_off) override;

  // UpstreamOwner: the tunnel's upstream connection.
  void onUpstreamConnected(int status) override;
  void onUpstreamAlloc(uv_buf_t* buf) override;
  void onUpstreamRead(ssize_t nread, const uv_buf_t* buf) override;
  void onUpstreamWritten(int status) override;

 private:
  void transition(State to);
  void takeDecoder();
  // The current request's stream, made when there is none.
  Stream& openStream();
  // Destroys a finished stream, once nothing of it is on the stack.
  void reap();
  // Closing, or answered and on the way out (closeGracefully).
  bool done() const { return closing_ || state_ == State::kClosing; }
  forward::Exchange& ex();
  const forward::Exchange& ex() const;

  // Downstream side.
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onDownWritten(void* ctx, int status);
  static void onUpWritten(void* ctx, int status);
  void onDownstreamWritten(int status);
  std::int64_t deadline() const;
  void onTimeout();
  void writeRaw(uv_stream_t* to, const char* data, std::size_t len);
  int shutdownClient(uv_shutdown_t* req, uv_shutdown_cb cb);
  static void onClosed(uv_handle_t* h);
  static void onShutdown(uv_shutdown_t* req, int status);

  void onDownstreamData();
  void onDownstreamEof();
  void parseRequest();
  void parseRequestBody();
  void requestParseError();
  bool applyRequestPolicy(int* status, const char** reason);
  void finishRequestBody();
  bool appendTrailers(IoBuffer& b, const http::HeaderList& trailers);
  void respondError(int status, const char* reason);
  void closeGracefully();
  void startNextRequest();
  void armTimer();
  void touch();
  bool writeDownstream(uv_buf_t* bufs, unsigned n);
  bool wantDownstream() const;
  void releaseBuffer(IoBuffer& b);
  bool ensureBuffer(IoBuffer& b);
  unsigned pendingHead(uv_buf_t* bufs);
  bool writeResponse(uv_buf_t* bufs, unsigned n);

  // HTTP/2 (h2_connection.h): from the first byte (ALPN h2, or the preface
  // on a cleartext listener) to the close.
  bool h2Preface();
  void startH2();
  void feedH2();
  int h2Write(const char* data, std::size_t len) override;
  void h2Done() override;
  void h2Defer() override;
  void h2Rearm() override;

  // Tunnel.
  void pumpTunnel();
  void tunnelEof(bool from_client);
  void sendGoingAway();
  void sendDueCloses(metrics::BackendMetrics& bm);
  bool forwardFrameRest(bool to_backend, metrics::BackendMetrics& bm);
  void finishTunnelMetrics();
  bool writeTunnelUpstream(uv_buf_t* bufs, unsigned n);

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

  // The decoder's body sink (h1_decoder.h): decoded request body bytes.
  static void onRequestBody(void* ctx, const char* data, std::size_t len);

  Worker& worker_;
  const ListenerHandle& listener_;
  uv_tcp_t client_;
  WriteReq* down_write_ = nullptr;  // queued write to the client, from the worker's pool
  WriteReq* up_write_ = nullptr;    // the tunnel's queued write to the backend
  RequestDecoder* decoder_ = nullptr;  // while a request is read or answered
  Stream* stream_ = nullptr;        // the current request's, from the worker's pool
  Stream* retired_ = nullptr;       // a finished one, destroyed from the deferred pass
  IoBuffer in_;       // downstream bytes: request heads, bodies, tunnel bytes to the backend
  IoBuffer out_;      // response heads, chunk framing, a local answer
  std::uint32_t out_sent_ = 0;      // out_ [0, out_sent_) is written or being written
  IoBuffer up_in_;    // the tunnel's bytes from the backend
  UpstreamConn* upstream_ = nullptr;    // the tunnel's
  balancer::Backend* backend_ = nullptr;  // the tunnel's
  TcpTransport tcp_{*this};
  std::unique_ptr<TlsTransport> tls_;  // on a TLS listener, until it turns out not to speak TLS
  std::unique_ptr<forward::Tunnel> tunnel_;  // after a 101
  std::unique_ptr<H2Connection> h2_;         // an HTTP/2 connection's streams
  std::int64_t goaway_notice_ms_ = -1;       // HTTP/2: the first GOAWAY of a drain went out then
  Peer peer_;

  State state_ = State::kIdle;
  std::uint8_t open_handles_ = 0;
  bool down_writing_ = false;
  bool up_writing_ = false;
  bool down_reading_ = false;
  bool closing_ = false;
  bool client_gone_ = false;  // the client ended the connection (EOF, error): what its HTTP/2 tunnels count
  bool refused_ = false;
  bool tunnel_counted_ = false;   // counted as an open tunnel
  bool served_ = false;           // a request was answered on this connection
  bool close_after_ = false;      // close the client connection after this response
  bool client_eof_ = false;
  bool counted_active_ = false;
  bool chunked_out_ = false;      // the response body goes out chunked
  bool add_te_ = false;           // ... and its head says so (the backend's did not)
  bool resume_pending_ = false;   // a pipelined request waits for the deferred pass
  bool goaway_final_ = false;     // HTTP/2: the drain's final GOAWAY is sent
  std::int64_t last_down_ms_ = 0;  // last downstream byte: timeouts.request_body
  std::int64_t req_started_ms_ = 0;
  std::int64_t last_activity_ = 0;
  std::int64_t timer_deadline_ = 0;  // start of the current wait (a tunnel's close, the linger)
  char chunk_line_[24];

  char client_ip_[46];
  std::uint8_t client_addr_[16] = {};
};

}  // namespace tether::proxy
