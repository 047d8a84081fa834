// Metrics::scrape(): cells -> prometheus-cpp MetricFamily -> text format 0.0.4.
//
// Families are built fresh on every scrape from the relaxed cells; nothing of
// prometheus-cpp's registry is used, so the data path never meets its mutexes.
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <limits>
#include <sstream>
#include <utility>

#include "metrics/backend_cells.h"
#include "metrics/metrics.h"

#ifndef TETHER_VERSION
#define TETHER_VERSION "unknown"
#endif

namespace tether::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

constexpr const char* kDirectionNames[2] = {"downstream", "upstream"};
constexpr const char* kClosedByNames[kClosedByCount] = {"client", "backend", "tether"};
constexpr const char* kHealthNames[3] = {"ok", "fail", "timeout"};
constexpr const char* kStateNames[4] = {"unknown", "up", "down", "draining"};
constexpr const char* kAffinityNames[4] = {"hit", "miss", "repin", "store_error"};
constexpr const char* kPinConfirmNames[3] = {"stored", "unavailable", "timeout"};
constexpr const char* kCodingNames[Metrics::kCodings] = {"zstd", "br", "gzip"};
constexpr const char* kStoreOpNames[3] = {"get", "set", "refresh"};
constexpr int kStateRemoved = 4;

MetricFamily family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
}

void addCounter(MetricFamily& f, Labels labels, std::uint64_t v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(v);
  f.metric.push_back(std::move(m));
}

void addGauge(MetricFamily& f, Labels labels, double v) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  f.metric.push_back(std::move(m));
}

void addHistogram(MetricFamily& f, Labels labels, const Histogram& h) {
  ClientMetric m;
  m.label = std::move(labels);
  const auto& bounds = h.bounds();
  std::uint64_t cumulative = 0;
  m.histogram.bucket.reserve(bounds.size() + 1);
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    // Each bucket is read once, so _count (= the +Inf bucket) matches the
    // buckets shown even while observations land during the scrape.
    cumulative += h.bucketCount(i);
    ClientMetric::Bucket b;
    b.cumulative_count = cumulative;
    b.upper_bound = i < bounds.size() ? bounds[i] : std::numeric_limits<double>::infinity();
    m.histogram.bucket.push_back(b);
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = h.sum();
  f.metric.push_back(std::move(m));
}

Labels backendLabel(const BackendMetrics& b) { return {{"backend", b.name()}}; }

Labels backendLabel(const BackendMetrics& b, const char* name, std::string value) {
  return {{"backend", b.name()}, {name, std::move(value)}};
}

}  // namespace

