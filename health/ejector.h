// Passive ejection (Envoy's outlier detection, "consecutive 5xx"): a backend
// that fails `consecutive_failures` requests in a row is taken out of
// rotation for a while, without waiting for the active checks.
//
// Pure: the caller classifies a request's outcome (connect error, reset,
// 502/503/504 from the backend are failures; any other response is a
// success) and reports it. When onFailure() returns a non-zero time, the
// caller stores it in Backend::ejected_until_ms (Backend::available() then
// refuses the backend until that loop time) and counts
// tether_backend_ejections_total. Not thread-safe: one ejector per backend,
// driven by whichever loop the caller serialises outcomes onto.
//
// Durations: eject_for, then 2x, 4x ... on each repeat, capped at eject_max
// (if eject_max < eject_for, every ejection lasts eject_for). The multiplier
// decays back to 1x once a backend has gone eject_max without being ejected,
// counted from the end of its previous ejection: a backend that fails once a
// day is not punished for last week. Failures reported while the backend is
// still ejected (requests that were in flight) do not count.
// consecutive_failures == 0 disables passive ejection.
#pragma once

#include <cstdint>

namespace tether::health {

class PassiveEjector {
 public:
  PassiveEjector(std::uint32_t consecutive_failures, std::int64_t eject_for_ms,
                 std::int64_t eject_max_ms);

  // A request failed at loop time now_ms. Returns the ejection's end time
  // (loop ms) when this failure triggers an ejection, else 0.
  std::int64_t onFailure(std::int64_t now_ms);
  // A request succeeded: the failure streak starts over.
  void onSuccess();
  // Active checks brought the backend back up (a down -> up flip): ends any
  // current ejection here (the caller clears Backend::ejected_until_ms) and
  // the failure streak, but keeps the multiplier, so a flapping backend still
  // gets longer and longer ejections.
  void onRecovered();

  bool ejected(std::int64_t now_ms) const { return now_ms < ejected_until_ms_; }
  std::int64_t ejectedUntil() const { return ejected_until_ms_; }
  int ejections() const { return ejections_; }  // total, for the admin and metrics
  std::uint32_t consecutiveFailures() const { return failures_; }

 private:
  std::uint32_t threshold_;
  std::int64_t eject_for_ms_;
  std::int64_t eject_max_ms_;
  std::uint32_t failures_ = 0;
  std::uint32_t level_ = 0;  // the next ejection lasts eject_for << level_ (capped)
  std::int64_t ejected_until_ms_ = 0;
  std::int64_t last_end_ms_ = 0;  // end of the previous ejection, for the decay
  int ejections_ = 0;
};

}  // namespace tether::health
