// Every metric of SPEC.md, declared once.
//
// The data path counts through plain lock-free cells (relaxed atomics, no
// allocation, no lock, label children resolved once per backend); the scrape
// turns them into prometheus-cpp MetricFamily values and the text format
// 0.0.4. prometheus-cpp is included only inside metrics/.
//
// Threads: counters may be bumped from any worker loop. backend() entries are
// created on the main loop (addBackend) before any worker can see the backend
// id, and are never freed. scrape() may run on any thread, concurrently with
// the data path; it reads each cell once with a relaxed load, so a scrape is a
// consistent-enough snapshot (a histogram's _count is the sum of its buckets,
// never smaller than a bucket it shows).
//
// Hot path cost (per call, steady state): Counter/Gauge one relaxed RMW;
// Histogram::observe a binary search over <= 20 bounds plus two relaxed adds;
// BackendMetrics::request / websocketUpgrade / websocketClose one acquire load
// of a row pointer plus one relaxed add. The rows behind those three are
// allocated lazily, once per (backend, method) / backend / (backend, closer),
// by whichever thread counts first (CAS on an atomic pointer; the loser frees
// its copy). Nothing here ever takes a lock.
//
// Label values written by the scrape:
//   method   toString(Method): GET HEAD POST PUT DELETE PATCH OPTIONS CONNECT TRACE OTHER
//   code     (requests) the status as a decimal string, "0" for anything outside 100..599
//   result   (websocket upgrades) the same: "101", or the refusing status
//   code     (websocket closes) 1000..1015 and 3000..4999 as decimal strings,
//            "none" for 0 (no close frame seen), "other" for anything else
//   by       client | backend | tether
//   direction downstream (towards the client) | upstream (towards the backend)
//   state    (tether_backend_state) unknown | up | down | draining; a removed
//            backend reports all four as 0 and tether_backend_up 0
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tether::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void add(std::int64_t n) { v_.fetch_add(n, std::memory_order_relaxed); }
  void inc() { add(1); }
  void dec() { add(-1); }
  void set(std::int64_t n) { v_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

// Cumulative histogram over fixed upper bounds (seconds). observe() is a
// binary search plus two relaxed atomic adds (the sum is kept in
// nanoseconds as an integer so that it needs no CAS loop). A value lands in
// the first bucket whose bound is >= it (Prometheus "le"); negative values and
// NaN count as 0, values above the last bound go to +Inf. bounds must be
// sorted ascending and finite.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double seconds);
  // The same for a whole number of milliseconds, without floating point:
  // what the data path measures.
  void observeMs(std::int64_t ms);
  const std::vector<double>& bounds() const { return bounds_; }
  // Non-cumulative; i <= bounds().size(), the last one is +Inf; beyond that 0.
  std::uint64_t bucketCount(std::size_t i) const;
  // Sum of all buckets (there is no separate count cell, so that the scrape's
  // _count always equals its +Inf bucket).
  std::uint64_t count() const;
  double sum() const;  // seconds, nanosecond resolution

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> bounds_ns_;  // bounds_, rounded to nanoseconds
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<std::uint64_t> sum_ns_{0};
};

// Bucket sets of SPEC.md.
const std::vector<double>& requestDurationBuckets();    // 5ms .. 1h
const std::vector<double>& firstByteBuckets();          // 1ms .. 30m
const std::vector<double>& connectBuckets();            // 0.5ms .. 10s
const std::vector<double>& websocketDurationBuckets();  // 1s .. 24h
const std::vector<double>& storeBuckets();              // 0.1ms .. 1s

// HTTP methods that get their own label value; anything else counts as "OTHER".
enum class Method : std::uint8_t {
  kGet,
  kHead,
  kPost,
  kPut,
  kDelete,
  kPatch,
  kOptions,
  kConnect,
  kTrace,
  kOther,
  kCount
};
Method methodFromString(std::string_view m);  // exact, case-sensitive (RFC 9110); else kOther
const char* toString(Method m);

enum class Direction : std::uint8_t { kDownstream, kUpstream };  // downstream = towards the client
enum class ClosedBy : std::uint8_t { kClient, kBackend, kTether };
enum class HealthResult : std::uint8_t { kOk, kFail, kTimeout };