std::string Metrics::scrape() const {
  const std::vector<const BackendMetrics*> bs = backends();
  std::vector<MetricFamily> out;
  out.reserve(25);

  {
    auto f = family("tether_build_info", "tether build information; the value is always 1.",
                    MetricType::Gauge);
    addGauge(f, {{"version", TETHER_VERSION}}, 1);
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_downstream_connections_active", "Client connections currently open.",
                    MetricType::Gauge);
    addGauge(f, {}, static_cast<double>(downstream_active.value()));
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_downstream_connections_total", "Client connections accepted.",
                    MetricType::Counter);
    addCounter(f, {}, downstream_total.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_http2_connections_active", "Client connections speaking HTTP/2, currently open.",
                    MetricType::Gauge);
    addGauge(f, {}, static_cast<double>(http2_connections_active.value()));
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_http2_connections_total", "Client connections that spoke HTTP/2.", MetricType::Counter);
    addCounter(f, {}, http2_connections_total.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_http2_goaways_total",
                    "GOAWAY frames sent to HTTP/2 clients, by reason (graceful: drain or the stream cap; "
                    "rapid_reset and glitches: ENHANCE_YOUR_CALM; protocol: a connection error; flood: "
                    "frames beyond the caps).",
                    MetricType::Counter);
    static constexpr const char* kReasons[] = {"graceful", "rapid_reset", "glitches", "protocol", "flood"};
    for (int i = 0; i < 5; ++i) addCounter(f, {{"reason", kReasons[i]}}, http2_goaway_[i].value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_http2_stream_errors_total",
                    "HTTP/2 streams that ended in an error, by reason (refused: no concurrency slot; "
                    "protocol: a malformed request; headers_too_large: answered 431; client_reset: reset "
                    "by the client before its response ended).",
                    MetricType::Counter);
    static constexpr const char* kReasons[] = {"refused", "protocol", "headers_too_large", "client_reset"};
    for (int i = 0; i < 4; ++i) addCounter(f, {{"reason", kReasons[i]}}, http2_stream_errors_[i].value());
    out.push_back(std::move(f));
  }
  {
    auto f =
        family("tether_http_requests_total",
               "HTTP requests answered, by backend, method and status code.", MetricType::Counter);
    std::vector<const BackendMetrics*> answered = bs;
    answered.push_back(&cache_answers);
    for (const BackendMetrics* b : answered) {
      const auto& impl = b->impl();
      for (int mi = 0; mi < kMethodCount; ++mi) {
        const auto* row = impl.requests[mi].load(std::memory_order_acquire);
        if (row == nullptr) continue;
        for (int code = 0; code < kStatusSlots; ++code) {
          std::uint64_t v = (*row)[code].load(std::memory_order_relaxed);
          if (v == 0) continue;
          addCounter(f,
                     {{"backend", b->name()},
                      {"method", toString(static_cast<Method>(mi))},
                      {"code", std::to_string(code)}},
                     v);
        }
      }
    }
    out.push_back(std::move(f));
  }

  auto perBackendHistogram = [&](const char* name, const char* help,
                                 const Histogram BackendMetrics::*member) {
    auto f = family(name, help, MetricType::Histogram);
    for (const BackendMetrics* b : bs) addHistogram(f, backendLabel(*b), b->*member);
    out.push_back(std::move(f));
  };
  auto perBackendCounter = [&](const char* name, const char* help,
                               const Counter BackendMetrics::*member) {
    auto f = family(name, help, MetricType::Counter);
    for (const BackendMetrics* b : bs) addCounter(f, backendLabel(*b), (b->*member).value());
    out.push_back(std::move(f));
  };
  auto perBackendGauge = [&](const char* name, const char* help,
                             const Gauge BackendMetrics::*member) {
    auto f = family(name, help, MetricType::Gauge);
    for (const BackendMetrics* b : bs) {
      addGauge(f, backendLabel(*b), static_cast<double>((b->*member).value()));
    }
    out.push_back(std::move(f));
  };

  perBackendHistogram("tether_http_request_duration_seconds",
                      "Time from the first byte of the request to the last byte of the response.",
                      &BackendMetrics::request_duration);
  perBackendHistogram("tether_http_first_byte_seconds",
                      "Time from sending the request upstream to the first response byte.",
                      &BackendMetrics::first_byte);
  perBackendHistogram("tether_upstream_connect_seconds",
                      "Time to establish an upstream connection.",
                      &BackendMetrics::upstream_connect);
  perBackendCounter("tether_upstream_connect_errors_total",
                    "Upstream connection attempts that failed.",
                    &BackendMetrics::upstream_connect_errors);
  {
    auto f = family("tether_upstream_tls_handshakes_total",
                    "TLS handshakes completed with https:// backends, by session (new: full; resumed).",
                    MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      addCounter(f, backendLabel(*b, "session", "new"), b->upstream_tls_full.value());
      addCounter(f, backendLabel(*b, "session", "resumed"), b->upstream_tls_resumed.value());
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_upstream_connections",
                    "Upstream connections, by state (active: carrying a request; idle: pooled).",
                    MetricType::Gauge);
    for (const BackendMetrics* b : bs) {
      addGauge(f, backendLabel(*b, "state", "active"),
               static_cast<double>(b->upstream_active.value()));
      addGauge(f, backendLabel(*b, "state", "idle"), static_cast<double>(b->upstream_idle.value()));
    }
    out.push_back(std::move(f));
  }
  perBackendCounter("tether_retries_total",
                    "Requests retried on another backend after this one failed.",
                    &BackendMetrics::retries);
  {
    auto f =
        family("tether_backend_up", "1 when the backend is up, 0 otherwise.", MetricType::Gauge);
    for (const BackendMetrics* b : bs) {
      double up = b->state() == kStateRemoved ? 0 : static_cast<double>(b->up.value());
      addGauge(f, backendLabel(*b), up);
    }
    out.push_back(std::move(f));
  }
  perBackendGauge("tether_backend_weight",
                  "The backend's weight: configured, or as POST /admin/backends/{id}/weight set it.",
                  &BackendMetrics::weight);
  {
    auto f =
        family("tether_backend_state",
               "1 for the backend's current state (unknown, up, down, draining), 0 for the others.",
               MetricType::Gauge);
    for (const BackendMetrics* b : bs) {
      int s = b->state();
      for (int i = 0; i < 4; ++i)
        addGauge(f, backendLabel(*b, "state", kStateNames[i]), s == i ? 1 : 0);
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_health_checks_total", "Active health checks, by result.",
                    MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      for (int i = 0; i < 3; ++i) {
        addCounter(f, backendLabel(*b, "result", kHealthNames[i]),
                   b->healthCount(static_cast<HealthResult>(i)));
      }
    }
    out.push_back(std::move(f));
  }
  perBackendCounter("tether_backend_ejections_total",
                    "Times the backend was ejected by passive health checking.",
                    &BackendMetrics::ejections);
  {
    auto f = family("tether_websocket_upgrades_total",
                    "WebSocket upgrade attempts, by result (101, or the refusing status).",
                    MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      const auto* row = b->impl().upgrades.load(std::memory_order_acquire);
      if (row == nullptr) continue;
      for (int code = 0; code < kStatusSlots; ++code) {
        std::uint64_t v = (*row)[code].load(std::memory_order_relaxed);
        if (v != 0) addCounter(f, backendLabel(*b, "result", std::to_string(code)), v);
      }
    }
    out.push_back(std::move(f));
  }
  perBackendGauge("tether_websocket_connections_active", "WebSocket tunnels currently open.",
                  &BackendMetrics::websocket_active);
  {
    auto f = family("tether_websocket_messages_total",
                    "WebSocket messages relayed, by direction (downstream: towards the client).",
                    MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      for (int d = 0; d < 2; ++d) {
        addCounter(f, backendLabel(*b, "direction", kDirectionNames[d]),
                   b->websocket_messages[d].value());
      }
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_websocket_closes_total",
                    "WebSocket tunnels closed, by close code and by the side that closed.",
                    MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      for (int by = 0; by < kClosedByCount; ++by) {
        const auto* row = b->impl().closes[by].load(std::memory_order_acquire);
        if (row == nullptr) continue;
        for (int slot = 0; slot < kCloseSlots; ++slot) {
          std::uint64_t v = (*row)[slot].load(std::memory_order_relaxed);
          if (v == 0) continue;
          addCounter(
              f, {{"backend", b->name()}, {"code", closeLabel(slot)}, {"by", kClosedByNames[by]}},
              v);
        }
      }
    }
    out.push_back(std::move(f));
  }
  perBackendHistogram("tether_websocket_duration_seconds", "Lifetime of WebSocket tunnels.",
                      &BackendMetrics::websocket_duration);
  perBackendGauge("tether_sse_streams_active", "Server-sent event streams currently open.",
                  &BackendMetrics::sse_active);
  {
    auto f =
        family("tether_bytes_total",
               "Bytes relayed, by direction (downstream: towards the client; upstream: towards "
               "the backend).",
               MetricType::Counter);
    for (const BackendMetrics* b : bs) {
      for (int d = 0; d < 2; ++d) {
        addCounter(f, backendLabel(*b, "direction", kDirectionNames[d]), b->bytes[d].value());
      }
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_affinity_lookups_total",
                    "Affinity pin lookups, by result (hit, miss, repin, store_error).",
                    MetricType::Counter);
    for (int i = 0; i < 4; ++i) {
      addCounter(f, {{"result", kAffinityNames[i]}}, affinity_[i].value());
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_affinity_pin_confirmations_total",
                    "Responses revealing a new affinity key (Engine.IO handshake, inserted cookie) "
                    "held until the store held the pin, by result (stored, unavailable, timeout).",
                    MetricType::Counter);
    for (int i = 0; i < 3; ++i) addCounter(f, {{"result", kPinConfirmNames[i]}}, pin_confirm_[i].value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_compression_bytes_total",
                    "Bytes of compressed response bodies, by algorithm, before (stage=\"in\", "
                    "as the backend sent them) and after compression (stage=\"out\").",
                    MetricType::Counter);
    for (int i = 0; i < kCodings; ++i) {
      addCounter(f, {{"algorithm", kCodingNames[i]}, {"stage", "in"}}, compression_in[i].value());
      addCounter(f, {{"algorithm", kCodingNames[i]}, {"stage", "out"}}, compression_out[i].value());
    }
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_compressed_responses_total", "Responses compressed, by algorithm.",
                    MetricType::Counter);
    for (int i = 0; i < kCodings; ++i)
      addCounter(f, {{"algorithm", kCodingNames[i]}}, compressed_responses[i].value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_affinity_store_up", "1 when the affinity store answers, 0 otherwise.",
                    MetricType::Gauge);
    addGauge(f, {}, static_cast<double>(affinity_store_up.value()));
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_affinity_store_seconds", "Latency of affinity store operations.",
                    MetricType::Histogram);
    for (int i = 0; i < 3; ++i) addHistogram(f, {{"op", kStoreOpNames[i]}}, *store_seconds_[i]);
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_config_reloads_total", "Configuration reloads, by result.",
                    MetricType::Counter);
    addCounter(f, {{"result", "ok"}}, config_reloads_ok.value());
    addCounter(f, {{"result", "invalid"}}, config_reloads_invalid.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_upgrades_total", "Binary upgrades (SIGUSR2), by result.",
                    MetricType::Counter);
    addCounter(f, {{"result", "ok"}}, upgrades_ok.value());
    addCounter(f, {{"result", "failed"}}, upgrades_failed.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_tls_handshakes_total",
                    "TLS handshakes on the listeners, by result (error: not TLS, refused, or timed out).",
                    MetricType::Counter);
    addCounter(f, {{"result", "ok"}}, tls_handshakes_ok.value());
    addCounter(f, {{"result", "error"}}, tls_handshakes_error.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_request_timeouts_total",
                    "Requests ended because the client was too slow, by phase (header: the head "
                    "within timeouts.request_header; body: a body byte within "
                    "timeouts.request_body).",
                    MetricType::Counter);
    addCounter(f, {{"phase", "header"}}, request_timeouts_header.value());
    addCounter(f, {{"phase", "body"}}, request_timeouts_body.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_cache_requests_total",
                    "Requests on routes with a cache, by result (hit: answered from it; miss: sent "
                    "to a backend; bypass: not eligible).",
                    MetricType::Counter);
    static constexpr const char* kResults[] = {"hit", "miss", "bypass"};
    for (int i = 0; i < 3; ++i) addCounter(f, {{"result", kResults[i]}}, cache_requests_[i].value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_cache_stored_total", "Responses stored in a cache.", MetricType::Counter);
    addCounter(f, {}, cache_stored.value());
    out.push_back(std::move(f));
  }
  {
    auto f = family("tether_cache_bytes", "Bytes held by the caches of every worker (keys, heads, bodies).",
                    MetricType::Gauge);
    addGauge(f, {}, static_cast<double>(cache_bytes.value()));
    out.push_back(std::move(f));
  }

  std::ostringstream text;
  prometheus::TextSerializer().Serialize(text, out);
  return text.str();
}

}  // namespace tether::metrics
