// The byte pipe a connection becomes after a 101: what it knows about the
// WebSocket frames going past in each direction, how far each side's bytes
// are written, and how it ends (who closed it, with which code).
//
// Owner: the downstream connection (proxy/session.h). It makes its tunnel
// when the 101 has been written to the client, in place of the request's
// exchange (exchange.h), which ends there, and keeps it until the connection
// itself is destroyed, after the close callback of its last handle. A
// connection that never tunnels never holds one. Loop-affine, like its owner.
//
// Offsets named "into in_" and "into up_in_" index the connection's read
// buffers (bytes from the client, bytes from the backend).
#pragma once

#include <cstdint>

#include "metrics/metrics.h"
#include "proxy/forward/websocket_frame.h"

namespace tether::forward {

struct Tunnel {
  explicit Tunnel(std::int64_t now_ms) : started_ms(now_ms) {}
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // The first side seen ending the tunnel (a close frame, an EOF, an error or
  // our own 1001) is the one the close is counted for.
  void noteCloser(metrics::ClosedBy by, std::uint16_t code = 0) {
    if (close_known) return;
    close_known = true;
    close_by = by;
    close_code = code;
  }

  // Once the observers have been fed: the messages they saw since the last
  // call are added to `bm` (the tunnel's backend), and a close frame seen is
  // noted as the close (the client's, when both sides sent one).
  void account(metrics::BackendMetrics& bm);

  // A going-away close spread over timeouts.websocket_close_spread
  // (Worker::drainTunnels) is marked, then sent in its turn. markGoAway:
  // false when it was marked already or our 1001 is out.
  bool markGoAway() {
    if (going_away || goaway_marked) return false;
    goaway_marked = true;
    return true;
  }
  bool goAwayDue() const { return goaway_marked && !going_away; }

  // in_ [0, in_sent) is written or queued to the backend; up_in_
  // [0, up_in_sent) to the client.
  std::uint32_t in_sent = 0;
  std::uint32_t up_in_sent = 0;
  // RSV1 is allowed: permessage-deflate sets it on compressed data frames.
  FrameObserver from_client{true, FrameObserver::kRsv1};
  FrameObserver from_backend{false, FrameObserver::kRsv1};
  std::uint32_t counted[2] = {};  // messages already added to the metrics (upstream, downstream)
  bool client_half_closed = false;
  bool backend_half_closed = false;
  bool going_away = false;     // our close frames 1001 are sent, or due
  // Going away: our 1001 that way waits for the frame in flight to end (the
  // rest of that frame is forwarded first, within websocket_close).
  bool close_to_client_due = false;
  bool close_to_backend_due = false;
  bool goaway_marked = false;  // a going-away close waits for its turn in a spread window
  bool close_known = false;
  std::uint16_t close_code = 0;
  metrics::ClosedBy close_by = metrics::ClosedBy::kTether;  // when nothing else was seen
  std::int64_t started_ms;
};

}  // namespace tether::forward
