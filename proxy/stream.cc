#include "proxy/stream.h"

#include <algorithm>
#include <cstring>

#include "balancer/affinity_key.h"
#include "balancer/backend.h"
#include "health/ejector.h"
#include "proxy/forward/compression.h"
#include "proxy/forward/header_policy.h"
#include "proxy/forwarded.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/http/status.h"
#include "proxy/log.h"
#include "proxy/worker.h"
#include "proxy/write_req.h"

namespace tether::proxy {

namespace {

// Compressed output waiting to be written, beyond which the backend is read
// no further (backpressure).
constexpr std::size_t kMaxCompressedPending = 64 * 1024;

using balancer::Backend;
using http::HeaderKind;
using http::HeaderList;

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

}  // namespace

// ---------------------------------------------------------------------------
// Lifetime

Stream::Stream(Worker& worker, Downstream& ds, std::uint64_t bytes_read)
    : worker_(worker), ds_(ds), ex_(worker.buffers(), bytes_read) {
  deadline_kind = kDeadlineStream;
  ex_.started_ms = worker.now();
  ex_.started_ns = uv_hrtime();
}

Stream::~Stream() {
  abort();
  if (resp_) worker_.giveResponseDecoder(resp_);
}

// Everything held is let go; idempotent.
void Stream::abort() {
  worker_.cancelDeadline(this);
  if (done_ && !upstream_ && !ex_.queued && !ex_.aff && !ex_.active_counted && !ex_.sse) {
    body_.release(worker_.buffers());
    up_in_.release(worker_.buffers());
    return;
  }
  done_ = true;
  if (ex_.queued) {
    ex_.queued = false;
    worker_.dequeue(this);
  }
  countActive(false);
  endAffinity();
  if (ex_.sse && backend_) worker_.metrics().backend(backend_->id).sse_active.dec();
  ex_.sse = false;
  releaseUpstream(false);
  body_.release(worker_.buffers());
  up_in_.release(worker_.buffers());
  ex_.releaseBuffers();
}

void Stream::countActive(bool on) {
  if (on == ex_.active_counted || !backend_) return;
  ex_.active_counted = on;
  if (on) {
    backend_->active_requests.fetch_add(1, std::memory_order_relaxed);
  } else {
    backend_->active_requests.fetch_sub(1, std::memory_order_relaxed);
    if (worker_.config().limits.max_connections_per_backend) worker_.slotFreed();
  }
}

std::string_view Stream::path() const {
  std::string_view url = ds_.request().target;
  return url.substr(0, url.find('?'));
}

// ---------------------------------------------------------------------------
// Deadlines: one entry per stream; activity only stamps times, and an entry
// that comes early re-arms itself for the remainder.

std::int64_t Stream::deadline() const {
  const conf::Timeouts& t = worker_.config().timeouts;
  const conf::Limits& lim = worker_.config().limits;
  if (state_ == State::kRouting) {
    if (ex_.queued) return wait_started_ + lim.queue_timeout;
    if (ex_.looking_up && ex_.aff) return wait_started_ + ex_.aff->plan->cfg.lookup_timeout;
    return bodyDeadline(wait_started_ + t.connect);
  }
  std::int64_t d = ex_.request_sent && !ex_.response_started ? wait_started_ + t.upstream_first_byte
                                                             : std::max(last_up_ms_, ds_.lastRequestByteMs()) + t.upstream_idle;
  d = bodyDeadline(d);
  if (ex_.pin_hold && ex_.aff) d = std::min(d, pinHoldDeadline());
  return d;
}

// timeouts.request_body: while the request body is incomplete, a gap
// without a byte from the client is bounded too.
std::int64_t Stream::bodyDeadline(std::int64_t d) const {
  std::int64_t limit = worker_.config().timeouts.request_body;
  if (ds_.requestComplete() || limit <= 0) return d;
  return std::min(d, ds_.lastRequestByteMs() + limit);
}

std::int64_t Stream::pinHoldDeadline() const { return ex_.aff->hold_since + ex_.aff->plan->cfg.lookup_timeout; }

bool Stream::bodyTimedOut() const {
  std::int64_t limit = worker_.config().timeouts.request_body;
  return !ds_.requestComplete() && limit > 0 && worker_.now() >= ds_.lastRequestByteMs() + limit;
}

// The entry only ever moves earlier here; one that comes before the current
// deadline re-arms itself (onDeadline), so a request's steps cost no heap
// operation in the steady state.
void Stream::armTimer() {
  if (done_) return;
  std::int64_t d = deadline();
  if (scheduled() && deadline_at <= d) return;
  worker_.scheduleDeadline(this, std::max(d, worker_.now()));
}

void Stream::waitFrom(std::int64_t now) {
  wait_started_ = now;
  armTimer();
}

void Stream::onDeadline() {
  Entry entry(this);
  if (done_) return;
  if (worker_.now() < deadline()) {
    armTimer();
    return;
  }
  onTimeout();
}

void Stream::onTimeout() {
  if (state_ == State::kRouting) {
    if (ex_.queued) {
      ex_.queued = false;
      ex_.queued_for = nullptr;
      worker_.dequeue(this);
      answerLocally(503, "tether: no backend slot within queue_timeout\n");
      return;
    }
    if (ex_.looking_up && ex_.aff) {
      // The store is slow: go on with what we know locally, then hashing.
      if (ex_.aff->ticket) worker_.pins().cancel(ex_.aff->ticket);
      ex_.aff->ticket = nullptr;
      worker_.metrics().affinityLookup(metrics::AffinityResult::kStoreError);
      std::optional<std::string> local = worker_.pins().peek(ex_.aff->store_key);
      onPinLookup(false, local ? *local : std::string());
      return;
    }
    if (bodyTimedOut()) {
      requestBodyTimeout();
      return;
    }
    onUpstreamFailure(Fault::kConnect, UV_ETIMEDOUT);
    return;
  }
  if (ex_.pin_hold && ex_.aff && worker_.now() >= pinHoldDeadline()) {
    if (ex_.aff->set_ticket) worker_.pins().cancel(std::exchange(ex_.aff->set_ticket, nullptr));
    releasePinHold(metrics::PinConfirm::kTimeout);
  } else if (bodyTimedOut()) {
    requestBodyTimeout();
  } else if (ex_.request_sent && !ex_.response_started) {
    onUpstreamFailure(Fault::kFirstByteTimeout, UV_ETIMEDOUT);
  } else {
    onUpstreamFailure(Fault::kUpstreamTimeout, UV_ETIMEDOUT);
  }
}

// The client stopped sending its body: 408, and the backend connection,
// which holds half a request, is closed.
void Stream::requestBodyTimeout() {
  log::debug("request body timeout", {{"client", ds_.peer().ip},
                                      {"request_id", std::string_view(ex_.request_id, ::strnlen(ex_.request_id, 32))}});
  worker_.metrics().request_timeouts_body.inc();
  releaseUpstream(false);
  if (ex_.response_head_sent) {
    cut();
    return;
  }
  answerLocally(408, "tether: request body timeout\n");
}

// ---------------------------------------------------------------------------
// Routing

void Stream::start() {
  Entry entry(this);
  const conf::Config& cfg = worker_.config();
  started_ = true;
  // The request id: the client's when it sent a usable one, else ours.
  const HeaderList& h = ds_.request().headers;
  long rid = h.find(HeaderKind::kXRequestId);
  if (rid >= 0 && !h.value(static_cast<std::size_t>(rid)).empty() &&
      h.value(static_cast<std::size_t>(rid)).size() <= sizeof ex_.request_id) {
    std::string_view v = h.value(static_cast<std::size_t>(rid));
    std::memset(ex_.request_id, 0, sizeof ex_.request_id);
    std::memcpy(ex_.request_id, v.data(), v.size());
    ex_.request_id_present = true;
  } else {
    worker_.newRequestId(ex_.request_id);
    ex_.request_id_present = false;
  }
  waitFrom(worker_.now());
  std::string_view p = path();
  if (serveFromCache(p)) return;
  const std::shared_ptr<const forward::AffinityPlan>* plan = worker_.affinityFor(p);
  if (plan && startAffinity(*plan)) return;  // the store answers later
  if (done_ || backend_) return;
  bool by_client = cfg.balance == conf::Balance::kConsistentHash;
  if (by_client) {
    char text[46];
    ex_.client_hash = balancer::hashKey(clientAddress(text));
  }
  proceed(worker_.pick(std::span<const std::uint32_t>(ex_.tried, ex_.tried_count), ex_.client_hash, by_client));
}

// The client's address after trusted_proxies (forwarded.h): what client_ip
// keys and consistent_hash use. Reads the head's X-Forwarded-For only when
// the peer is trusted.
std::string_view Stream::clientAddress(char (&out)[46]) const {
  const std::vector<conf::Cidr>& trusted = worker_.config().trusted_proxies;
  const Peer& p = ds_.peer();
  PeerAddress peer{p.ip, p.addr, p.family};
  if (!isTrusted(peer.bytes, peer.family, trusted)) return peer.text;
  const HeaderList& h = ds_.request().headers;
  std::string_view xff[64];
  std::size_t n = 0;
  for (std::size_t i = 0; i < h.size() && n < std::size(xff); ++i) {
    if (h.kind(i) == HeaderKind::kXForwardedFor) xff[n++] = h.value(i);
  }
  return proxy::clientAddress(peer, std::span<const std::string_view>(xff, n), trusted, out);
}

// A request on a route with a cache: a fresh entry answers it here (304
// when its validators match), without a backend; otherwise a GET's response
// is stored as it is forwarded, if it turns out storable. The key's coding
// is the one the request negotiates, so the answer stored under it is the
// one such a client gets (compressed once, or identity when the response
// was not compressible).
bool Stream::serveFromCache(std::string_view path) {
  std::size_t route = 0;
  const conf::Cache* cc = nullptr;
  forward::CacheStore* store = worker_.cacheFor(path, &route, &cc);
  if (!store) return false;
  metrics::Metrics& m = worker_.metrics();
  http::RequestHead& req = ds_.request();
  if (forward::requestBypass(req, *cc) != forward::CacheBypass::kNone) {
    m.cacheRequest(metrics::Metrics::CacheResult::kBypass);
    return false;
  }
  const conf::Compression& comp = worker_.compressionFor(path);
  forward::Coding coding = comp.enabled ? forward::requestCoding(req, comp) : forward::Coding::kIdentity;
  std::string key = forward::cacheKey(route, coding, req.target);
  // A hit is answered at once only when the whole request is in: its answer
  // ends the stream, and the downstream goes on from there.
  std::size_t before = store->bytes();
  std::shared_ptr<const forward::CacheEntry> e = ds_.requestSent() ? store->lookup(key, worker_.now()) : nullptr;
  worker_.cacheResized(before, store->bytes());
  if (!e) {
    m.cacheRequest(metrics::Metrics::CacheResult::kMiss);
    if (ex_.method == http::kMethodGet) {
      ex_.cache_fill = std::make_unique<forward::CacheFill>();
      ex_.cache_fill->store = store;
      ex_.cache_fill->entry = std::make_shared<forward::CacheEntry>();
      ex_.cache_fill->entry->key = std::move(key);
    }
    return false;
  }
  m.cacheRequest(metrics::Metrics::CacheResult::kHit);
  bool not_modified = forward::notModified(req, *e);
  bool body = !not_modified && ex_.method != http::kMethodHead;
  ex_.status = not_modified ? 304 : 200;
  ex_.cache_hit = e;
  state_ = State::kExchange;
  // The stored head, as a head: the fields the backend sent, then ours.
  http::ResponseHead& r = worker_.scratchResponse();
  r.clear();
  r.status = ex_.status;
  r.reason.assign(http::reasonPhrase(ex_.status));
  r.framing = not_modified ? http::Framing::kNone : http::Framing::kLength;
  r.content_length = e->body.size();
  std::string_view fields = e->fields;
  while (!fields.empty()) {
    std::size_t eol = fields.find("\r\n");
    std::string_view line = fields.substr(0, eol);
    fields.remove_prefix(eol == std::string_view::npos ? fields.size() : eol + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.add(line.substr(0, colon), value);
  }
  forward::DownstreamResponse out = ds_.responseFraming(r, false);
  out.request_id = std::string_view(ex_.request_id, ::strnlen(ex_.request_id, 32));
  http::ExtraFields& extra = worker_.extraFields();
  forward::downstreamResponseFields(r, out, extra);
  std::string& age = worker_.fieldScratch();
  age = std::to_string(forward::entryAge(*e, worker_.now()));
  extra.add("Age", age);
  if (!not_modified) {
    int n = std::snprintf(extra.digits, sizeof extra.digits, "%zu", e->body.size());
    extra.add("Content-Length", std::string_view(extra.digits, static_cast<std::size_t>(n)));
  }
  if (!ds_.sendHead(r, extra)) {
    answerLocally(502, "tether: response heads too large\n");
    return true;
  }
  ex_.response_head_sent = true;
  ex_.response_done = true;
  ex_.first_byte_ms = worker_.now();
  ex_.first_byte_ns = uv_hrtime();
  if (body && !e->body.empty()) {
    ex_.bytes_out += e->body.size();
    if (ds_.sendBody(e->body.data(), e->body.size())) {
      sending_ = true;
      return true;
    }
    if (!done_) afterResponseWrite();
    return true;
  }
  end_sent_ = true;
  if (ds_.sendEnd(nullptr)) {
    sending_ = true;
    return true;
  }
  if (!done_) afterResponseWrite();
  return true;
}

// The response head of a request whose answer is being stored: the fields
// the client gets, but those of this connection and this request.
void Stream::cacheResponseHead(const http::ResponseHead& r, const http::ExtraFields& extra) {
  forward::CacheEntry& e = *ex_.cache_fill->entry;
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
void Stream::storeCached() {
  std::unique_ptr<forward::CacheFill> fill = std::move(ex_.cache_fill);
  if (!fill->ok || ex_.status != 200 || ex_.abort_when_flushed) return;
  std::int64_t now = worker_.now();
  fill->entry->body.shrink_to_fit();  // the bound counts sizes: no spare capacity is held
  fill->entry->fields.shrink_to_fit();
  fill->entry->stored_ms = now - fill->age_s * 1000;
  fill->entry->expires_ms = now + fill->lifetime_s * 1000;
  std::size_t before = fill->store->bytes();
  if (fill->store->insert(std::move(fill->entry))) worker_.metrics().cache_stored.inc();
  worker_.cacheResized(before, fill->store->bytes());
}

void Stream::proceed(Backend* b) {
  const std::uint64_t cap = worker_.config().limits.max_connections_per_backend;
  // Above the cap a request waits for a slot, up to queue_timeout: one whose
  // backend is decided (a pin, a placement) for a slot on that backend, the
  // others for any (every candidate was at its cap).
  if (cap && (b ? b->load() >= cap : worker_.lastPickCapped())) {
    if (worker_.enqueue(this)) {
      ex_.queued = true;
      ex_.queued_for = b;
      state_ = State::kRouting;
      waitFrom(worker_.now());
      return;
    }
    answerLocally(503, "tether: backends at capacity, queue full\n");
    return;
  }
  if (!b) {
    answerLocally(503, "tether: no backend available\n");
    return;
  }
  backend_ = b;
  countActive(true);
  connectUpstream();
}

// Finds the request's affinity key and starts its pin lookup. Returns true
// when the answer is still to come; otherwise the backend is chosen (or the
// request answered) already, or no key applies (backend_ still null).
bool Stream::startAffinity(const std::shared_ptr<const forward::AffinityPlan>& plan) {
  const http::RequestHead& req = ds_.request();
  const HeaderList& h = req.headers;
  std::vector<balancer::HeaderField>& fields = worker_.headerScratch();
  fields.clear();
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!h.dropped(i)) fields.push_back({h.name(i), h.value(i)});
  std::string_view url = req.target;
  std::size_t q = url.find('?');
  balancer::RequestView view;
  view.method = http::methodName(ex_.method);
  view.path = url.substr(0, q);
  view.query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
  view.headers = fields;
  char client_text[46];
  view.client_ip = clientAddress(client_text);

  ex_.aff = forward::startAffinity(plan, view, ds_.peer().tls);
  if (!ex_.aff || ex_.aff->key.empty()) return false;  // none, or only a handshake to learn from
  if (!ex_.aff->set_cookie.empty()) {
    // A brand-new key: nothing to look up.
    worker_.metrics().affinityLookup(metrics::AffinityResult::kMiss);
    Backend* b = worker_.placeByHash(ex_.aff->hash, std::span<const std::uint32_t>(ex_.tried, ex_.tried_count));
    if (b) pinTo(b, false);
    proceed(b);
    return false;
  }
  ex_.looking_up = true;
  waitFrom(worker_.now());
  PinTicket* t = worker_.pins().get(ex_.aff->store_key, this);
  if (ex_.aff && ex_.looking_up) ex_.aff->ticket = t;
  return true;
}

Backend* Stream::slotCandidate() {
  if (ex_.queued_for) {
    const std::uint64_t cap = worker_.config().limits.max_connections_per_backend;
    return ex_.queued_for->load() < cap ? ex_.queued_for : nullptr;
  }
  bool by_client = worker_.config().balance == conf::Balance::kConsistentHash;
  return worker_.pick(std::span<const std::uint32_t>(ex_.tried, ex_.tried_count), ex_.client_hash, by_client);
}

void Stream::onSlot(Backend* b) {
  Entry entry(this);
  if (!ex_.queued || done_) return;
  ex_.queued = false;
  ex_.queued_for = nullptr;
  proceed(b);
}

void Stream::onPinLookup(bool store_ok, const std::string& pinned_name) {
  Entry entry(this);
  if (!ex_.looking_up || done_ || !ex_.aff) return;
  ex_.looking_up = false;
  ex_.aff->ticket = nullptr;
  const conf::Affinity& cfg = ex_.aff->plan->cfg;
  std::int64_t wall = Worker::nowWallMs();
  std::span<const std::uint32_t> tried(ex_.tried, ex_.tried_count);
  Backend* pinned = pinned_name.empty() ? nullptr : worker_.runtime().backends.findByName(pinned_name);
  if (pinned && pinned->available(wall)) {
    // A pin holds while its backend is up and not draining.
    if (store_ok) worker_.metrics().affinityLookup(metrics::AffinityResult::kHit);
    worker_.pins().refresh(ex_.aff->store_key, cfg.ttl);
    ex_.aff->from_pin = true;
    proceed(pinned);
    return;
  }
  if (pinned) {
    if (cfg.on_target_down == conf::OnTargetDown::kStrict) {
      answerLocally(503, "tether: the pinned backend is unavailable\n");
      return;
    }
    worker_.metrics().affinityLookup(metrics::AffinityResult::kRepin);
    Backend* b = worker_.placeByHash(ex_.aff->hash, tried);
    if (b) pinTo(b, true);
    proceed(b);
    return;
  }
  if (store_ok) worker_.metrics().affinityLookup(metrics::AffinityResult::kMiss);
  Backend* b = worker_.placeByHash(ex_.aff->hash, tried);
  if (b && !store_ok) {
    // No answer from the store (slow or down): the store may hold a pin we
    // could not read, made by another tether; place without replacing it.
    worker_.pins().place(ex_.aff->store_key, b->name, cfg.ttl);
  } else if (b) {
    pinTo(b, false);
  }
  proceed(b);
}

void Stream::pinTo(Backend* b, bool repin) {
  if (!ex_.aff || ex_.aff->key.empty()) return;
  if (!ex_.aff->set_cookie.empty()) {
    confirmPin(ex_.aff->store_key, b->name);  // the response hands the new cookie out
  } else {
    worker_.pins().set(ex_.aff->store_key, b->name, ex_.aff->plan->cfg.ttl);
  }
  if (repin) log::info("affinity repin", {{"backend", b->name}, {"request_id", std::string_view(ex_.request_id, 32)}});
}

// The Engine.IO handshake's answer names the session id: pin it to the
// backend that issued it, so that every later poll and the upgrade find it.
void Stream::sniffSid(std::string_view body) {
  balancer::EngineIoSidSniffer& sn = *ex_.aff->sniffer;
  if (ex_.status != 200) {
    ex_.aff->sniffer.reset();
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
  ex_.aff->sniffer.reset();
}

// A pin this response reveals (an Engine.IO sid, an inserted cookie): the
// client may use it at once, through another tether that shares the store,
// so the response is held (pumpResponse) until the store holds the pin, for
// at most affinity.lookup_timeout. Nothing else waits for a store write.
void Stream::confirmPin(const std::string& store_key, const std::string& backend) {
  if (ex_.aff->set_ticket) worker_.pins().cancel(std::exchange(ex_.aff->set_ticket, nullptr));  // a retry re-places
  ex_.pin_hold = true;
  ex_.pin_sync = true;
  ex_.aff->hold_since = worker_.now();
  PinTicket* t = worker_.pins().setConfirmed(store_key, backend, ex_.aff->plan->cfg.ttl, this);
  ex_.pin_sync = false;
  if (!t) return;  // answered already (onPinStored)
  ex_.aff->set_ticket = t;
  armTimer();
}

void Stream::onPinStored(bool stored) {
  Entry entry(this);
  if (!ex_.pin_hold || done_ || !ex_.aff) return;
  ex_.aff->set_ticket = nullptr;
  releasePinHold(stored ? metrics::PinConfirm::kStored : metrics::PinConfirm::kUnavailable);
}

void Stream::releasePinHold(metrics::PinConfirm why) {
  ex_.pin_hold = false;
  worker_.metrics().pinConfirm(why);
  if (why == metrics::PinConfirm::kUnavailable) {
    // The outage itself is logged once by the store.
    log::debug("affinity pin not stored: the store is down", {{"request_id", std::string_view(ex_.request_id, 32)}});
  } else if (why == metrics::PinConfirm::kTimeout) {
    // At most a line a second per worker: a silent store would otherwise
    // log every handshake.
    thread_local std::int64_t last_ms = -1'000'000;
    thread_local std::uint64_t unlogged = 0;
    if (worker_.now() - last_ms >= 1000) {
      log::warn("affinity pin not acknowledged within lookup_timeout",
                {{"request_id", std::string_view(ex_.request_id, 32)}, {"also_since_last_line", unlogged}});
      last_ms = worker_.now();
      unlogged = 0;
    } else {
      ++unlogged;
    }
  }
  if (ex_.pin_sync) return;  // inside confirmPin: nothing was held yet
  armTimer();
  if (state_ == State::kExchange) pumpResponse();
}

void Stream::endAffinity() {
  if (!ex_.aff) return;
  if (ex_.aff->ticket) worker_.pins().cancel(ex_.aff->ticket);
  if (ex_.aff->set_ticket) worker_.pins().cancel(ex_.aff->set_ticket);
  ex_.aff.reset();
  ex_.looking_up = false;
}

// ---------------------------------------------------------------------------
// Upstream: the connection and the request

void Stream::connectUpstream() {
  UpstreamConn* c = worker_.upstreams().takeIdle(*backend_);
  if (c) {
    ex_.upstream_reused = true;
    ex_.connect_us = 0;
    upstream_ = c;
    c->setOwner(this);
    state_ = State::kExchange;
    onUpstreamReady();
    return;
  }
  c = worker_.upstreams().create(*backend_);
  ex_.upstream_reused = false;
  ex_.connect_us = -1;
  ex_.connect_started_ns = uv_hrtime();
  upstream_ = c;
  state_ = State::kRouting;
  waitFrom(worker_.now());
  int rc = c->connect(this);
  if (rc != 0) {
    onUpstreamFailure(Fault::kConnect, rc);
    return;
  }
  ds_.updateReading();  // while connecting, the client is read only as far as its buffer has room
}

void Stream::onUpstreamConnected(int status) {
  Entry entry(this);
  if (done_) return;
  metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
  if (status != 0) {
    onUpstreamFailure(Fault::kConnect, status);
    return;
  }
  bm.upstream_connect.observeMs(worker_.now() - wait_started_);
  ex_.connect_us = static_cast<std::int64_t>((uv_hrtime() - ex_.connect_started_ns) / 1000);
  bm.upstream_active.inc();
  upstream_->markConnected();
  uv_tcp_nodelay(upstream_->tcp(), 1);
  state_ = State::kExchange;
  onUpstreamReady();
}

void Stream::onUpstreamReady() {
  up_reading_ = false;
  ex_.head_written = false;
  ds_.rewindRequestBody();
  buildUpstreamHead();
  if (!resp_) resp_ = worker_.takeResponseDecoder();
  http::H1Decoder& d = *resp_;
  d.reset();
  d.setBodySink(onResponseBody, this);
  d.expectResponseTo(ex_.method, ex_.upgrade);
  waitFrom(worker_.now());
  pumpRequest();
  if (done_) return;
  updateReading();
}

// The request head as the backend sees it (forward/header_policy.h), for
// this attempt's backend: a retry to another one gets its own.
void Stream::buildUpstreamHead() {
  const conf::Config& cfg = worker_.config();
  http::RequestHead& r = ds_.request();
  const Peer& p = ds_.peer();
  forward::UpstreamRequest in;
  in.client_ip = p.ip;
  in.trusted_peer = isTrusted(p.addr, p.family, cfg.trusted_proxies);
  in.tls = p.tls;
  in.request_id = std::string_view(ex_.request_id, 32);
  in.request_id_from_client = ex_.request_id_present;
  in.backend_host = backend_ ? std::string_view(backend_->host_header) : std::string_view();
  http::ExtraFields& extra = worker_.extraFields();
  forward::upstreamRequestFields(r, in, extra, worker_.fieldScratch());
  std::uint32_t need = static_cast<std::uint32_t>(http::requestHeadSize(r, extra));
  ex_.up_head.release(worker_.buffers());
  reserveBuffer(worker_.buffers(), ex_.up_head, need);
  ex_.up_head.end = static_cast<std::uint32_t>(http::writeRequestHead(r, extra, ex_.up_head.data));
}

void Stream::pumpRequest() {
  if (up_writing_ || done_ || !upstream_) return;
  uv_buf_t bufs[3];
  unsigned n = 0;
  if (!ex_.head_written) {
    bufs[n++] = uv_buf_init(ex_.up_head.data, ex_.up_head.end);
    ex_.head_written = true;
  }
  n += ds_.takeRequestBody(bufs + n, 3 - n);
  if (n == 0) {
    afterRequestWrite();
    return;
  }
  if (!writeUpstream(bufs, n)) return;
  if (!up_writing_) afterRequestWrite();
}

// What went to the backend is written: the downstream may reuse it and read
// on; the request is sent once all of it is.
void Stream::afterRequestWrite() {
  if (done_ || state_ != State::kExchange) return;
  ds_.requestBodyWritten();
  if (done_) return;
  if (ds_.requestSent()) {
    if (!ex_.request_sent) {
      ex_.request_sent = true;
      waitFrom(worker_.now());
    }
  } else if (ds_.requestBodyReady()) {
    pumpRequest();
    return;
  }
  updateReading();
}

void Stream::onRequestBody() {
  Entry entry(this);
  if (done_) return;
  if (state_ == State::kExchange) pumpRequest();
  if (done_) return;
  armTimer();
}

void Stream::onWriteDone(void* ctx, int status) {
  Stream* s = static_cast<Stream*>(ctx);
  s->up_write_ = nullptr;
  s->onUpstreamWritten(status);
}

bool Stream::writeUpstream(uv_buf_t* bufs, unsigned n) {
  // To an https:// backend the plaintext goes through the connection's TLS.
  int r = upstream_->tls() ? upstream_->write(bufs, n)
                           : worker_.send(upstream_->stream(), up_write_, onWriteDone, this, bufs, n);
  if (r < 0) {
    onUpstreamFailure(Fault::kUpstreamReset, r);
    return false;
  }
  if (r == 1) {
    up_writing_ = true;
    ds_.updateReading();
  }
  return true;
}

void Stream::onUpstreamWritten(int status) {
  Entry entry(this);
  up_writing_ = false;
  if (done_) return;
  if (status != 0) {
    onUpstreamFailure(Fault::kUpstreamReset, status);
    return;
  }
  afterRequestWrite();
}

// The upstream side is read while the response has room to go: not while the
// downstream is writing what the last read brought.
void Stream::updateReading() {
  if (done_ || !upstream_ || upstream_->closing()) return;
  bool up_room = !up_in_.data || up_in_.end < up_in_.cap;
  bool want_up = state_ == State::kExchange && up_room && !sending_;
  upstream_->setReading(want_up);
  up_reading_ = want_up;
  // TLS records the connection decrypted no room for: handed over from the
  // downstream's deferred pass, not from inside this call.
  if (want_up && upstream_->buffered()) ds_.deferResume();
}

void Stream::resumeUpstream() {
  Entry entry(this);
  if (done_ || !upstream_ || !up_reading_ || !upstream_->buffered()) return;
  upstream_->resume();
}

void Stream::releaseUpstream(bool reusable) {
  if (!upstream_) return;
  UpstreamConn* c = upstream_;
  upstream_ = nullptr;
  up_reading_ = false;
  if (up_write_) {
    up_write_->ctx = nullptr;
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
void Stream::onUpstreamFailure(Fault fault, int uv_status) {
  if (done_) return;
  Backend* b = backend_;
  bool reused = upstream_ && upstream_->reused();
  metrics::BackendMetrics& bm = worker_.metrics().backend(b->id);
  if (fault == Fault::kConnect) bm.upstream_connect_errors.inc();
  releaseUpstream(false);
  log::debug("upstream failure", {{"backend", b->name}, {"error", uv_strerror(uv_status)},
                                  {"reused", reused ? "yes" : "no"}});
  forward::Attempt a;
  a.fault = fault;
  a.response_started = ex_.response_started;
  a.request_trimmed = !ds_.requestReplayable();
  a.client_eof = ds_.clientEof();
  a.request_done = ds_.requestComplete();
  a.reused_connection = reused;
  a.idempotent = idempotent(ex_.method);
  a.strict_pin = ex_.aff && ex_.aff->from_pin && ex_.aff->plan->cfg.on_target_down == conf::OnTargetDown::kStrict;
  a.attempts = ex_.attempts;
  a.max_attempts = worker_.config().retries.attempts;
  forward::Retry retry = forward::decideRetry(a);
  if (retry == forward::Retry::kSameBackend) {
    // A pooled connection the backend had closed: not the backend's failure.
    ex_.retrying = true;
    ex_.head_written = false;
    ex_.request_sent = false;
    connectUpstream();
    return;
  }
  worker_.backendFailure(*b);
  if (retry == forward::Retry::kRefusePinned) {
    answerLocally(503, "tether: the pinned backend is unavailable\n");  // the pin stays
    return;
  }
  if (retry == forward::Retry::kOtherBackend) {
    ++ex_.attempts;
    bm.retries.inc();
    if (ex_.tried_count < 4) ex_.tried[ex_.tried_count++] = b->id;
    countActive(false);
    backend_ = nullptr;
    ex_.retrying = true;
    ex_.head_written = false;
    ex_.request_sent = false;
    std::span<const std::uint32_t> tried(ex_.tried, ex_.tried_count);
    bool by_client = worker_.config().balance == conf::Balance::kConsistentHash;
    Backend* next = ex_.aff && !ex_.aff->key.empty() ? worker_.placeByHash(ex_.aff->hash, tried)
                                                     : worker_.pick(tried, ex_.client_hash, by_client);
    if (next) {
      if (ex_.aff && !ex_.aff->key.empty()) {
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
  if (ex_.response_head_sent) {
    cut();
  } else if (forward::failureStatus(fault) == 504) {
    answerLocally(504, "tether: backend timed out\n");
  } else {
    answerLocally(502, "tether: backend unavailable\n");
  }
}

// ---------------------------------------------------------------------------
// Upstream: the response

void Stream::onUpstreamAlloc(uv_buf_t* buf) {
  if (!up_in_.data) {
    up_in_.data = worker_.buffers().get();
    up_in_.cap = BufferPool::kSize;
    up_in_.end = 0;
  }
  *buf = uv_buf_init(up_in_.data + up_in_.end, up_in_.cap - up_in_.end);
}

void Stream::onUpstreamRead(ssize_t nread, const uv_buf_t* buf) {
  Entry entry(this);
  if (done_) return;
  if (nread > 0) {
    up_in_.end += static_cast<std::uint32_t>(nread);
    last_up_ms_ = worker_.now();
    ex_.up_read_filled = buf && static_cast<std::size_t>(nread) == buf->len;
    if (!ex_.response_started) {
      ex_.response_started = true;
      ex_.first_byte_ms = worker_.now();
      ex_.first_byte_ns = uv_hrtime();
      ex_.up_head.release(worker_.buffers());
      armTimer();
    }
    parseResponse();
    return;
  }
  if (nread == 0) {
    if (up_in_.end == 0) up_in_.release(worker_.buffers());
    // The socket is drained after a read that filled its buffer: the backend
    // paused, so what the encoder holds goes out now.
    if (state_ == State::kExchange && ex_.up_read_filled) {
      ex_.up_read_filled = false;
      if (encoderFlushable()) {
        if (!compressFlush(false)) return;
        pumpResponse();
      }
    }
    return;
  }
  if (!ex_.response_started) {
    onUpstreamFailure(Fault::kUpstreamReset, static_cast<int>(nread));
    return;
  }
  // The backend is gone mid-response. A close-delimited body ends here;
  // anything else is truncated and the client must see it cut.
  if (nread == UV_EOF && !ex_.response_done && resp_ && ex_.response_head_sent &&
      resp_->finish() == http::H1Decoder::Event::kComplete) {
    ex_.resp_keep_alive = false;
    releaseUpstream(false);
    responseComplete();
    if (done_) return;
    pumpResponse();
    return;
  }
  if (!ex_.response_done) {
    log::warn("upstream closed mid-response", {{"backend", backend_->name}, {"request_id", std::string_view(ex_.request_id, 32)}});
    worker_.backendFailure(*backend_);
    releaseUpstream(false);
    ex_.abort_when_flushed = true;
    if (!sending_) cut();
  } else {
    releaseUpstream(false);
  }
}

void Stream::parseResponse() {
  http::H1Decoder& d = *resp_;
  // After a head, one more step even over zero bytes: that is how a response
  // without body (204, 304, Content-Length: 0) completes.
  bool again = false;
  while (!done_ && !ex_.response_done && (ex_.resp_parsed < up_in_.end || again)) {
    again = false;
    std::uint32_t len = up_in_.end - ex_.resp_parsed;
    bool compressing = ex_.zip != nullptr;
    // Not while its output is referenced by a write, nor beyond a bound while
    // it cannot be written (a pin hold): the read buffer fills and reading stops.
    if (compressing && (ex_.zip->writing || ex_.zip->out.size() >= kMaxCompressedPending)) break;
    bool staging = ex_.response_head_sent && ex_.dechunk && !compressing;
    if (staging) {
      // Decoded bytes of a chunked body are staged in body_; never parse
      // more than fits, and never while it is being written.
      if (sending_) break;
      reserveBuffer(worker_.buffers(), body_, 0);
      std::uint32_t room = body_.cap - body_.end;
      if (room < 64) break;  // flush first
      len = std::min<std::uint32_t>(len, room);
    }
    std::size_t used = 0;
    http::H1Decoder::Event ev = d.execute(up_in_.data + ex_.resp_parsed, len, &used);
    ex_.resp_parsed += static_cast<std::uint32_t>(used);
    if (staging || compressing) ex_.resp_body_sent = ex_.resp_parsed;  // staged or taken by the encoder
    switch (ev) {
      case http::H1Decoder::Event::kNeedMore:
        break;
      case http::H1Decoder::Event::kHead:
        onResponseHead();
        if (done_) return;
        ex_.resp_body_sent = ex_.resp_parsed;
        again = true;
        continue;
      case http::H1Decoder::Event::kComplete:
        responseComplete();
        if (done_) return;
        continue;
      case http::H1Decoder::Event::kError: {
        log::warn("bad response", {{"backend", backend_->name},
                                   {"reason", d.errorReason()},
                                   {"error", d.errorName()}});
        worker_.backendFailure(*backend_);
        releaseUpstream(false);
        if (!ex_.response_head_sent) {
          answerLocally(502, "tether: bad response from backend\n");
        } else {
          ex_.abort_when_flushed = true;
          if (!sending_) cut();
        }
        return;
      }
    }
    if (ev == http::H1Decoder::Event::kNeedMore && ex_.resp_parsed == up_in_.end) break;
  }
  if (!ex_.response_done && !done_ && up_in_.data && ex_.resp_parsed == up_in_.end && !sending_ &&
      (!ex_.response_head_sent || ((ex_.dechunk || ex_.zip) && ex_.resp_body_sent == ex_.resp_parsed))) {
    // Everything read is in a head, staged or compressed: the buffer starts over.
    up_in_.end = ex_.resp_parsed = ex_.resp_body_sent = 0;
  }
  // All that was read is taken and the read was short (the backend has no
  // more for now): what the encoder holds goes out now, so a slowly produced
  // response is not held back. After a read that filled the buffer, the next
  // read (or libuv's empty one when the socket is drained) decides.
  if (!ex_.up_read_filled && encoderFlushable() && !compressFlush(false)) return;
  pumpResponse();
}

// The response ended at its framing; bytes beyond the framing mean the
// connection is not reused.
void Stream::responseComplete() {
  http::H1Decoder& d = *resp_;
  ex_.response_done = true;
  if (d.response().status == 101) {
    ex_.upgrade_accepted = true;  // the decoder accepts a 101 only when asked
    return;
  }
  if (ex_.resp_parsed < up_in_.end) ex_.resp_extra = true;
  if (ex_.zip && !compressFlush(true)) return;
}

// The response head as the client sees it (forward/header_policy.h); its
// body reaches the client as its downstream frames it.
void Stream::onResponseHead() {
  http::ResponseHead& r = resp_->response();
  bool informational = r.informational();
  if (informational && ds_.protocolName() == "HTTP/1.0") return;  // no 1xx to an HTTP/1.0 client (RFC 9110 §15.2)
  if (!informational) {
    ex_.status = r.status;
    ex_.resp_keep_alive = r.keep_alive;
    ex_.dechunk = r.framing == http::Framing::kChunked;  // decoded, then framed by the downstream
  }
  if (ex_.cache_fill && !informational) {
    ex_.cache_fill->lifetime_s = forward::storableLifetime(r, &ex_.cache_fill->age_s);
    if (ex_.cache_fill->lifetime_s < 0) ex_.cache_fill.reset();
  }
  bool reencoded = false;
  if (!informational && r.status != 101) startCompression(r, &reencoded);
  forward::DownstreamResponse out = informational ? forward::DownstreamResponse{} : ds_.responseFraming(r, reencoded);
  if (ex_.aff) out.set_cookie = ex_.aff->set_cookie;
  out.request_id = std::string_view(ex_.request_id, ex_.request_id_present ? ::strnlen(ex_.request_id, 32) : 32);
  http::ExtraFields& extra = worker_.extraFields();
  if (forward::downstreamResponseFields(r, out, extra)) ex_.sse = true;
  if (ex_.zip || ex_.compress_vary) {
    forward::compressFields(r, ex_.zip ? ex_.zip->coding : forward::Coding::kIdentity, extra,
                            worker_.fieldScratch());
    ex_.compress_vary = false;
  }
  if (!ds_.sendHead(r, extra)) {
    // The previous head is still being written, and this one does not fit.
    releaseUpstream(false);
    answerLocally(502, "tether: response heads too large\n");
    return;
  }
  if (ex_.cache_fill && !informational) cacheResponseHead(r, extra);
  if (!informational) {
    ex_.response_head_sent = true;
    if (ex_.sse) worker_.metrics().backend(backend_->id).sse_active.inc();
  }
}

// Whether this response's body is compressed (forward/compression.h): the
// route's settings, the response's eligibility, the request's coding. An
// eligible response always says it varies by Accept-Encoding.
void Stream::startCompression(http::ResponseHead& r, bool* reencoded) {
  const conf::Compression& c = worker_.compressionFor(path());
  if (!c.enabled || !forward::responseEligible(r, c)) return;
  ex_.compress_vary = true;
  forward::Coding coding = forward::requestCoding(ds_.request(), c);
  if (coding == forward::Coding::kIdentity) return;
  *reencoded = true;
  if (ex_.method == http::kMethodHead || r.framing == http::Framing::kNone) {
    // A HEAD answer's head says what a GET would get; there is no body.
    ex_.zip = std::make_unique<forward::CompressedBody>();
    ex_.zip->coding = coding;
    ex_.zip->finished = true;
    return;
  }
  auto encoder = forward::makeEncoder(
      coding, c.level(coding), r.framing == http::Framing::kLength ? r.content_length : 0);
  if (!encoder) {
    log::warn("compression unavailable", {{"algorithm", std::string(forward::codingToken(coding))}});
    *reencoded = false;
    return;  // sent as it is: Vary was still true
  }
  ex_.zip = std::make_unique<forward::CompressedBody>();
  ex_.zip->encoder = std::move(encoder);
  ex_.zip->coding = coding;
  ex_.dechunk = false;  // the encoder's output is what goes out
  worker_.metrics().compressed_responses[static_cast<int>(coding) - 1].inc();
}

// A compressed body whose encoder may be flushed now: not finished, its
// output not referenced by a write, the stream still answering.
bool Stream::encoderFlushable() const {
  return ex_.zip && !ex_.zip->writing && !ex_.zip->finished && !done_;
}

// Flushes (or, at the end of the body, finishes) the encoder into zip->out.
// False when the encoder failed: the response is cut, so the client never
// takes a truncated body for a whole one.
bool Stream::compressFlush(bool finish) {
  forward::CompressedBody* z = ex_.zip.get();
  if (z->finished || (!finish && z->in_bytes == 0)) return true;
  bool ok = finish ? z->encoder->finish(&z->out) : z->encoder->flush(&z->out);
  if (finish) z->finished = true;
  worker_.metrics().compression_in[static_cast<int>(z->coding) - 1].inc(z->in_bytes);
  z->in_bytes = 0;
  if (ok && !ex_.abort_when_flushed) return true;
  log::warn("compression failed", {{"backend", backend_->name}});
  releaseUpstream(false);
  cut();
  return false;
}

void Stream::onResponseBody(void* ctx, const char* data, std::size_t len) {
  Stream* s = static_cast<Stream*>(ctx);
  forward::Exchange& ex = s->ex_;
  if (ex.aff && ex.aff->sniffer) s->sniffSid(std::string_view(data, len));
  if (forward::CompressedBody* z = ex.zip.get()) {
    z->in_bytes += len;
    if (!z->encoder->write(std::string_view(data, len), &z->out)) ex.abort_when_flushed = true;
    return;
  }
  if (forward::CacheFill* f = ex.cache_fill.get()) f->append(std::string_view(data, len), f->store->maxObject());
  if (!ex.dechunk) return;  // a length or close-delimited body goes from up_in_ as it is
  // parseResponse passed no more than fits.
  std::memcpy(s->body_.data + s->body_.end, data, len);
  s->body_.end += static_cast<std::uint32_t>(len);
}

// Hands the downstream what is ready: compressed output, staged chunk
// data, or body bytes straight from up_in_; then the end. A write the
// downstream finishes at once goes on here; a queued one from
// onResponseWritten.
void Stream::pumpResponse() {
  if (sending_ || done_ || ex_.pin_hold || ds_.writing()) return;
  if (!ex_.response_head_sent && !ex_.upgrade_accepted) {
    // 1xx heads, if any.
    if (ex_.response_started && ds_.flush()) {
      sending_ = true;
      updateReading();
    }
    return;
  }
  const char* data = nullptr;
  std::size_t len = 0;
  if (forward::CompressedBody* z = ex_.zip.get()) {
    if (!z->writing && !z->out.empty()) {
      if (forward::CacheFill* f = ex_.cache_fill.get()) f->append(z->out, f->store->maxObject());
      z->writing = true;
      worker_.metrics().compression_out[static_cast<int>(z->coding) - 1].inc(z->out.size());
      data = z->out.data();
      len = z->out.size();
    }
  } else if (ex_.dechunk) {
    if (body_.data && body_.end) {
      data = body_.data;
      len = body_.end;
    }
  } else if (!ex_.upgrade_accepted && ex_.resp_parsed > ex_.resp_body_sent) {
    data = up_in_.data + ex_.resp_body_sent;
    len = ex_.resp_parsed - ex_.resp_body_sent;
    ex_.resp_body_sent = ex_.resp_parsed;
  }
  bool queued;
  if (len) {
    ex_.bytes_out += len;
    queued = ds_.sendBody(data, len);
  } else if (ex_.response_done && !end_sent_ && (!ex_.zip || ex_.zip->finished)) {
    end_sent_ = true;
    queued = ex_.upgrade_accepted ? ds_.flush() : ds_.sendEnd(resp_ && !ex_.cache_hit ? &resp_->trailers() : nullptr);
  } else {
    queued = ds_.flush();  // a head with no body bytes yet (an event stream's)
  }
  if (done_) return;
  if (queued) {
    sending_ = true;
    updateReading();  // the backend waits while what it sent is written
    return;
  }
  afterResponseWrite();
}

void Stream::onResponseWritten() {
  Entry entry(this);
  sending_ = false;
  if (done_) return;
  afterResponseWrite();
}

void Stream::afterResponseWrite() {
  if (done_) return;
  if (ex_.abort_when_flushed) {
    cut();
    return;
  }
  if (forward::CompressedBody* z = ex_.zip.get(); z && z->writing) {
    z->writing = false;
    z->out.clear();
    if (z->out.capacity() > 64 * 1024) std::string().swap(z->out);
  }
  if (ex_.dechunk && body_.data) {
    body_.end = 0;
    if (ex_.response_done) body_.release(worker_.buffers());
  }
  if (up_in_.data && ex_.resp_body_sent == ex_.resp_parsed && ex_.resp_parsed == up_in_.end && !ex_.upgrade_accepted) {
    ex_.resp_body_sent = ex_.resp_parsed = 0;
    up_in_.release(worker_.buffers());
  }
  if (ex_.response_done && end_sent_) {
    finishExchange();
    return;
  }
  if (ex_.response_done) {
    pumpResponse();
    return;
  }
  if (up_in_.data && ex_.resp_parsed < up_in_.end) {
    parseResponse();
    return;
  }
  if (up_in_.data && up_in_.end == up_in_.cap && ex_.resp_body_sent == up_in_.end) {
    ex_.resp_body_sent = ex_.resp_parsed = 0;
    up_in_.end = 0;
  }
  // Bytes the encoder took while its output was being written, with nothing
  // more pending from the backend: flushed now, since no read may come soon.
  if (!ex_.up_read_filled && encoderFlushable() && ex_.zip->in_bytes > 0) {
    if (!compressFlush(false)) return;
    pumpResponse();
    if (done_) return;
  }
  updateReading();
}

// The response is out: metrics, passive health, the cache, the log; the
// upstream connection goes back to the pool when it ended exactly at its
// framing, and the downstream goes on.
void Stream::finishExchange() {
  const conf::Config& cfg = worker_.config();
  std::int64_t now = worker_.now();
  if (ex_.upgrade_accepted) {
    // A tunnel now: the upstream connection and the bytes read past the 101
    // belong to the downstream.
    metrics::BackendMetrics& bm = worker_.metrics().backend(backend_->id);
    bm.websocketUpgrade(101);
    bm.websocket_active.inc();
    backend_->active_tunnels.fetch_add(1, std::memory_order_relaxed);  // before the request's slot frees
    countActive(false);
    if (cfg.access_log.enabled) logAccess();
    endAffinity();
    UpstreamConn* c = std::exchange(upstream_, nullptr);
    if (up_write_) {
      up_write_->ctx = nullptr;
      up_write_ = nullptr;
    }
    up_writing_ = up_reading_ = false;
    done_ = true;
    worker_.cancelDeadline(this);
    c->setOwner(nullptr);
    ds_.upgraded(c, up_in_, ex_.resp_parsed);
    return;
  }
  // Pipelined bytes already read belong to the requests that follow.
  ex_.bytes_in -= std::min<std::uint64_t>(ex_.bytes_in, ds_.bytesBeyondRequest());
  metrics::BackendMetrics& bm = backend_ ? worker_.metrics().backend(backend_->id) : worker_.metrics().cache_answers;
  bm.request(metricMethod(ex_.method), ex_.status);
  if (ex_.upgrade) bm.websocketUpgrade(ex_.status);  // refused: counted with its status
  std::int64_t started = ex_.started_ms;
  bm.request_duration.observeMs(now - started);
  if (ex_.first_byte_ms >= 0) bm.first_byte.observeMs(ex_.first_byte_ms - started);
  bm.bytes[static_cast<int>(metrics::Direction::kUpstream)].inc(ex_.bytes_in);
  bm.bytes[static_cast<int>(metrics::Direction::kDownstream)].inc(ex_.bytes_out);
  if (ex_.sse) bm.sse_active.dec();
  ex_.sse = false;
  if (!backend_) {
    // answered from the cache
  } else if (health::countsAsPassiveFailure(cfg.passive, ex_.status)) {
    worker_.backendFailure(*backend_);
  } else {
    worker_.backendSuccess(*backend_);
  }
  if (ex_.cache_fill) storeCached();
  if (cfg.access_log.enabled) logAccess();
  countActive(false);
  // A connection is reused only when the response ended exactly at its
  // framing (no stray byte a later request would read as its answer), and
  // never after an upgrade request, whatever the answer.
  bool reusable = ex_.resp_keep_alive && ex_.request_sent && !ex_.resp_extra && !ex_.upgrade &&
                  (!up_in_.data || ex_.resp_parsed == up_in_.end);
  releaseUpstream(reusable);
  endAffinity();
  up_in_.release(worker_.buffers());
  done_ = true;
  worker_.cancelDeadline(this);
  ds_.finished(true);
}

// The response cannot be completed: the client sees it cut.
void Stream::cut() {
  if (done_) return;
  releaseUpstream(false);
  abort();
  ds_.abort();
}

void Stream::answerLocally(int status, const char* reason) {
  Entry entry(this);
  if (done_) return;
  releaseUpstream(false);
  if (ex_.response_head_sent) {
    cut();
    return;
  }
  ex_.status = static_cast<std::uint16_t>(status);
  if (backend_) worker_.metrics().backend(backend_->id).request(metricMethod(ex_.method), status);
  countActive(false);
  abort();
  ex_.bytes_out += ds_.localReply(status, reason);
  if (worker_.config().access_log.enabled && status != 408) logAccess();
  backend_ = nullptr;
}

void Stream::logAccess() {
  // Durations in microseconds from the monotonic clock (uv_hrtime); the loop's
  // millisecond clock is too coarse for a request served in 200 us.
  std::uint64_t now_ns = uv_hrtime();
  std::uint64_t start_ns = ex_.started_ns;
  auto sinceStart = [start_ns](std::uint64_t ns) { return static_cast<std::int64_t>((ns - start_ns) / 1000); };
  const std::string_view none("-");
  std::string_view protocol = ex_.method == forward::Exchange::kNoMethod ? none : ds_.protocolName();
  std::string_view log_path = none;
  if (ex_.head_done) {
    std::string_view t = ds_.request().target;
    if (!t.empty()) log_path = t.substr(0, 512);
  }
  worker_.accessLog().add({{"request_id", std::string_view(ex_.request_id, ::strnlen(ex_.request_id, 32))},
                           {"client", ds_.peer().ip},
                           {"method", ex_.method == forward::Exchange::kNoMethod ? none : http::methodName(ex_.method)},
                           {"path", log_path},
                           {"protocol", protocol},
                           {"tls", ds_.peer().tls_version},
                           {"status", static_cast<int>(ex_.status)},
                           {"backend", backend_ ? std::string_view(backend_->name) : ex_.cache_hit ? std::string_view("cache") : none},
                           {"bytes_in", ex_.bytes_in},
                           {"bytes_out", ex_.bytes_out},
                           AccessField::seconds("duration", sinceStart(now_ns)),
                           AccessField::seconds("ttfb", ex_.first_byte_ns ? sinceStart(ex_.first_byte_ns) : -1),
                           AccessField::seconds("upstream_connect", ex_.connect_us),
                           {"upstream_reused", ex_.upstream_reused}});
}

}  // namespace tether::proxy
