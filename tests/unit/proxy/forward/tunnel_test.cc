#include "proxy/forward/tunnel.h"

#include <gtest/gtest.h>

#include <string>

namespace tether::forward {
namespace {

constexpr int kUp = static_cast<int>(metrics::Direction::kUpstream);
constexpr int kDown = static_cast<int>(metrics::Direction::kDownstream);

// "hi" as a text frame: masked (with a zero key) from the client, plain from the backend.
const std::string kClientText("\x81\x82\0\0\0\0hi", 8);
const std::string kBackendText("\x81\x02hi", 4);

std::string closeFrame(std::uint16_t code, bool masked) {
  char f[kMaxCloseFrameBytes];
  return std::string(f, buildCloseFrame(code, "", masked, 0x01020304u, f));
}

TEST(Tunnel, AccountAddsTheMessagesSeenSinceTheLastCall) {
  Tunnel t(0);
  metrics::BackendMetrics bm("b:1");
  t.from_client.feed((kClientText + kClientText).data(), 2 * kClientText.size());
  t.from_backend.feed(kBackendText.data(), kBackendText.size());
  t.account(bm);
  EXPECT_EQ(bm.websocket_messages[kUp].value(), 2u);
  EXPECT_EQ(bm.websocket_messages[kDown].value(), 1u);
  t.account(bm);
  EXPECT_EQ(bm.websocket_messages[kUp].value(), 2u);
  t.from_client.feed(kClientText.data(), kClientText.size());
  t.account(bm);
  EXPECT_EQ(bm.websocket_messages[kUp].value(), 3u);
  EXPECT_EQ(bm.websocket_messages[kDown].value(), 1u);
  EXPECT_FALSE(t.close_known);
}

TEST(Tunnel, AccountNotesTheClientsCloseFrameBeforeTheBackends) {
  Tunnel t(0);
  metrics::BackendMetrics bm("b:1");
  std::string from_backend = closeFrame(4002, false);
  std::string from_client = closeFrame(4001, true);
  t.from_backend.feed(from_backend.data(), from_backend.size());
  t.from_client.feed(from_client.data(), from_client.size());
  t.account(bm);
  EXPECT_TRUE(t.close_known);
  EXPECT_EQ(t.close_by, metrics::ClosedBy::kClient);
  EXPECT_EQ(t.close_code, 4001);
}

TEST(Tunnel, AccountKeepsTheCloseAlreadyNoted) {
  Tunnel t(0);
  metrics::BackendMetrics bm("b:1");
  t.noteCloser(metrics::ClosedBy::kTether, 1001);
  std::string from_client = closeFrame(1000, true);
  t.from_client.feed(from_client.data(), from_client.size());
  t.account(bm);
  EXPECT_EQ(t.close_by, metrics::ClosedBy::kTether);
  EXPECT_EQ(t.close_code, 1001);
}

}  // namespace
}  // namespace tether::forward
