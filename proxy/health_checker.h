// Active health checks: one HTTP GET of health.path per backend per interval
// (with jitter), on a connection of its own, on the main loop.
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
#include "health/health_state.h"
#include "metrics/metrics.h"

namespace tether::proxy {

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

  struct Check;  // one backend's check (internal)

 private:
  uv_loop_t* loop_;
  metrics::Metrics& metrics_;
  std::vector<Check*> checks_;
  std::function<void(balancer::Backend*)> on_down_;
};

}  // namespace tether::proxy
