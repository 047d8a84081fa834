// A stream: one request proxied to a backend, from its decoded head to the
// end of its answer. It routes the request (cache, affinity lookup, backend
// choice, the queue under max_connections_per_backend), borrows an upstream
// connection from the pool, sends the request head (header policy on heads)
// and the body its downstream gives it, decodes the response with the HTTP/1
// response decoder, applies the response policy (X-Request-Id, an inserted
// cookie, compression, the cache) and hands the response to its downstream,
// which encodes it for its own client. One rule decides retries
// (forward/retry.h); one function maps failures to answers.
//
// It knows its client only through the Downstream interface (downstream.h):
// an HTTP/1 connection (session.h) or, later, an HTTP/2 stream; never a
// client socket.
//
//   kRouting ──backend and connection──▶ kExchange ──response sent──▶ done
//      ▲                                     │
//      └────────────── retry ────────────────┘
//
// Its deadline (one entry in the worker's DeadlineHeap) bounds each wait:
// the store's answer (affinity.lookup_timeout), the queue (queue_timeout),
// the connect, the first response byte, the backend's silence
// (upstream_idle), the client's request body (request_body) and a held pin.
//
// Lifetime: made from the worker's pool by its downstream (Worker::
// makeStream) when a request starts, destroyed by the downstream
// (Worker::destroyStream) after finished() or upgraded(), or with the
// downstream, and never from inside one of its own calls: the downstream
// reaps it once the call chain that ended it has returned. After done(),
// every entry point returns at once. Loop-affine.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/downstream.h"
#include "proxy/forward/exchange.h"
#include "proxy/forward/retry.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/intrusive_list.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/io/deadline_heap.h"
#include "proxy/pin_store.h"
#include "proxy/upstream.h"

namespace tether::balancer {
struct Backend;
}

namespace tether::proxy {

class Worker;
struct WriteReq;
struct QueueTag;
struct ResponseDecoder;

class Stream final : public ListHook<QueueTag>, public PinWaiter, public DeadlineEntry, public UpstreamOwner {
 public:
  // `bytes_read` downstream bytes already read belong to this request.
  Stream(Worker& worker, Downstream& ds, std::uint64_t bytes_read);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // The request's state, shared with the downstream that decodes it.
  forward::Exchange& ex() { return ex_; }
  const forward::Exchange& ex() const { return ex_; }

  // Downstream -> stream.
  // The head is decoded and accepted: route it and forward it.
  void start();
  // More request body is ready (takeRequestBody), or the request ended.
  void onRequestBody();
  // The downstream's write of the response (sendBody, flush, sendEnd) is done.
  void onResponseWritten();
  // A local answer for this request (the downstream's own refusals, and the
  // stream's: 502, 503, 504, 408): counted, logged, then written by the
  // downstream (localReply). The stream is done.
  void answerLocally(int status, const char* reason);
  // The downstream is closing: everything the stream holds is let go now
  // (the upstream connection closed, the queue and the store left, metrics
  // settled). The stream is done.
  void abort();
  // TLS records held by the upstream connection: hand them over now.
  void resumeUpstream();
  // Is the upstream side reading or writing?
  bool upstreamWriting() const { return up_writing_; }
  bool done() const { return done_; }
  // Dispatched to a backend (or waiting for one): the downstream's head
  // phase is over.
  bool routing() const { return state_ == State::kRouting; }
  balancer::Backend* backend() const { return backend_; }
  // A request that asked nothing of a backend yet (refused before routing).
  bool started() const { return started_; }

  // The worker's queue (limits.max_connections_per_backend).
  balancer::Backend* slotCandidate();
  void onSlot(balancer::Backend* b);

  // The deadline armTimer() scheduled has come (Worker::onDeadlines).
  void onDeadline();

  // PinWaiter.
  void onPinLookup(bool store_ok, const std::string& backend) override;
  void onPinStored(bool stored) override;

  // UpstreamOwner.
  void onUpstreamConnected(int status) override;
  void onUpstreamAlloc(uv_buf_t* buf) override;
  void onUpstreamRead(ssize_t nread, const uv_buf_t* buf) override;
  void onUpstreamWritten(int status) override;

  // The access log's line for this request.
  void logAccess();
  // Calls of this stream's on the stack (Entry): it is destroyed only at 0.
  std::uint8_t depth() const { return depth_; }

 private:
  using Fault = forward::Fault;
  // Every entry point holds one while it runs; the last to leave a done
  // stream hands it back to its downstream (Downstream::reap), after which
  // nothing of it is touched.
  struct Entry {
    explicit Entry(Stream* s) : s_(s) { ++s->depth_; }
    ~Entry() {
      Stream* s = s_;
      if (--s->depth_ == 0 && s->done_) s->ds_.reap(s);
    }
    Entry(const Entry&) = delete;
    Entry& operator=(const Entry&) = delete;
    Stream* s_;
  };
  enum class State : std::uint8_t { kRouting, kExchange };

  static void onWriteDone(void* ctx, int status);

  std::string_view path() const;
  std::string_view clientAddress(char (&out)[46]) const;
  std::int64_t deadline() const;
  std::int64_t bodyDeadline(std::int64_t d) const;
  bool bodyTimedOut() const;
  std::int64_t pinHoldDeadline() const;
  void armTimer();
  void waitFrom(std::int64_t now);
  void onTimeout();
  void requestBodyTimeout();
  void countActive(bool on);

  bool serveFromCache(std::string_view path);
  void cacheResponseHead(const http::ResponseHead& r, const http::ExtraFields& extra);
  void storeCached();
  bool startAffinity(const std::shared_ptr<const forward::AffinityPlan>& plan);
  void proceed(balancer::Backend* b);
  void pinTo(balancer::Backend* b, bool repin);
  void endAffinity();
  void sniffSid(std::string_view body);
  void confirmPin(const std::string& store_key, const std::string& backend);
  void releasePinHold(metrics::PinConfirm why);

  void connectUpstream();
  void onUpstreamReady();
  void buildUpstreamHead();
  void pumpRequest();
  void afterRequestWrite();
  bool writeUpstream(uv_buf_t* bufs, unsigned n);
  void updateReading();
  void onUpstreamFailure(Fault fault, int uv_status);
  void releaseUpstream(bool reusable);

  void parseResponse();
  void responseComplete();
  void onResponseHead();
  void startCompression(http::ResponseHead& r, bool* reencoded);
  bool compressFlush(bool finish);
  bool encoderFlushable() const;
  void pumpResponse();
  void afterResponseWrite();
  void finishExchange();
  void cut();
  static void onResponseBody(void* ctx, const char* data, std::size_t len);

  Worker& worker_;
  Downstream& ds_;
  forward::Exchange ex_;
  UpstreamConn* upstream_ = nullptr;
  balancer::Backend* backend_ = nullptr;
  ResponseDecoder* resp_ = nullptr;  // from the worker's pool while a response is read
  WriteReq* up_write_ = nullptr;     // queued write to the backend
  IoBuffer up_in_;                   // bytes from the backend
  IoBuffer body_;                    // a decoded chunked response body, staged for the downstream
  std::int64_t wait_started_ = 0;    // start of the current wait (lookup, queue, connect, first byte)
  std::int64_t last_up_ms_ = 0;      // the backend's last byte
  State state_ = State::kRouting;
  std::uint8_t depth_ = 0;
  bool started_ = false;
  bool done_ = false;
  bool up_writing_ = false;
  bool up_reading_ = false;
  bool sending_ = false;     // a response write handed to the downstream is in flight
  bool end_sent_ = false;    // sendEnd was given
};

}  // namespace tether::proxy
