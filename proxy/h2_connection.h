// An HTTP/2 downstream connection's streams: the HTTP/2 server codec
// (http/h2_server.h) and one Downstream (downstream.h) per request stream,
// each proxied by its own Stream (stream.h) exactly as an HTTP/1 request is:
// same routing, affinity, retries, header policy, access log and metrics.
//
// The session (session.h) keeps the client's socket and transport (TCP, or
// TLS with ALPN h2), its deadline and its close; once its connection turns
// out to speak HTTP/2 (ALPN, or the preface on a cleartext listener) it
// feeds every plaintext byte here and writes what output() stages, through
// the Link it implements.
//
// Flow control is backpressure, as the codec describes: a stream's request
// body is held here (at most the stream's window, http2.initial_window)
// until its backend takes it, and only then acknowledged (consumed()); a
// response body is handed to the codec as far as the client's window
// allows, the rest staying in the stream's upstream buffer until the codec
// says the stream is writable again. Nothing is held whole.
//
// Lifetime: owned by the session, destroyed with it. A stream's Stream is
// destroyed when it is done and none of its calls is on the stack (reap);
// its H2Stream waits, unreferenced, until the session's next top-level
// callback (bury()), so that no callback of ours returns into freed memory.
// Loop-affine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "metrics/metrics.h"
#include "proxy/downstream.h"
#include "proxy/http/h2_server.h"

namespace tether::balancer {
struct Backend;
}

namespace tether::proxy {

class Worker;
class Stream;

class H2Connection final : private http::H2ServerCodec::Callbacks {
 public:
  // What the connection asks of its session.
  class Link {
   public:
    // Writes staged output to the client: < 0 the write failed (the session
    // closes), 0 all of it went out, 1 queued (written() follows; the bytes
    // stay unchanged until then).
    virtual int h2Write(const char* data, std::size_t len) = 0;
    // The connection is over once its output is written (a GOAWAY out and
    // no stream left, or a connection error).
    virtual void h2Done() = 0;
    // Call resume() from the worker's deferred pass.
    virtual void h2Defer() = 0;
    // The wait the session's deadline bounds changed (streams came or went).
    virtual void h2Rearm() = 0;

   protected:
    ~Link() = default;
  };

  H2Connection(Worker& worker, Link& link, const Peer& peer);
  ~H2Connection();
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  // Plaintext from the client. false: the connection ends (a protocol error
  // or a flood: its GOAWAY is staged in output()).
  bool feed(const char* data, std::size_t len);
  http::H2ServerCodec& codec() { return codec_; }
  // Writes what the codec stages, while the client takes it. Never inside
  // a codec callback: there it is only noted, and done when the codec returns.
  void pump();
  // A write h2Write queued is done.
  void written();
  // pump() from the deferred pass (resume()): stream-side output of one
  // turn of the loop goes out together.
  void flushSoon();
  // Frees the streams reaped since the last call: only from a top-level
  // callback of the session, with none of ours on the stack.
  void bury();
  // The deferred pass: streams whose upstream connection holds TLS records.
  void resume();
  // The session is closing: every stream lets go of what it holds (its
  // upstream connection, the queue, the store); none is destroyed here. Its
  // tunnels end as closed `by` (unless a closer was seen before).
  void abortAll(metrics::ClosedBy by);
  // Drain (SIGTERM, reload): the two-step GOAWAY; streams in flight finish.
  // RFC 8441 tunnels get their 1001 from drainTunnels, as HTTP/1.1 ones do.
  void shutdownNotice();
  void finalGoAway();
  // RFC 8441 tunnels to `b` (any backend: nullptr) get close frames 1001
  // now; or, spread over timeouts.websocket_close_spread
  // (Worker::drainTunnels), are marked (markTunnels: how many were) and get
  // them in their turn (drainMarked: up to `n` of them, how many did).
  void drainTunnels(const balancer::Backend* b);
  std::size_t markTunnels(const balancer::Backend* b);
  std::size_t drainMarked(std::size_t n);
  // The earliest deadline of an RFC 8441 tunnel (timeouts.tunnel_idle, or
  // timeouts.websocket_close once its 1001 is out), or -1 without one; those
  // whose deadline is `now` or earlier end (expireTunnels).
  std::int64_t tunnelDeadline() const;
  void expireTunnels(std::int64_t now);
  // RFC 8441 tunnels open.
  int tunnels() const { return tunnels_; }
  // shutdown_grace is over: streams other than tunnels are reset.
  void abortRequests();
  // Streams with a Stream still at work.
  std::size_t active() const { return streams_.size(); }
  // A stream waits for the client's window (a slow or stalled reader):
  // since when (loop ms), or -1.
  std::int64_t blockedSince() const;
  // The codec's counters went up since the last call: exported.
  void exportCounters();

 private:
  class H2Stream;

  // H2ServerCodec::Callbacks.
  void onRequestHead(std::int32_t id, std::unique_ptr<http::RequestHead>& head, bool end_stream) override;
  void onRequestBody(std::int32_t id, const char* data, std::size_t len) override;
  void onRequestEnd(std::int32_t id, const http::HeaderList* trailers) override;
  void onStreamReset(std::int32_t id, std::uint32_t code) override;
  void onStreamWritable(std::int32_t id) override;

  H2Stream* find(std::int32_t id);
  void resumeStreams();
  // Runs one codec call that may call back (feed, wrote): pumps after it.
  template <typename F>
  void inCodec(F&& f);
  void reap(H2Stream& hs, Stream* s);
  void tunnelOver(H2Stream& hs);
  void cancel(H2Stream& hs);
  void release(H2Stream& hs);

  Worker& worker_;
  Link& link_;
  const Peer& peer_;
  http::H2ServerCodec codec_;
  int blocked_ = 0;  // streams whose response waits for the client's window (outlives them)
  int tunnels_ = 0;  // RFC 8441 tunnels open
  using StreamMap = std::unordered_map<std::int32_t, std::unique_ptr<H2Stream>>;
  StreamMap streams_;
  // Map nodes of released streams, per worker thread, so that the next
  // stream of any connection takes one instead of allocating (at most
  // kSpares; none under AddressSanitizer).
  static thread_local std::vector<StreamMap::node_type> spare_nodes_;
  std::vector<std::unique_ptr<H2Stream>> dead_;
  http::H2ServerCodec::Counters exported_;
  std::size_t in_flight_ = 0;  // bytes of a queued write
  bool writing_ = false;
  bool in_codec_ = false;
  bool pump_due_ = false;
  bool flush_due_ = false;   // resume() pumps
  bool resume_due_ = false;  // resume() resumes streams (TLS records held upstream)
};

}  // namespace tether::proxy
