// The retry rule, stated once (SPEC.md `retries`): a failed attempt is
// tried again only when no response byte was sent, the request can be
// replayed, and it either never reached the backend or is idempotent.
// Pure: the session supplies the facts and carries out the answer.
#pragma once

#include <cstdint>

namespace tether::forward {

// Where an attempt failed: decides its status and whether a retry is safe.
enum class Fault : std::uint8_t { kConnect, kUpstreamReset, kUpstreamTimeout, kFirstByteTimeout };

struct Attempt {
  Fault fault = Fault::kConnect;
  bool response_started = false;   // any response byte came from the backend
  bool request_trimmed = false;    // request bytes were sent and dropped: no replay
  bool client_eof = false;         // the client is gone
  bool request_done = false;       // the whole request was read
  bool reused_connection = false;  // the attempt ran on a pooled connection
  bool idempotent = false;         // the method may be repeated (RFC 9110 §9.2.2)
  bool strict_pin = false;         // the backend is a pin under on_target_down: strict
  std::uint32_t attempts = 0;      // retries made so far
  std::uint32_t max_attempts = 0;  // retries.attempts
};

enum class Retry : std::uint8_t {
  kNo,            // answer failureStatus() (or close, once a response started)
  kSameBackend,   // a pooled connection the backend had closed: once more, fresh; not its failure
  kOtherBackend,  // another backend, counted as a retry
  kRefusePinned,  // strict affinity: 503, the pin stays
};

Retry decideRetry(const Attempt& a);

// The status a failed attempt is answered with: 504 for a timeout, else 502.
int failureStatus(Fault f);

}  // namespace tether::forward
