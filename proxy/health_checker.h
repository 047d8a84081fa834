// Active health checks: one HTTP GET of health.path per backend per interval
// (with jitter), on a connection of its own, on the main loop. To an https://
// backend the check speaks TLS with the backend's settings (setTls): a
// certificate that does not verify fails the check with OpenSSL's reason.
//
// The verdict goes through health::HealthState (rise/fall); a flip updates
// Backend::state, is logged at info with its reason and counted. A backend
// ejected by passive health is marked down and comes back only through
// `rise` good checks made after its ejection time.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "balancer/backend.h"
#include "conf/config.h"
#include "health/check_response.h"
#include "health/health_state.h"
#include "metrics/metrics.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/io/buffer_pool.h"
#include "proxy/io/tls_client.h"

namespace tether::proxy {

// The request a check sends: "GET <path> HTTP/1.1" with Host (host[:port] of
// the backend's URL), User-Agent: tether-health-check, Accept: */* and
// Connection: close, written by the shared HTTP/1 encoder.
std::string checkRequest(const std::string& path, const std::string& host);

// Reads one check's answer: bytes in, a verdict out; no socket, no clock (the
// check's timeout is the caller's). The answer is decoded by tether's one
// HTTP/1 decoder (proxy/http/h1_decoder.h) as the response to a GET, with its
// default bounds: a head of at most 64 KiB, chunk lines of at most 4 KiB,
// trailers of at most 64 KiB. The body is never stored: it streams through
// a health::BodyMatcher, which looks at its first
// health::kMaxInspectedBodyBytes only.
//
// The verdict is known (done()) when:
//   - the response ends (Content-Length, the last chunk, or, for a response
//     without length, eof()): judged on status and body;
//   - with expect_body set, the body contains it, or the inspected bound is
//     passed without it ("body does not contain '...' in its first 65536
//     bytes"): the rest is not read;
//   - the bytes are not a well-formed response: a failed check whose reason
//     names what was wrong ("bad response: obsolete line folding");
//   - eof() before the response ended: "connection closed mid-response", or
//     "connection closed before a response".
// A 1xx head is skipped; a 101 is malformed (the check asked for no upgrade).
// Bytes after the verdict are not looked at. Not thread-safe; one per check.
class CheckReader {
 public:
  explicit CheckReader(const conf::Health& cfg);
  // Returns done().
  bool feed(const char* data, std::size_t len);
  // The backend closed its side (or the read failed, with `read_error` set,
  // e.g. "read: connection reset by peer"). Always done() afterwards.
  void eof(const char* read_error = nullptr);
  bool done() const { return done_; }
  const health::CheckVerdict& verdict() const { return verdict_; }
  // The final status, once its head arrived; 0 before.
  int status() const { return status_; }

 private:
  // The body decided before its end: expect_body found, or the inspected
  // bound passed without it.
  bool decided() const { return status_ && !expect_.body_substring.empty() && matcher_.done(); }
  bool conclude();
  bool fail(std::string reason);

  health::CheckExpect expect_;
  health::BodyMatcher matcher_;
  http::H1Decoder decoder_;
  health::CheckVerdict verdict_;
  int status_ = 0;
  bool done_ = false;
};

class HealthChecker {
 public:
  HealthChecker(uv_loop_t* loop, metrics::Metrics& metrics);
  ~HealthChecker();
  // Starts checking `b` with `cfg` (copied). Safe to call again for a new
  // configuration: the next check uses it.
  void add(balancer::Backend* b, const conf::Health& cfg);
  void setConfig(const conf::Health& cfg);
  // Stops every check; on_closed runs once every handle is closed.
  void stop();
  bool anyUp() const;
  // Called on the main loop when a backend goes from up to down (its
  // tunnels are then closed with 1001 so that clients reconnect elsewhere).
  void setOnDown(std::function<void(balancer::Backend*)> f) { on_down_ = std::move(f); }
  // The TLS of a backend (nullptr: plain HTTP), asked at the start of each check.
  using TlsSource = std::function<std::shared_ptr<const TlsClientContext>(const balancer::Backend&)>;
  void setTls(TlsSource f) { tls_source_ = std::move(f); }

  struct Check;  // one backend's check (internal)

 private:
  uv_loop_t* loop_;
  metrics::Metrics& metrics_;
  std::vector<Check*> checks_;
  std::function<void(balancer::Backend*)> on_down_;
  TlsSource tls_source_;
  BufferPool buffers_{8};  // TLS record buffers of the checks in progress
};

}  // namespace tether::proxy
