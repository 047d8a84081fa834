// Metrics::scrape(): the text format, the SPEC.md contract, promtool's opinion.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "metrics/metrics.h"

namespace tether::metrics {
namespace {

// A parsed exposition: samples by their full series text as serialized
// (name{l1="v1",l2="v2"}, labels in the order the collector writes them),
// and the TYPE and HELP of each family.
struct Exposition {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  std::map<std::string, std::string> helps;

  bool has(const std::string& series) const { return samples.count(series) != 0; }
  double at(const std::string& series) const {
    auto it = samples.find(series);
    if (it == samples.end()) {
      ADD_FAILURE() << "no sample " << series;
      return -1;
    }
    return it->second;
  }
  int familySamples(const std::string& family) const {
    int n = 0;
    for (const auto& [series, v] : samples) {
      std::string name = series.substr(0, series.find('{'));
      if (name == family || name == family + "_bucket" || name == family + "_sum" ||
          name == family + "_count") {
        ++n;
      }
    }
    return n;
  }
};

Exposition parse(const std::string& text) {
  Exposition e;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::string rest = line.substr(7);
      auto sp = rest.find(' ');
      e.types[rest.substr(0, sp)] = rest.substr(sp + 1);
    } else if (line.rfind("# HELP ", 0) == 0) {
      std::string rest = line.substr(7);
      auto sp = rest.find(' ');
      e.helps[rest.substr(0, sp)] = rest.substr(sp + 1);
    } else if (line[0] != '#') {
      auto sp = line.rfind(' ');
      EXPECT_NE(sp, std::string::npos) << line;
      EXPECT_EQ(e.samples.count(line.substr(0, sp)), 0u) << "duplicate series " << line;
      e.samples[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
    }
  }
  return e;
}

// SPEC.md's metrics table.
const std::map<std::string, std::string> kContract = {
    {"tether_build_info", "gauge"},
    {"tether_downstream_connections_active", "gauge"},
    {"tether_downstream_connections_total", "counter"},
    {"tether_http_requests_total", "counter"},
    {"tether_http_request_duration_seconds", "histogram"},
    {"tether_http_first_byte_seconds", "histogram"},
    {"tether_upstream_connect_seconds", "histogram"},
    {"tether_upstream_connect_errors_total", "counter"},
    {"tether_upstream_connections", "gauge"},
    {"tether_retries_total", "counter"},
    {"tether_backend_up", "gauge"},
    {"tether_backend_state", "gauge"},
    {"tether_health_checks_total", "counter"},
    {"tether_backend_ejections_total", "counter"},
    {"tether_websocket_upgrades_total", "counter"},
    {"tether_websocket_connections_active", "gauge"},
    {"tether_websocket_messages_total", "counter"},
    {"tether_websocket_closes_total", "counter"},
    {"tether_websocket_duration_seconds", "histogram"},
    {"tether_sse_streams_active", "gauge"},
    {"tether_bytes_total", "counter"},
    {"tether_affinity_lookups_total", "counter"},
    {"tether_affinity_store_up", "gauge"},
    {"tether_affinity_store_seconds", "histogram"},
    {"tether_config_reloads_total", "counter"},
    // Beyond SPEC.md (README, "Metrics"):
    {"tether_tls_handshakes_total", "counter"},
    {"tether_request_timeouts_total", "counter"},
    {"tether_compression_bytes_total", "counter"},
    {"tether_cache_requests_total", "counter"},
    {"tether_cache_stored_total", "counter"},
    {"tether_cache_bytes", "gauge"},
    {"tether_compressed_responses_total", "counter"},
    {"tether_affinity_pin_confirmations_total", "counter"},
    {"tether_backend_weight", "gauge"},
    {"tether_upgrades_total", "counter"},
    {"tether_upstream_tls_handshakes_total", "counter"},
    {"tether_http2_connections_active", "gauge"},
    {"tether_http2_connections_total", "counter"},
    {"tether_http2_goaways_total", "counter"},
    {"tether_http2_stream_errors_total", "counter"},
};

constexpr const char* kB = "10.0.0.11:8080";

std::string series(const std::string& name, const std::string& labels) {
  return name + "{" + labels + "}";
}
std::string backendSeries(const std::string& name, const std::string& more = "") {
  return series(name, std::string("backend=\"") + kB + "\"" + (more.empty() ? "" : "," + more));
}

TEST(Scrape, EveryContractFamilyIsPresentWithHelpTypeAndSamplesWithOneBackend) {
  Metrics m;
  BackendMetrics& b = m.addBackend(0, kB);
  b.request(Method::kGet, 200);
  b.websocketUpgrade(101);
  b.websocketClose(1000, ClosedBy::kClient);
  Exposition e = parse(m.scrape());
  for (const auto& [name, type] : kContract) {
    ASSERT_EQ(e.types.count(name), 1u) << name;
    EXPECT_EQ(e.types.at(name), type) << name;
    ASSERT_EQ(e.helps.count(name), 1u) << name;
    EXPECT_FALSE(e.helps.at(name).empty()) << name;
    EXPECT_GT(e.familySamples(name), 0) << name;
  }
  EXPECT_EQ(e.types.size(), kContract.size()) << "a family outside SPEC.md";
}

TEST(Scrape, EmptyMetricsStillDeclareEveryFamilyAndTheFixedLabelSets) {
  Metrics m;
  Exposition e = parse(m.scrape());
  for (const auto& [name, type] : kContract) EXPECT_EQ(e.types.count(name), 1u) << name;
  EXPECT_EQ(e.at(series("tether_build_info", "version=\"" TETHER_VERSION "\"")), 1);
  EXPECT_EQ(e.at("tether_downstream_connections_active"), 0);
  EXPECT_EQ(e.at("tether_downstream_connections_total"), 0);
  EXPECT_EQ(e.at("tether_affinity_store_up"), 0);
  for (const char* r : {"stored", "unavailable", "timeout"}) {
    EXPECT_EQ(e.at(series("tether_affinity_pin_confirmations_total", std::string("result=\"") + r + "\"")),
              0);
  }
  for (const char* r : {"hit", "miss", "repin", "store_error"}) {
    EXPECT_EQ(e.at(series("tether_affinity_lookups_total", std::string("result=\"") + r + "\"")),
              0);
  }
  for (const char* r : {"ok", "invalid"}) {
    EXPECT_EQ(e.at(series("tether_config_reloads_total", std::string("result=\"") + r + "\"")), 0);
  }
  for (const char* r : {"ok", "failed"}) {
    EXPECT_EQ(e.at(series("tether_upgrades_total", std::string("result=\"") + r + "\"")), 0);
  }
  for (const char* r : {"ok", "error"}) {
    EXPECT_EQ(e.at(series("tether_tls_handshakes_total", std::string("result=\"") + r + "\"")), 0);
  }
  for (const char* phase : {"header", "body"}) {
    EXPECT_EQ(
        e.at(series("tether_request_timeouts_total", std::string("phase=\"") + phase + "\"")), 0);
  }
  for (const char* op : {"get", "set", "refresh"}) {
    std::string l = std::string("op=\"") + op + "\"";
    EXPECT_EQ(e.at(series("tether_affinity_store_seconds_count", l)), 0);
    EXPECT_EQ(e.at(series("tether_affinity_store_seconds_bucket", l + ",le=\"+Inf\"")), 0);
  }
  EXPECT_EQ(e.familySamples("tether_http_requests_total"), 0);
}

TEST(Scrape, ShowsExactValuesAfterKnownIncrements) {
  Metrics m;
  BackendMetrics& b = m.addBackend(0, kB);
  m.downstream_active.set(3);
  m.downstream_total.inc(17);
  b.request(Method::kGet, 200);
  b.request(Method::kGet, 200);
  b.request(Method::kPost, 502);
  b.request(methodFromString("PROPFIND"), 207);
  b.request(Method::kGet, 1000);
  b.upstream_connect_errors.inc(4);
  b.upstream_active.set(5);
  b.upstream_idle.set(6);
  b.retries.inc(2);
  b.up.set(1);
  b.setState(1);
  b.healthCheck(HealthResult::kOk);
  b.healthCheck(HealthResult::kOk);
  b.healthCheck(HealthResult::kTimeout);
  b.ejections.inc();
  b.websocketUpgrade(101);
  b.websocketUpgrade(403);
  b.websocket_active.set(9);
  b.websocket_messages[static_cast<int>(Direction::kDownstream)].inc(10);
  b.websocket_messages[static_cast<int>(Direction::kUpstream)].inc(11);
  b.websocketClose(1001, ClosedBy::kTether);
  b.websocketClose(0, ClosedBy::kClient);
  b.websocketClose(4000, ClosedBy::kBackend);
  b.websocketClose(2500, ClosedBy::kBackend);
  b.sse_active.set(2);
  b.upstream_tls_full.inc();
  b.upstream_tls_resumed.inc(3);
  b.bytes[static_cast<int>(Direction::kDownstream)].inc(123456789);
  b.bytes[static_cast<int>(Direction::kUpstream)].inc(42);
  m.affinityLookup(AffinityResult::kMiss);
  m.affinityLookup(AffinityResult::kStoreError);
  m.affinity_store_up.set(1);
  m.config_reloads_ok.inc();
  m.config_reloads_invalid.inc(2);
  m.request_timeouts_header.inc(3);
  m.request_timeouts_body.inc();

  Exposition e = parse(m.scrape());
  EXPECT_EQ(e.at("tether_downstream_connections_active"), 3);
  EXPECT_EQ(e.at("tether_downstream_connections_total"), 17);
  const std::string req = "tether_http_requests_total";
  EXPECT_EQ(e.at(backendSeries(req, "method=\"GET\",code=\"200\"")), 2);
  EXPECT_EQ(e.at(backendSeries(req, "method=\"POST\",code=\"502\"")), 1);
  EXPECT_EQ(e.at(backendSeries(req, "method=\"OTHER\",code=\"207\"")), 1);
  EXPECT_EQ(e.at(backendSeries(req, "method=\"GET\",code=\"0\"")), 1);
  EXPECT_EQ(e.familySamples(req), 4);
  EXPECT_EQ(e.at(backendSeries("tether_upstream_connect_errors_total")), 4);
  EXPECT_EQ(e.at(backendSeries("tether_upstream_tls_handshakes_total", "session=\"new\"")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_upstream_tls_handshakes_total", "session=\"resumed\"")), 3);
  EXPECT_EQ(e.at(backendSeries("tether_upstream_connections", "state=\"active\"")), 5);
  EXPECT_EQ(e.at(backendSeries("tether_upstream_connections", "state=\"idle\"")), 6);
  EXPECT_EQ(e.at(backendSeries("tether_retries_total")), 2);
  EXPECT_EQ(e.at(backendSeries("tether_backend_up")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_backend_state", "state=\"up\"")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_backend_state", "state=\"unknown\"")), 0);
  EXPECT_EQ(e.at(backendSeries("tether_backend_state", "state=\"down\"")), 0);
  EXPECT_EQ(e.at(backendSeries("tether_backend_state", "state=\"draining\"")), 0);
  EXPECT_EQ(e.at(backendSeries("tether_health_checks_total", "result=\"ok\"")), 2);
  EXPECT_EQ(e.at(backendSeries("tether_health_checks_total", "result=\"fail\"")), 0);
  EXPECT_EQ(e.at(backendSeries("tether_health_checks_total", "result=\"timeout\"")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_backend_ejections_total")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_websocket_upgrades_total", "result=\"101\"")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_websocket_upgrades_total", "result=\"403\"")), 1);
  EXPECT_EQ(e.at(backendSeries("tether_websocket_connections_active")), 9);
  EXPECT_EQ(e.at(backendSeries("tether_websocket_messages_total", "direction=\"downstream\"")), 10);
  EXPECT_EQ(e.at(backendSeries("tether_websocket_messages_total", "direction=\"upstream\"")), 11);
  const std::string closes = "tether_websocket_closes_total";
  EXPECT_EQ(e.at(backendSeries(closes, "code=\"1001\",by=\"tether\"")), 1);
  EXPECT_EQ(e.at(backendSeries(closes, "code=\"none\",by=\"client\"")), 1);
  EXPECT_EQ(e.at(backendSeries(closes, "code=\"4000\",by=\"backend\"")), 1);
  EXPECT_EQ(e.at(backendSeries(closes, "code=\"other\",by=\"backend\"")), 1);
  EXPECT_EQ(e.familySamples(closes), 4);
  EXPECT_EQ(e.at(backendSeries("tether_sse_streams_active")), 2);
  EXPECT_EQ(e.at(backendSeries("tether_bytes_total", "direction=\"downstream\"")), 123456789);
  EXPECT_EQ(e.at(backendSeries("tether_bytes_total", "direction=\"upstream\"")), 42);
  EXPECT_EQ(e.at(series("tether_affinity_lookups_total", "result=\"hit\"")), 0);
  EXPECT_EQ(e.at(series("tether_affinity_lookups_total", "result=\"miss\"")), 1);
  EXPECT_EQ(e.at(series("tether_affinity_lookups_total", "result=\"repin\"")), 0);
  EXPECT_EQ(e.at(series("tether_affinity_lookups_total", "result=\"store_error\"")), 1);
  EXPECT_EQ(e.at("tether_affinity_store_up"), 1);
  EXPECT_EQ(e.at(series("tether_config_reloads_total", "result=\"ok\"")), 1);
  EXPECT_EQ(e.at(series("tether_config_reloads_total", "result=\"invalid\"")), 2);
  EXPECT_EQ(e.at(series("tether_request_timeouts_total", "phase=\"header\"")), 3);
  EXPECT_EQ(e.at(series("tether_request_timeouts_total", "phase=\"body\"")), 1);
  EXPECT_EQ(e.familySamples("tether_request_timeouts_total"), 2);
}

