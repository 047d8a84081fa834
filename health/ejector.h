// Passive ejection (Envoy's outlier detection, "consecutive 5xx"): a backend
// that fails `consecutive_failures` requests in a row is taken out of
// rotation for a while, without waiting for the active checks.
//
// The caller classifies a request's outcome (connect error, reset,
// 502/503/504 from the backend are failures; any other response is a
// success) and reports it. The state lives in the Backend, because every
// worker reports outcomes for the same backend: PassiveEjector is the policy
// alone, and each method is safe from any thread. onSuccess(), called for
// every answered request, is one relaxed load while no streak runs.
//
// An ejection sets Backend::ejected and Backend::ejected_until_ms
// (Backend::available() refuses the backend until then); the caller counts
// tether_backend_ejections_total. The active checks then hold the backend
// down until that time and `rise` good checks, and call onRecovered() when
// it comes back up. Failures reported while a backend is ejected (requests
// that were in flight) do not count.
//
// Durations: eject_for, then 2x, 4x ... on each repeat, capped at eject_max
// (if eject_max < eject_for, every ejection lasts eject_for). The multiplier
// decays back to 1x once a backend has gone eject_max without being ejected,
// counted from the end of its previous ejection: a backend that fails once a
// day is not punished for last week. consecutive_failures == 0 disables
// passive ejection.
#pragma once

#include <cstdint>

#include "balancer/backend.h"
#include "conf/config.h"

namespace tether::health {

class PassiveEjector {
 public:
  explicit PassiveEjector(const conf::Passive& cfg);

  // A request to b failed at wall time now_ms. Returns the ejection's end
  // when this failure ejects b, else 0.
  std::int64_t onFailure(balancer::Backend& b, std::int64_t now_ms) const;
  // A request to b succeeded: the failure streak starts over.
  static void onSuccess(balancer::Backend& b);
  // Active checks brought b back up (down -> up): the ejection and the
  // streak end, the multiplier stays, so a flapping backend still gets longer
  // and longer ejections.
  static void onRecovered(balancer::Backend& b);

 private:
  std::uint32_t threshold_;
  std::int64_t eject_for_ms_;
  std::int64_t eject_max_ms_;
};

}  // namespace tether::health
