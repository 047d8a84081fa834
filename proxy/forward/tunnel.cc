#include "proxy/forward/tunnel.h"

namespace tether::forward {

void Tunnel::account(metrics::BackendMetrics& bm) {
  const FrameObserver* from[2] = {&from_client, &from_backend};
  const metrics::Direction to[2] = {metrics::Direction::kUpstream, metrics::Direction::kDownstream};
  for (int i = 0; i < 2; ++i) {
    std::uint32_t m = from[i]->messages();
    if (m == counted[i]) continue;
    bm.websocket_messages[static_cast<int>(to[i])].inc(m - counted[i]);
    counted[i] = m;
  }
  if (from_client.closeSeen()) {
    noteCloser(metrics::ClosedBy::kClient, from_client.closeCode());
  } else if (from_backend.closeSeen()) {
    noteCloser(metrics::ClosedBy::kBackend, from_backend.closeCode());
  }
}

}  // namespace tether::forward