// One backend's children, resolved once.
class BackendMetrics {
 public:
  explicit BackendMetrics(std::string name);
  ~BackendMetrics();
  const std::string& name() const { return name_; }

  // tether_http_requests_total{backend,method,code}; code 100..599, others clamp to 0.
  // kCount counts as kOther.
  void request(Method m, int code);
  Histogram request_duration{requestDurationBuckets()};
  Histogram first_byte{firstByteBuckets()};
  Histogram upstream_connect{connectBuckets()};
  Counter upstream_connect_errors;
  // tether_upstream_tls_handshakes_total{session="new"|"resumed"}: completed
  // handshakes to an https:// backend (a pooled connection makes none).
  Counter upstream_tls_full;
  Counter upstream_tls_resumed;
  Gauge upstream_active;  // tether_upstream_connections{state="active"}
  Gauge upstream_idle;    // tether_upstream_connections{state="idle"}
  Counter retries;
  Gauge up;  // tether_backend_up
  Gauge weight;  // tether_backend_weight: configured, or as the admin set it
  // tether_backend_state: set the current state (0 unknown, 1 up, 2 down, 3 draining, 4 removed).
  void setState(int state) { state_.store(state, std::memory_order_relaxed); }
  int state() const { return state_.load(std::memory_order_relaxed); }
  void healthCheck(HealthResult r) { health_[static_cast<int>(r)].inc(); }
  Counter ejections;
  void websocketUpgrade(int code);  // result label: "101" or the refusing status
  Gauge websocket_active;
  Counter websocket_messages[2];               // indexed by Direction
  void websocketClose(int code, ClosedBy by);  // code 0 = no close frame seen ("none")
  Histogram websocket_duration{websocketDurationBuckets()};
  Gauge sse_active;
  Counter bytes[2];  // indexed by Direction

  // Readers (collector, tests, admin JSON); same clamping as the writers.
  std::uint64_t requestCount(Method m, int code) const;
  std::uint64_t websocketUpgradeCount(int code) const;
  std::uint64_t websocketCloseCount(int code, ClosedBy by) const;
  std::uint64_t healthCount(HealthResult r) const { return health_[static_cast<int>(r)].value(); }

  // For the collector; defined in metrics/backend_cells.h.
  struct Impl;
  Impl& impl() { return *impl_; }
  const Impl& impl() const { return *impl_; }

 private:
  std::string name_;
  std::atomic<int> state_{0};
  Counter health_[3];
  std::unique_ptr<Impl> impl_;
};

enum class AffinityResult : std::uint8_t { kHit, kMiss, kRepin, kStoreError };
enum class StoreOp : std::uint8_t { kGet, kSet, kRefresh };
// A response that reveals a new affinity key (an Engine.IO handshake's sid,
// an inserted cookie) waits for the store to hold its pin: stored, the store
// was down or refused (released at once), or no answer within
// affinity.lookup_timeout (released anyway).
enum class PinConfirm : std::uint8_t { kStored, kUnavailable, kTimeout };

// HTTP/2 connections to clients: why a GOAWAY was sent
// (tether_http2_goaways_total{reason}), and streams that ended in an error
// (tether_http2_stream_errors_total{reason}).
enum class Http2Reason : std::uint8_t { kGraceful, kRapidReset, kGlitches, kProtocol, kFlood };
enum class Http2StreamError : std::uint8_t { kRefused, kProtocol, kHeadersTooLarge, kClientReset };

