#include "proxy/forward/retry.h"

namespace tether::forward {

Retry decideRetry(const Attempt& a) {
  bool replayable = !a.response_started && !a.request_trimmed && !a.client_eof &&
                    (a.fault == Fault::kConnect || a.fault == Fault::kUpstreamReset);
  if (!replayable) return Retry::kNo;
  if (a.reused_connection && a.fault == Fault::kUpstreamReset && a.request_done) return Retry::kSameBackend;
  bool safe = a.fault == Fault::kConnect || a.idempotent;
  if (!safe || a.attempts >= a.max_attempts) return Retry::kNo;
  // strict: a pinned request is never redispatched, even on a retry (as
  // HAProxy without `option redispatch`).
  if (a.strict_pin) return Retry::kRefusePinned;
  return Retry::kOtherBackend;
}

int failureStatus(Fault f) {
  return f == Fault::kFirstByteTimeout || f == Fault::kUpstreamTimeout ? 504 : 502;
}

}  // namespace tether::forward