TEST(Scrape, HistogramBucketsAreCumulativeWithInfCountAndSum) {
  Metrics m;
  BackendMetrics& b = m.addBackend(0, kB);
  b.request_duration.observe(0.004);  // le 0.005
  b.request_duration.observe(0.3);    // le 0.5
  b.request_duration.observe(0.3);
  b.request_duration.observe(4000);               // +Inf
  m.storeSeconds(StoreOp::kSet).observe(0.0002);  // le 0.00025

  Exposition e = parse(m.scrape());
  const std::string h = "tether_http_request_duration_seconds";
  auto bucket = [&](const char* le) {
    return e.at(backendSeries(h + "_bucket", std::string("le=\"") + le + "\""));
  };
  EXPECT_EQ(bucket("0.005"), 1);
  EXPECT_EQ(bucket("0.01"), 1);
  EXPECT_EQ(bucket("0.25"), 1);
  EXPECT_EQ(bucket("0.5"), 3);
  EXPECT_EQ(bucket("1"), 3);
  EXPECT_EQ(bucket("3600"), 3);
  EXPECT_EQ(bucket("+Inf"), 4);
  EXPECT_EQ(e.at(backendSeries(h + "_count")), 4);
  EXPECT_NEAR(e.at(backendSeries(h + "_sum")), 4000.604, 1e-9);
  // One line per bound plus +Inf, no more.
  EXPECT_EQ(e.familySamples(h), static_cast<int>(requestDurationBuckets().size()) + 1 + 2);

  const std::string s = "tether_affinity_store_seconds";
  EXPECT_EQ(e.at(series(s + "_bucket", "op=\"set\",le=\"0.0001\"")), 0);
  EXPECT_EQ(e.at(series(s + "_bucket", "op=\"set\",le=\"0.00025\"")), 1);
  EXPECT_EQ(e.at(series(s + "_bucket", "op=\"set\",le=\"1\"")), 1);
  EXPECT_EQ(e.at(series(s + "_count", "op=\"set\"")), 1);
  EXPECT_EQ(e.at(series(s + "_count", "op=\"get\"")), 0);

  // The other histograms of the backend exist with their own bucket sets.
  EXPECT_TRUE(e.has(backendSeries("tether_http_first_byte_seconds_bucket", "le=\"1800\"")));
  EXPECT_TRUE(e.has(backendSeries("tether_upstream_connect_seconds_bucket", "le=\"0.0005\"")));
  EXPECT_TRUE(e.has(backendSeries("tether_websocket_duration_seconds_bucket", "le=\"86400\"")));
}

