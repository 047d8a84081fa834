// One request's exchange: everything a request causes between its first byte
// and the end of its answer: its head as decoded and as sent, the affinity
// lookup, the backend choice and the attempts made, the response's framing,
// and what the access log reports. Created for the request and destroyed
// when it ends, never reset: the next request on the connection gets a new
// one.
//
// Owner: the request's stream (proxy/stream.h), which holds it by value:
// made with the stream when a request's first byte arrives (or when the
// connection answers before any: a refusal, a plain-text request on a TLS
// port) and destroyed with it. The HTTP/1 downstream (proxy/session.h) that
// decodes the request keeps its request-side offsets and its re-encoded
// chunked body here too.
//
// What it owns: its buffers (the request head as sent upstream, a re-encoded
// request body), given back to the pool on destruction or earlier by
// releaseBuffers(), and its AffinityState. The stream cancels the store
// tickets the affinity state names before it lets it go (the store calls
// back the stream, a PinWaiter, not the exchange).
//
// Offsets named "into in_" and "into up_in_" index the downstream's read
// buffer and the stream's upstream buffer; they are meaningful only to
// those two. Loop-affine, like its owner.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "balancer/affinity_key.h"
#include "proxy/forward/cache.h"
#include "proxy/forward/compression.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/io/buffer_pool.h"

namespace tether::balancer {
struct Backend;
}

namespace tether::proxy {
struct PinTicket;
}

namespace tether::forward {

struct AffinityPlan;  // route.h

// One request's affinity: its key (hashed for the store), the lookup in
// flight, and what the response must carry (an inserted cookie) or teach us
// (an Engine.IO sid).
struct AffinityState {
  std::shared_ptr<const AffinityPlan> plan;
  std::string key;        // "SOURCE[:NAME]=value"; empty = none
  std::string store_key;  // balancer::pinStoreKey(key)
  std::uint64_t hash = 0;
  std::string set_cookie;  // Set-Cookie value for an inserted cookie
  proxy::PinTicket* ticket = nullptr;      // the lookup in flight
  proxy::PinTicket* set_ticket = nullptr;  // the confirmed set of a pin this response reveals
  std::int64_t hold_since = 0;             // when the response started to wait for it
  std::unique_ptr<balancer::EngineIoSidSniffer> sniffer;
  bool from_pin = false;  // the backend is an existing pin (not a placement)
};

struct Exchange {
  static constexpr std::uint8_t kNoMethod = 0xff;  // logged as "-"

  // `pool` gives the buffers their memory and takes it back; it outlives
  // the exchange. `bytes_read` downstream bytes already read belong to this
  // request (pipelined behind the previous one).
  Exchange(proxy::BufferPool& pool, std::uint64_t bytes_read) : bytes_in(bytes_read), pool_(pool) {}
  ~Exchange() { releaseBuffers(); }
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Gives the buffers back now (the connection closed); the rest stays readable.
  void releaseBuffers() {
    up_head.release(pool_);
    up_body.release(pool_);
  }

  // The request. Offsets into in_: [req_start, head_end) head, [body_sent,
  // parsed) body bytes parsed and not yet forwarded; parsed is where the
  // decoder stands. Into up_in_ the same way: [resp_body_sent, resp_parsed).
  std::uint32_t req_start = 0;
  std::uint32_t head_end = 0;
  std::uint32_t body_sent = 0;
  std::uint32_t parsed = 0;
  std::uint32_t resp_body_sent = 0;
  std::uint32_t resp_parsed = 0;
  std::uint8_t method = kNoMethod;  // http::kMethod*, once the head is decoded
  std::uint8_t http_minor = 1;
  bool keep_alive = true;  // the client's wish
  bool head_done = false;
  bool request_done = false;     // whole request parsed
  bool request_sent = false;     // whole request written upstream
  bool request_trimmed = false;  // request bytes were dropped from in_: no replay
  bool upgrade = false;          // request asked for an upgrade
  bool head_request = false;
  bool req_chunked = false;       // chunked request body: re-encoded into up_body
  bool request_id_present = false;  // request_id is the client's
  char request_id[32];
  http::ChunkStager req_stager;
  proxy::IoBuffer up_head;                // the request head as sent upstream (kept until the response starts, for a retry)
  proxy::IoBuffer up_body;                // a chunked request body, re-encoded for the backend
  std::uint32_t up_body_sent = 0;  // up_body [0, up_body_sent) is queued or written

  // Routing: the affinity key and lookup, the backend queue, the attempts.
  std::unique_ptr<AffinityState> aff;  // when the request has an affinity key
  bool looking_up = false;             // waiting for the pin store
  bool queued = false;                 // waiting for a backend under its connection cap
  bool active_counted = false;         // counted in the backend's active_requests
  bool retrying = false;
  bool head_written = false;  // up_head queued to the backend
  std::uint8_t attempts = 0;
  std::uint8_t tried_count = 0;
  std::uint32_t tried[4] = {};
  balancer::Backend* queued_for = nullptr;  // ... for this one (a pin or a placement)
  std::uint64_t client_hash = 0;            // consistent_hash: the client's address, hashed at dispatch

  // The response.
  std::uint16_t status = 0;
  bool response_started = false;    // any response byte received from the backend
  bool response_head_sent = false;  // final response head queued to the client
  bool response_done = false;
  bool resp_keep_alive = false;
  bool dechunk = false;     // a chunked response: decoded and staged, framed again by the downstream
  bool resp_extra = false;  // the backend sent bytes beyond the response's framing
  bool upgrade_accepted = false;
  bool abort_when_flushed = false;
  bool pin_hold = false;  // the response waits for the store to hold the pin it reveals
  bool pin_sync = false;  // inside confirmPin
  bool sse = false;       // an event stream, counted in sse_active
  bool compress_vary = false;  // the response is eligible for compression: Vary says so
  // The last upstream read filled the space offered: more is likely pending,
  // so the encoder is not flushed until a shorter read or an empty one (the
  // backend paused). Fewer flushes: fewer, better blocks, less CPU.
  bool up_read_filled = false;
  // The body is compressed on its way to the client (compression.h); set
  // with the final response head.
  std::unique_ptr<CompressedBody> zip;
  // routes[].cache (cache.h): the entry this request is answered from (held
  // until its bytes are written), or the response being stored.
  std::shared_ptr<const CacheEntry> cache_hit;
  std::unique_ptr<CacheFill> cache_fill;

  // For the access log and the metrics.
  std::int64_t started_ms = 0;     // the request's first byte (loop ms)
  std::uint64_t started_ns = 0;    // the same, from uv_hrtime()
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  std::int64_t first_byte_ms = -1;
  // From uv_hrtime() (microseconds; the loop's clock has milliseconds).
  std::uint64_t first_byte_ns = 0;       // the first response byte; 0 = none yet
  std::uint64_t connect_started_ns = 0;  // a new upstream connect began
  std::int64_t connect_us = -1;          // its duration; 0 = a pooled connection; -1 = none
  bool upstream_reused = false;          // the upstream connection came from the pool

 private:
  proxy::BufferPool& pool_;
};

}  // namespace tether::forward