class Metrics {
 public:
  static constexpr std::size_t kMaxBackends = 4096;
  Metrics();
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Main loop: creates the children of backend `id` (dense ids from 0,
  // id < kMaxBackends, else std::length_error; a start-up/reload error, never
  // on the data path). Adding an id again with the same name returns the
  // existing entry (counts survive a reload); with another name it installs a
  // fresh entry, and the old one stays allocated (a worker may still hold it)
  // but is no longer scraped.
  BackendMetrics& addBackend(std::uint32_t id, const std::string& name);
  // Any loop: O(1). The backend must have been added.
  BackendMetrics& backend(std::uint32_t id) {
    return *backends_[id].load(std::memory_order_acquire);
  }
  // Any thread: the added backends in id order (gaps skipped). Pointers live
  // as long as this Metrics.
  std::vector<const BackendMetrics*> backends() const;

  Gauge downstream_active;
  Counter downstream_total;
  // Client connections speaking HTTP/2 (also counted above).
  Gauge http2_connections_active;
  Counter http2_connections_total;
  Counter& http2Goaway(Http2Reason r) { return http2_goaway_[static_cast<int>(r)]; }
  Counter& http2StreamError(Http2StreamError r) { return http2_stream_errors_[static_cast<int>(r)]; }
  void affinityLookup(AffinityResult r) { affinity_[static_cast<int>(r)].inc(); }
  Gauge affinity_store_up;
  void pinConfirm(PinConfirm r) { pin_confirm_[static_cast<int>(r)].inc(); }
  std::uint64_t pinConfirmCount(PinConfirm r) const { return pin_confirm_[static_cast<int>(r)].value(); }
  Histogram& storeSeconds(StoreOp op) { return *store_seconds_[static_cast<int>(op)]; }
  Counter config_reloads_ok;
  Counter config_reloads_invalid;
  // Compressed responses (compression:), by coding: 0 zstd, 1 br, 2 gzip.
  // tether_compression_bytes_total{algorithm, stage="in"|"out"}: the body
  // bytes as the backend sent them and as the client received them;
  // tether_compressed_responses_total{algorithm}.
  static constexpr int kCodings = 3;
  Counter compression_in[kCodings];
  Counter compression_out[kCodings];
  Counter compressed_responses[kCodings];
  // tether_upgrades_total{result}: binaries started by SIGUSR2 (or by a reload
  // that changes listeners, workers or the admin address) that took over, or not.
  Counter upgrades_ok;
  Counter upgrades_failed;
  // TLS listeners: handshakes completed, and connections that ended before one
  // did (not TLS, refused by OpenSSL, or too slow).
  Counter tls_handshakes_ok;
  Counter tls_handshakes_error;
  // tether_request_timeouts_total{phase}: requests answered 408 (or closed)
  // because their head did not arrive within timeouts.request_header
  // (phase="header"), or because no body byte came for timeouts.request_body
  // while the body was incomplete (phase="body").
  Counter request_timeouts_header;
  Counter request_timeouts_body;
  // routes[].cache: tether_cache_requests_total{result}: requests answered
  // from a cache (hit), looked up and sent to a backend (miss), or on a
  // cached route but not eligible (bypass: a method other than GET/HEAD,
  // credentials, Range); tether_cache_stored_total: responses stored;
  // tether_cache_bytes: bytes the stores hold (keys, heads, bodies).
  enum class CacheResult : std::uint8_t { kHit, kMiss, kBypass };
  void cacheRequest(CacheResult r) { cache_requests_[static_cast<int>(r)].inc(); }
  std::uint64_t cacheCount(CacheResult r) const { return cache_requests_[static_cast<int>(r)].value(); }
  Counter cache_stored;
  Gauge cache_bytes;
  // Requests answered from a cache count in tether_http_requests_total (and
  // the duration histogram) under backend="cache".
  BackendMetrics cache_answers{"cache"};

  // Text exposition format 0.0.4, every family of SPEC.md with HELP and TYPE,
  // even when it has no sample yet. Allocates; never call it on a worker loop's
  // hot path. Label-less counters and fixed label sets (affinity results,
  // reload results, store ops) always appear; per-(method, code), upgrade and
  // close samples appear once non-zero.
  std::string scrape() const;
  static constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

  std::uint64_t affinityCount(AffinityResult r) const {
    return affinity_[static_cast<int>(r)].value();
  }

 private:
  std::array<std::atomic<BackendMetrics*>, kMaxBackends> backends_{};
  std::atomic<std::size_t> backend_count_{0};  // highest added id + 1
  std::vector<std::unique_ptr<BackendMetrics>> owned_;
  Counter affinity_[4];
  Counter pin_confirm_[3];
  Counter cache_requests_[3];
  Counter http2_goaway_[5];
  Counter http2_stream_errors_[4];
  std::unique_ptr<Histogram> store_seconds_[3];
};

}  // namespace tether::metrics