TEST(Scrape, BackendStateIsOneHotAndARemovedBackendReportsNothingUp) {
  Metrics m;
  BackendMetrics& b = m.addBackend(0, kB);
  const char* names[] = {"unknown", "up", "down", "draining"};
  for (int s = 0; s < 4; ++s) {
    b.setState(s);
    Exposition e = parse(m.scrape());
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(
          e.at(backendSeries("tether_backend_state", std::string("state=\"") + names[i] + "\"")),
          i == s ? 1 : 0)
          << "state " << s << " sample " << names[i];
    }
  }
  b.up.set(1);
  b.setState(4);  // removed
  Exposition e = parse(m.scrape());
  for (const char* n : names) {
    EXPECT_EQ(e.at(backendSeries("tether_backend_state", std::string("state=\"") + n + "\"")), 0);
  }
  EXPECT_EQ(e.at(backendSeries("tether_backend_up")), 0);
}

TEST(Scrape, BackendsAppearInIdOrderEachWithItsOwnSeries) {
  Metrics m;
  m.addBackend(1, "b:2").retries.inc(5);
  m.addBackend(0, "a:1").retries.inc(7);
  std::string text = m.scrape();
  Exposition e = parse(text);
  EXPECT_EQ(e.at("tether_retries_total{backend=\"a:1\"}"), 7);
  EXPECT_EQ(e.at("tether_retries_total{backend=\"b:2\"}"), 5);
  EXPECT_LT(text.find("tether_retries_total{backend=\"a:1\"}"),
            text.find("tether_retries_total{backend=\"b:2\"}"));
}

