// The HTTP/2 codec's settings as the configuration gives them.
#include "proxy/h2_settings.h"

#include <gtest/gtest.h>

namespace tether::proxy {
namespace {

TEST(H2Settings, DefaultsAreTheContractsAndTheHeaderBoundIsHttp1s) {
  conf::Config c;
  auto s = h2Settings(c);
  EXPECT_EQ(s.max_concurrent_streams, 100u);
  EXPECT_EQ(s.initial_window, 64u * 1024);
  EXPECT_EQ(s.connection_window, 1024u * 1024);
  EXPECT_EQ(s.max_frame_size, 16384u);
  EXPECT_EQ(s.max_header_list_bytes, c.limits.max_request_header_bytes);
  EXPECT_EQ(s.max_request_body_bytes, 0u);
  EXPECT_FALSE(s.enable_connect_protocol);
  EXPECT_EQ(s.per_stream_buffer, 64u * 1024);
}

TEST(H2Settings, FollowTheConfiguration) {
  conf::Config c;
  c.http2.max_concurrent_streams = 7;
  c.http2.initial_window = 1024 * 1024;
  c.http2.websockets = true;
  c.http2.glitch_budget = 3;
  c.limits.max_request_header_bytes = 8 * 1024;
  c.limits.max_request_body_bytes = 1 << 20;
  auto s = h2Settings(c);
  EXPECT_EQ(s.max_concurrent_streams, 7u);
  EXPECT_EQ(s.initial_window, 1024u * 1024);
  EXPECT_TRUE(s.enable_connect_protocol);
  EXPECT_EQ(s.glitch_budget, 3u);
  EXPECT_EQ(s.max_header_list_bytes, 8u * 1024);
  EXPECT_EQ(s.max_request_body_bytes, 1u << 20);
  EXPECT_EQ(s.per_stream_buffer, 256u * 1024);  // capped
}

}  // namespace
}  // namespace tether::proxy
