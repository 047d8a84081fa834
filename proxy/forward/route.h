// Routing: the affinity plan a request path falls under, and the affinity
// state a request starts with under it. Pure: a configuration and a request
// view in, no store, no loop, no clock (an inserted cookie's value is random).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "balancer/affinity_key.h"
#include "conf/config.h"
#include "proxy/forward/exchange.h"

namespace tether::forward {

// How one route chooses its affinity key: the configuration plus its key
// specs parsed once. Shared with the exchanges that use it, so that a reload
// never pulls it from under a lookup in flight.
struct AffinityPlan {
  conf::Affinity cfg;
  std::vector<balancer::KeySpec> keys;
  bool engineio = false;  // keys include engineio_sid: learn sids from handshakes
};

// A configuration's plans: the top level's and one per route.
class AffinityPlans {
 public:
  AffinityPlans() = default;
  explicit AffinityPlans(const conf::Config& config);
  // The plan for a request path (first matching route, else the top
  // level); nullptr when none applies.
  const std::shared_ptr<const AffinityPlan>* forPath(std::string_view path) const;

 private:
  std::shared_ptr<const AffinityPlan> top_;  // nullptr: no affinity
  std::vector<std::pair<std::string, std::shared_ptr<const AffinityPlan>>> routes_;  // path prefix, plan
};

// The affinity a request starts with under `plan`: the key of the first key
// spec the request carries, else (cookie.insert) a new cookie's, with the
// Set-Cookie value the response must carry (`tls`: Secure); its store key
// and hash when there is a key; an Engine.IO sid sniffer for a handshake.
// nullptr when the request has neither a key nor a handshake.
std::unique_ptr<AffinityState> startAffinity(const std::shared_ptr<const AffinityPlan>& plan,
                                             const balancer::RequestView& view, bool tls);

}  // namespace tether::forward