TEST(Scrape, ContentTypeIsTextFormat004) {
  EXPECT_STREQ(Metrics::kContentType, "text/plain; version=0.0.4; charset=utf-8");
}

// promtool (Debian package prometheus) parses and lints the exposition.
TEST(Scrape, PassesPromtoolCheckMetrics) {
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) {
    const char* ci = std::getenv("CI");
    if (ci != nullptr && std::string(ci) == "true") FAIL() << promtool << " is required in CI";
    GTEST_SKIP() << promtool << " not installed";
  }
  Metrics m;
  BackendMetrics& b = m.addBackend(0, kB);
  m.addBackend(1, "10.0.0.12:8080").setState(2);
  b.request(Method::kGet, 200);
  b.request(Method::kOther, 0);
  b.websocketUpgrade(101);
  b.websocketClose(1000, ClosedBy::kClient);
  b.websocketClose(0, ClosedBy::kTether);
  b.request_duration.observe(0.2);
  b.websocket_duration.observe(100);
  m.storeSeconds(StoreOp::kRefresh).observe(0.003);

  char path[] = "/tmp/tether_metrics_scrape_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  {
    std::ofstream f(path);
    f << m.scrape();
  }
  close(fd);
  std::string cmd = std::string(promtool) + " check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) output += buf;
  int status = pclose(p);
  unlink(path);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_EQ(output, "");
}

}  // namespace
}  // namespace tether::metrics
