// The HTTP/2 codec's settings from the configuration: http2: and the limits
// HTTP/1 requests are held to (the header list size is
// limits.max_request_header_bytes, the body limit limits.max_request_body_bytes),
// so that a request is bounded the same whichever protocol carried it.
// Pure; the downstream connection makes one H2ServerCodec per connection
// with the settings of the config it started on (a reload applies to new
// connections).
#pragma once

#include <algorithm>
#include <cstdint>

#include "conf/config.h"
#include "proxy/http/h2_server.h"

namespace tether::proxy {

inline http::H2ServerCodec::Settings h2Settings(const conf::Config& c) {
  auto u32 = [](std::uint64_t v) {
    return static_cast<std::uint32_t>(std::min<std::uint64_t>(v, 0x7fffffff));
  };
  http::H2ServerCodec::Settings s;
  s.max_concurrent_streams = c.http2.max_concurrent_streams;
  s.initial_window = u32(c.http2.initial_window);
  s.connection_window = u32(c.http2.connection_window);
  s.max_frame_size = u32(c.http2.max_frame_size);
  s.max_header_list_bytes = u32(c.limits.max_request_header_bytes);
  s.max_request_body_bytes = c.limits.max_request_body_bytes;
  s.enable_connect_protocol = c.http2.websockets;
  s.max_streams_per_connection = c.http2.max_streams_per_connection;
  s.glitch_budget = c.http2.glitch_budget;
  // One window of a stream's response may be queued; the output stages at
  // most one connection's worth of frames before the connection stops reading.
  s.per_stream_buffer = std::max<std::size_t>(16 * 1024, std::min<std::size_t>(s.initial_window, 256 * 1024));
  return s;
}

}  // namespace tether::proxy
