// libFuzzer target: the HTTP/2 server codec (proxy/http/h2_server.h), fed
// what a client sends, answered the way a downstream connection would.
//
// Input: byte 0 options (bit 0 websockets on; bit 1 small bounds: window,
// output, per-stream buffer, glitch budget, stream caps; bits 2-3 how the
// caller answers: 0 a response with a body, 1 trailers, 2 resets, 3 1xx then
// bodyless), byte 1 the cut length (1..256) the rest is fed in, then the
// client's bytes (the preface first, as make_seeds.py writes them).
//
// Checked beyond "no crash, no leak": feed() after an error repeats it and
// reads nothing; the staged output stays within its bound plus one nghttp2
// chunk; a stream's unconsumed request body never exceeds its window; a
// head's fields stay within the header list bound; streams held never
// exceed max_concurrent_streams; every callback names a stream the codec
// announced, at most one end and one reset each.
#include <cstdint>
#include <map>
#include <string>

#include "proxy/http/h2_server.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using tether::http::H2ServerCodec;
using tether::http::HeaderList;
using tether::http::RequestHead;
using tether::http::ResponseHead;

struct Driver : H2ServerCodec::Callbacks {
  H2ServerCodec* codec = nullptr;
  H2ServerCodec::Settings settings;
  int mode = 0;
  struct S {
    std::size_t unconsumed = 0;
    bool ended = false, reset = false;
  };
  std::map<std::int32_t, S> streams;

  void onRequestHead(std::int32_t id, std::unique_ptr<RequestHead>& head, bool) override {
    RequestHead& h = *head;
    FUZZ_CHECK(streams.count(id) == 0);
    FUZZ_CHECK(h.headers.bytes() <= 2 * static_cast<std::size_t>(settings.max_header_list_bytes) + 64);
    FUZZ_CHECK(!h.target.empty());
    streams[id];
    ResponseHead r;
    switch (mode) {
      case 3: {
        r.status = 103;
        FUZZ_CHECK(codec->submitResponse(id, r, false));
        r.status = 204;
        FUZZ_CHECK(codec->submitResponse(id, r, false));
        break;
      }
      case 2:
        codec->resetStream(id);
        break;
      default: {
        r.status = 200;
        r.headers.add("Content-Type", "text/plain");
        FUZZ_CHECK(codec->submitResponse(id, r, false));
        std::string body(3000, 'r');
        std::size_t n = codec->sendBody(id, body.data(), body.size(), mode == 0);
        FUZZ_CHECK(n <= body.size());
        if (mode == 1 && n == body.size()) {
          HeaderList t;
          t.add("x-t", "1");
          codec->submitTrailers(id, t);
        }
      }
    }
  }
  void onRequestBody(std::int32_t id, const char*, std::size_t n) override {
    FUZZ_CHECK(streams.count(id) == 1);
    S& s = streams[id];
    FUZZ_CHECK(!s.ended);
    s.unconsumed += n;
    FUZZ_CHECK(s.unconsumed <= settings.initial_window);
    if (s.unconsumed > settings.initial_window / 2) {  // the backend takes half of it
      codec->consumed(id, s.unconsumed);
      s.unconsumed = 0;
    }
  }
  void onRequestEnd(std::int32_t id, const HeaderList*) override {
    FUZZ_CHECK(streams.count(id) == 1);
    FUZZ_CHECK(!streams[id].ended);
    streams[id].ended = true;
    codec->released(id);
  }
  void onStreamReset(std::int32_t id, std::uint32_t) override {
    FUZZ_CHECK(streams.count(id) == 1);
    FUZZ_CHECK(!streams[id].reset);
    streams[id].reset = true;
    codec->released(id);
  }
  void onStreamWritable(std::int32_t id) override {
    std::string more(100, 'w');
    codec->sendBody(id, more.data(), more.size(), true);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  Driver d;
  std::uint8_t opt = data[0];
  std::size_t cut = static_cast<std::size_t>(data[1]) + 1;
  d.settings.enable_connect_protocol = opt & 1;
  if (opt & 2) {
    d.settings.initial_window = 4096;
    d.settings.connection_window = 65535;
    d.settings.output_bound = 2048;
    d.settings.per_stream_buffer = 1024;
    d.settings.glitch_budget = 8;
    d.settings.max_concurrent_streams = 4;
    d.settings.max_streams_per_connection = 6;
    d.settings.rapid_reset_min_streams = 4;
    d.settings.max_header_list_bytes = 512;
  }
  d.mode = (opt >> 2) & 3;
  H2ServerCodec codec(d, d.settings);
  d.codec = &codec;
  const char* p = reinterpret_cast<const char*>(data) + 2;
  std::size_t left = size - 2;
  H2ServerCodec::Error first = H2ServerCodec::Error::kNone;
  for (int round = 0; left && round < 100000; ++round) {
    std::size_t n = left < cut ? left : cut;
    H2ServerCodec::Error e = codec.feed(p, n);
    if (first != H2ServerCodec::Error::kNone) FUZZ_CHECK(e == first);
    first = e;
    p += n;
    left -= n;
    FUZZ_CHECK(codec.streamCount() <= d.settings.max_concurrent_streams);
    // The socket takes half of what is staged each round.
    std::string_view out = codec.output();
    FUZZ_CHECK(out.size() <= d.settings.output_bound + d.settings.per_stream_buffer + 16384 + 4096);
    codec.wrote(out.size() / 2);
  }
  for (int i = 0; i < 1000; ++i) {
    std::string_view out = codec.output();
    if (out.empty()) break;
    codec.wrote(out.size());
  }
  return 0;
}
