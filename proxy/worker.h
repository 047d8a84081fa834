// A worker: one libuv loop with its own listeners (SO_REUSEPORT), sessions,
// buffer pool, upstream pool and pickers. Worker 0 runs on the main thread
// and also carries the admin listener, health checks and signals (Server).
//
// Everything here is loop-affine except the few entry points marked
// "any thread", which go through a uv_async_t.
#pragma once

#include <uv.h>

#include <array>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "balancer/affinity_key.h"
#include "balancer/picker.h"
#include "conf/config.h"
#include "proxy/forward/cache.h"
#include "proxy/forward/exchange.h"
#include "proxy/forward/route.h"
#include "proxy/access_log.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/io/deadline_heap.h"
#include "proxy/io/free_list.h"
#include "proxy/http/head.h"
#include "proxy/intrusive_list.h"
#include "proxy/pin_store.h"
#include "proxy/runtime.h"
#include "proxy/upgrade.h"
#include "proxy/upstream.h"
#include "proxy/downstream.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/stream.h"
#include "proxy/write_req.h"

namespace tether::forward {
struct Tunnel;
}

namespace tether::proxy {

class Session;
class Stream;
class Worker;
struct WriteReq;
struct QueueTag;
struct TlsTag;

// Pooled HTTP/1 decoders (Worker::takeRequestDecoder, takeResponseDecoder).
struct RequestDecoder : http::H1Decoder {
  RequestDecoder() : http::H1Decoder(http::H1Decoder::Type::kRequest, {}) {}
  RequestDecoder* next_free = nullptr;
};
struct ResponseDecoder : http::H1Decoder {
  ResponseDecoder() : http::H1Decoder(http::H1Decoder::Type::kResponse, {}) {}
  ResponseDecoder* next_free = nullptr;
};

struct ListenerHandle {
  uv_tcp_t tcp;
  Worker* worker = nullptr;
  std::size_t index = 0;  // into config().listeners
  bool tls = false;
  bool h2c = true;  // cleartext: the HTTP/2 preface speaks HTTP/2 (listeners[].h2c)
};

class Worker {
 public:
  Worker(Runtime& rt, std::uint32_t index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Main thread, before start(): binds every listener of `config`. With fds
  // given (one per listener, from worker 0), binds the same addresses with
  // SO_REUSEPORT. Appends the bound addresses to `bound` ("ip:port").
  // Returns an error message, or empty on success.
  // With a plan (a binary upgrade, proxy/upgrade.h), opens the inherited
  // sockets it gives this worker instead of binding new ones.
  // With defer_listen, the sockets are bound (or taken over) but nothing is
  // accepted until requestListen().
  std::string bind(const conf::Config& config, std::vector<std::string>* bound,
                   const std::vector<std::string>* same_addresses, const UpgradePlan* plan = nullptr,
                   bool defer_listen = false);
  // Any thread: start accepting on what bind(defer_listen) opened.
  void requestListen();
  // Main thread, before start() or after the loop ended: closes the listeners
  // without accepting from them again.
  void closeListeners();
  // What bind() opened: the configured address and the descriptor of each
  // listening socket, for a binary upgrade. Written by bind() only.
  struct Listening {
    std::size_t index;    // into config().listeners
    std::string address;  // as configured
    int fd;
  };
  const std::vector<Listening>& listening() const { return listening_; }

  // Runs the loop on the calling thread until it stops.
  void run();
  // Any thread: begin a graceful stop (stop accepting, drain sessions).
  void requestStop();
  // Any thread: a new process took the listening sockets over. Stop
  // accepting, close idle connections and those whose response is done; let
  // requests, event streams and tunnels run on (until requestStop, or
  // requestGraceOver).
  void requestHandOff();
  // Any thread: after a hand-over, shutdown_grace is over: tunnels get 1001
  // (requestStop's), every other session closes now.
  void requestGraceOver();
  // Any thread: close every session now (shutdown_grace is over).
  void requestForceStop();
  // Called on the loop once stopping and every session is gone.
  void setOnDrained(std::function<void()> f) { on_drained_ = std::move(f); }
  static std::int64_t nowWallMs();
  // Any thread: take the runtime's current configuration.
  void requestConfigUpdate();
  // Any thread: send going-away closes to the tunnels of `backend_id`
  // (all tunnels when backend_id < 0).
  void requestTunnelDrain(std::int64_t backend_id);

  uv_loop_t* loop() { return &loop_; }
  Runtime& runtime() { return rt_; }
  const conf::Config& config() const { return *config_; }
  const conf::ConfigPtr& configPtr() const { return config_; }
  BufferPool& buffers() { return buffers_; }
  AccessLog& accessLog() { return access_log_; }
  UpstreamPool& upstreams() { return upstreams_; }
  metrics::Metrics& metrics() { return rt_.metrics; }
  std::uint32_t index() const { return index_; }
  std::int64_t now() const { return static_cast<std::int64_t>(uv_now(const_cast<uv_loop_t*>(&loop_))); }
  bool stopping() const { return stopping_; }

  WriteReq* takeWriteReq();
  void giveWriteReq(WriteReq* r);
  // Writes bufs to `to`: what the socket takes at once, the rest in a write
  // from the pool queued into `slot`; done(ctx, status) when it completes
  // (the owner clears slot->ctx if it goes first). bufs are advanced past
  // what went out. 0: all written; 1: queued; < 0: the libuv error.
  int send(uv_stream_t* to, WriteReq*& slot, void (*done)(void*, int), void* ctx, uv_buf_t* bufs, unsigned n);
  // The HTTP/1 decoders, lent by the pool while a request is read (a
  // session's) or a response is (a stream's); an idle connection holds none.
  RequestDecoder* takeRequestDecoder();
  void giveRequestDecoder(RequestDecoder* d);
  ResponseDecoder* takeResponseDecoder();
  void giveResponseDecoder(ResponseDecoder* d);
  // Scratch for a head built locally (an answer from the cache); used within
  // one call, never held.
  http::ResponseHead& scratchResponse() { return scratch_response_; }
  // A request's exchange, made afresh in memory the worker keeps (no malloc
  // in the steady state); `bytes_read` downstream bytes are already its own.
  Stream* makeStream(Downstream& ds, std::uint64_t bytes_read);
  void destroyStream(Stream* s);
  // Scratch for the fields a session's header policy adds to a head, and
  // for one field value it builds; used within one call, never held.
  http::ExtraFields& extraFields() { return extra_fields_; }
  std::string& fieldScratch() { return field_scratch_; }

  // The affinity plan for a request path (first matching route, else the
  // top level); nullptr when none applies.
  const std::shared_ptr<const forward::AffinityPlan>* affinityFor(std::string_view path) const {
    return plans_.forPath(path);
  }
  // The compression settings for a request path: the first matching route's
  // when it sets them, else the top level's. Valid until the next reload.
  const conf::Compression& compressionFor(std::string_view path) const;
  // routes[].cache: this worker's store for the route `path` falls under
  // (forward/cache.h), made on first use, with the route's index and
  // settings; nullptr when the route caches nothing. A reload that changes
  // the configuration drops every store (routes may have moved).
  forward::CacheStore* cacheFor(std::string_view path, std::size_t* route, const conf::Cache** cfg);
  // After a store changed: keeps tether_cache_bytes in step.
  void cacheResized(std::size_t before, std::size_t after);
  // Any thread: drops the entries of every store of this worker whose
  // targets start with `prefix` (all of them for "").
  void requestCachePurge(std::string prefix);
  PinStore& pins() { return *pins_; }
  std::vector<balancer::HeaderField>& headerScratch() { return header_scratch_; }
  // Places a key by consistent hashing over the backends that take new
  // sessions (the same answer on every tether).
  balancer::Backend* placeByHash(std::uint64_t key_hash, std::span<const std::uint32_t> tried);

  // Picks a backend for a new request or tunnel, skipping those in `tried`.
  // nullptr when none can take it. consistent_hash hashes key_hash (the
  // client's address) when has_key; the other algorithms ignore it.
  balancer::Backend* pick(std::span<const std::uint32_t> tried, std::uint64_t key_hash, bool has_key);

  // Fills a 32-character request id.
  void newRequestId(char out[32]);

  // Passive health: a failure or a success of a backend seen by a session.
  void backendFailure(balancer::Backend& b);
  void backendSuccess(balancer::Backend& b);

  // Streams waiting for a backend under limits.max_connections_per_backend,
  // served first in, first out as slots free up.
  bool enqueue(Stream* s);  // false when the queue is full
  void dequeue(Stream* s);
  void slotFreed();
  // A tunnel to `b` (after a 101, over HTTP/1.1 or HTTP/2) is over: its
  // gauges, its slot, its duration and how it closed.
  void tunnelEnded(balancer::Backend& b, const forward::Tunnel& t);
  // Did the last pick() find backends that were refused only for their cap?
  bool lastPickCapped() const { return last_pick_capped_; }

  void sessionClosed(Session* s);
  IntrusiveList<Session>& sessions() { return sessions_; }

  // Scratch space for reads we discard (idle pooled connections, lingering close).
  char* discardBuffer() { return discard_; }

  // A session's or a stream's one deadline (their armTimer): scheduled at
  // `at` (loop milliseconds) or moved there; its onDeadline() runs once it is
  // due, from the worker's timer, never inside this call (the entry's
  // deadline_kind says whose it is). Cancelled when its owner closes or is
  // destroyed, also while the worker's timer pass has it due.
  void scheduleDeadline(DeadlineEntry* e, std::int64_t at);
  void cancelDeadline(DeadlineEntry* e);

  // Sessions with work for once the current callback has returned
  // (Session::onTlsResume, from an idle handle): TLS records held by a record
  // layer, a pipelined request to start. A closed session leaves the list in
  // sessionClosed.
  void deferTlsResume(Session* s);

 private:
  static void onConnection(uv_stream_t* server, int status);
  static void onAsync(uv_async_t* a);
  static void onSweep(uv_timer_t* t);
  static void onSpread(uv_timer_t* t);
  static void onDeadlines(uv_timer_t* t);
  void armDeadlineTimer();
  static void onTlsIdle(uv_idle_t* h);
  static constexpr std::int64_t kSpreadTickMs = 50;
  static constexpr int kBacklog = 4096;
  void applyConfig();
  std::span<balancer::Backend* const> candidates();
  void buildPlans();
  void startListening();
  void stopAccepting();
  void beginStop();
  void graceOver();
  void drainTunnels(std::int64_t backend_id);
  void maybeFinishStop();
  void forceStop();

  Runtime& rt_;
  std::uint32_t index_;
  uv_loop_t loop_;
  uv_async_t async_;
  uv_timer_t sweep_timer_;
  uv_timer_t spread_timer_;  // going-away closes spread over websocket_close_spread
  uv_timer_t deadline_timer_;  // armed for the earliest of deadlines_
  std::int64_t deadline_timer_at_ = -1;  // when it fires; -1 = not armed
  DeadlineHeap deadlines_;               // the sessions' deadlines
  std::vector<DeadlineEntry*> due_;      // scratch: the entries whose deadline came (a cancelled one is nulled)
  uv_idle_t tls_idle_;       // runs while tls_resume_ is not empty
  std::size_t goaway_left_ = 0;
  std::size_t goaway_batch_ = 1;
  conf::ConfigPtr config_;
  std::vector<std::unique_ptr<ListenerHandle>> listeners_;
  std::vector<Listening> listening_;
  IntrusiveList<Session> sessions_;
  std::size_t sessions_peak_ = 0;  // most sessions since memory was last given back
  static constexpr std::size_t kTrimAfterClosed = 1024;
  IntrusiveList<Stream, QueueTag> queue_;
  IntrusiveList<Session, TlsTag> tls_resume_;
  bool last_pick_capped_ = false;
  bool serving_queue_ = false;
  BufferPool buffers_;
  UpstreamPool upstreams_;
  AccessLog access_log_;  // this loop's buffer; written out by its own timer
  std::unique_ptr<balancer::Picker> picker_;
  balancer::HashPlacer placer_;  // placeByHash(); its table is built on first use
  conf::Balance picker_kind_ = conf::Balance::kLeastConn;
  std::vector<balancer::Backend*> pick_scratch_;  // every backend, in id order
  std::vector<balancer::HeaderField> header_scratch_;
  forward::AffinityPlans plans_;
  std::unique_ptr<PinStore> pins_;
  // Lent to sessions; a burst leaves at most the bound behind.
  FreeList<RequestDecoder, 256> request_decoders_;
  FreeList<ResponseDecoder, 256> response_decoders_;
  ObjectPool<Stream, 256> streams_;
  http::ResponseHead scratch_response_;
  http::ExtraFields extra_fields_;
  std::string field_scratch_;
  FreeList<WriteReq, 1024> writes_;
  std::uint64_t request_counter_ = 0;
  char request_prefix_[16];
  char discard_[4096];
  bool stopping_ = false;
  bool tunnels_told_ = false;  // every tunnel got its 1001 (beginStop)
  bool finished_ = false;
  std::function<void()> on_drained_;

  // Cross-thread requests, applied on the loop.
  std::atomic<bool> want_stop_{false};
  std::atomic<bool> want_config_{false};
  std::atomic<bool> want_force_{false};
  std::atomic<bool> want_handoff_{false};
  std::atomic<bool> want_listen_{false};
  std::atomic<bool> want_grace_over_{false};
  std::mutex drain_mu_;
  std::vector<std::int64_t> drain_requests_;  // -1 all, else a backend id
  std::vector<std::string> purge_requests_;   // cache prefixes; under drain_mu_
  std::vector<std::unique_ptr<forward::CacheStore>> caches_;  // by route index
  void purgeCaches(const std::string& prefix);
};

}  // namespace tether::proxy
