// Passive ejection (Envoy's outlier detection, "consecutive 5xx"): a backend
// that fails `consecutive_failures` requests in a row is taken out of
// rotation for a while, without waiting for the active checks.
//
// The caller classifies a request's outcome and reports it: connect errors,
// resets, timeouts and malformed responses are always failures; a status the
// backend answered is one only when passive.failure_statuses lists it
// (countsAsPassiveFailure(); 502 and 504 by default); any other response is
// a success. The state lives in the Backend, because every
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
// The floor (Envoy's max_ejection_percent): an ejection that would leave more
// than passive.max_ejection_percent of the fleet's backends ejected does not
// happen, and a fleet of one backend never loses it to passive ejection. The
// fleet is every backend of the BackendTable but the removed ones; a backend
// counts as ejected from its ejection until the active checks bring it back
// (onRecovered). A failure that reaches the threshold but is held by the
// floor starts the streak over, so the floor is looked at again after another
// consecutive_failures failures. The decision takes one process-wide mutex
// (only when a streak reaches the threshold, never below it) so that workers
// ejecting different backends at once cannot both pass the floor.
//
// Durations: eject_for, then 2x, 4x ... on each repeat, capped at eject_max
// (if eject_max < eject_for, every ejection lasts eject_for). The multiplier
// decays back to 1x once a backend has gone eject_max without being ejected,
// counted from the end of its previous ejection: a backend that fails once a
// day is not punished for last week. consecutive_failures == 0 disables
// passive ejection.
#pragma once

#include <cstddef>
#include <cstdint>

#include "balancer/backend.h"
#include "conf/config.h"

namespace tether::health {

// Is a status FROM THE BACKEND a passive failure? True when
// cfg.failure_statuses lists it. Only for answers the backend sent: tether's
// own 502/504 (connect error, timeout, malformed response) are reported as
// failures without asking.
bool countsAsPassiveFailure(const conf::Passive& cfg, int backend_status);

// Would ejecting one more backend keep the floor? `ejected_after` backends
// of `fleet_size` would then be ejected.
bool ejectionKeepsFloor(std::size_t ejected_after, std::size_t fleet_size,
                        std::uint32_t max_ejection_percent);

class PassiveEjector {
 public:
  // fleet: the backends the floor counts (b below is one of them); must
  // outlive the ejector.
  PassiveEjector(const conf::Passive& cfg, const balancer::BackendTable& fleet);

  // A request to b failed at wall time now_ms. Returns the ejection's end
  // when this failure ejects b, else 0. *held_by_floor (when given) is set
  // to true when the failure would have ejected b but the floor kept it.
  std::int64_t onFailure(balancer::Backend& b, std::int64_t now_ms,
                         bool* held_by_floor = nullptr) const;
  // A request to b succeeded: the failure streak starts over.
  static void onSuccess(balancer::Backend& b);
  // Active checks brought b back up (down -> up): the ejection and the
  // streak end, the multiplier stays, so a flapping backend still gets longer
  // and longer ejections.
  static void onRecovered(balancer::Backend& b);

 private:
  const balancer::BackendTable& fleet_;
  std::uint32_t threshold_;
  std::uint32_t max_ejection_percent_;
  std::int64_t eject_for_ms_;
  std::int64_t eject_max_ms_;
};

}  // namespace tether::health
