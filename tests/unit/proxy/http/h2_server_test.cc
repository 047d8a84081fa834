// The HTTP/2 server codec driven through memory: an nghttp2 client for the
// well-formed exchanges, raw frames for the hostile ones (the attacks of
// issue 13 and RFC 9113's malformed requests). Bytes in, events out.
#include "proxy/http/h2_server.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/unit/proxy/http/h2_test_util.h"

namespace tether::http {
namespace {

using testing::Client;
using testing::clientStart;
using testing::Fields;
using testing::frame;
using testing::getRequest;
using testing::Hpack;
using testing::pump;
using testing::Recorder;
using Error = H2ServerCodec::Error;

std::string field(const RequestHead& h, HeaderKind k) {
  long i = h.headers.find(k);
  return i < 0 ? std::string("<none>") : std::string(h.headers.value(static_cast<std::size_t>(i)));
}

ResponseHead response(std::uint16_t status, Fields fields = {}) {
  ResponseHead r;
  r.status = status;
  for (auto& [n, v] : fields) r.headers.add(n, v);
  return r;
}

struct H2Server : ::testing::Test {
  Recorder rec;
  H2ServerCodec::Settings settings;
  std::unique_ptr<H2ServerCodec> codec;
  Client client;

  H2ServerCodec& make() {
    codec = std::make_unique<H2ServerCodec>(rec, settings);
    return *codec;
  }
  // The codec answered `n` raw bytes with; errors are the codec's.
  Error feedRaw(const std::string& bytes) { return codec->feed(bytes.data(), bytes.size()); }
  void answer(std::int32_t id, std::uint16_t status, const std::string& body) {
    ASSERT_TRUE(codec->submitResponse(id, response(status, {{"Content-Type", "text/plain"}}), body.empty()));
    if (!body.empty()) {
      ASSERT_EQ(codec->sendBody(id, body.data(), body.size(), true), body.size());
    }
  }
};

// An HTTP/1.1 backend's names in any case reach the client lowercase (the
// client's nghttp2 refuses any other), whatever their length; a value unique
// to its response (X-Request-Id, the backend's or tether's) is never indexed.
TEST_F(H2Server, ResponseNamesAreLoweredAndRequestIdsNeverIndexed) {
  make();
  const Fields sent = {{"Content-Type", "text/plain"}, {"SERVER", "up"}, {"A", "1"}, {"Ab-Z", "2"},
                       {"Abc-Defgh-Ijk_^`|~Z", "3"}, {"X-Longer-Than-Sixteen-BYTES-AtAll", "4"},
                       {"X-Request-Id", "from-backend"}};
  for (int round = 0; round < 3; ++round) {
    std::int32_t id = client.request(getRequest("/"));
    pump(client, *codec);
    const std::string rid = "rid-" + std::to_string(round);  // ExtraFields holds views
    ExtraFields extra;
    extra.add("X-Request-Id", rid);
    ASSERT_TRUE(codec->submitResponse(id, response(200, sent), true, &extra));
    pump(client, *codec);
    const auto& r = client.resps[id];
    EXPECT_TRUE(r.ended);
    Fields want;
    for (const auto& [n, v] : sent) {
      std::string lower;
      for (char c : n) lower += c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
      want.emplace_back(lower, v);
    }
    want.emplace_back("x-request-id", rid);
    EXPECT_EQ(r.headers, want);
    EXPECT_EQ(r.never_indexed, (std::vector<std::string>{"x-request-id", "x-request-id"}));
  }
}

// A closed stream's entry serves the next stream, on this connection or
// another of the thread: nothing of the first stream (fields, cookies,
// trailers, body queue, flags) shows in the second.
TEST_F(H2Server, AReusedStreamEntryStartsAsNew) {
  make();
  Fields f = getRequest("/first?x=1", "POST");
  f.emplace_back("cookie", "a=1");
  f.emplace_back("x-first", "1");
  const std::string body = "first body";
  const Fields trailers = {{"x-trailer", "t"}};
  std::int32_t id = client.request(f, &body, &trailers);
  pump(client, *codec);
  ASSERT_TRUE(rec.reqs[id].had_trailers);
  ASSERT_TRUE(codec->submitResponse(id, response(200, {{"X-Sent", "1"}}), false));
  ASSERT_EQ(codec->sendBody(id, "partial", 7, false), 7u);
  codec->resetStream(id);  // closed with its body queue and flags set
  pump(client, *codec);
  codec->released(id);
  pump(client, *codec);

  Client other;
  Client* clients[2] = {&client, &other};
  for (int conn = 0; conn < 2; ++conn) {
    if (conn) {
      make();  // another connection of this thread, whose stream 1 is new too
      rec.reqs.clear();
    }
    Client& cl = *clients[conn];
    std::int32_t next = cl.request(getRequest("/second"));
    pump(cl, *codec);
    ASSERT_EQ(rec.reqs.count(next), 1u);
    const auto& r = rec.reqs[next];
    EXPECT_EQ(r.head.method, kMethodGet);
    EXPECT_EQ(r.head.target, "/second");
    EXPECT_EQ(field(r.head, HeaderKind::kCookie), "<none>");
    for (std::size_t i = 0; i < r.head.headers.size(); ++i) EXPECT_NE(r.head.headers.name(i), "x-first");
    EXPECT_EQ(r.head.framing, Framing::kNone);
    EXPECT_TRUE(r.end_stream_at_head);
    EXPECT_FALSE(r.had_trailers);
    answer(next, 200, "second");
    pump(cl, *codec);
    EXPECT_EQ(cl.resps[next].statuses, std::vector<std::string>{"200"});
    EXPECT_EQ(cl.resps[next].body, "second");
    EXPECT_TRUE(cl.resps[next].ended);
    codec->released(next);
    pump(cl, *codec);
  }
}

TEST_F(H2Server, RequestHeadIsTheNeutralHeadAnHttp1RequestGets) {
  make();
  Fields f = getRequest("/api/chats?page=2");
  f.emplace_back("user-agent", "t/1");
  f.emplace_back("cookie", "a=1");
  f.emplace_back("cookie", "b=2");
  std::int32_t id = client.request(f);
  pump(client, *codec);
  ASSERT_EQ(rec.reqs.count(id), 1u);
  const auto& r = rec.reqs[id];
  EXPECT_EQ(r.head.method, kMethodGet);
  EXPECT_EQ(r.head.target, "/api/chats?page=2");
  EXPECT_EQ(r.head.authority, "chat.example");
  EXPECT_EQ(field(r.head, HeaderKind::kHost), "chat.example");
  EXPECT_EQ(field(r.head, HeaderKind::kCookie), "a=1; b=2");  // RFC 9113 §8.2.3
  EXPECT_EQ(r.head.version_minor, 1);
  EXPECT_EQ(r.head.framing, Framing::kNone);
  EXPECT_FALSE(r.head.upgrade);
  EXPECT_TRUE(r.end_stream_at_head);
  EXPECT_TRUE(r.ended);
  answer(id, 200, "hello");
  pump(client, *codec);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"200"});
  EXPECT_EQ(client.resps[id].body, "hello");
  EXPECT_TRUE(client.resps[id].ended);
  EXPECT_EQ(client.resps[id].closed, 0);
  codec->released(id);
  EXPECT_EQ(codec->streamCount(), 0u);
}

TEST_F(H2Server, HostFieldWithoutAuthorityIsTheAuthorityAndAMismatchIsRefused) {
  make();
  std::int32_t a = client.request({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"host", "h.example"}});
  Fields mism = getRequest("/");
  mism.emplace_back("host", "other.example");
  std::int32_t b = client.request(mism);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs[a].head.authority, "h.example");
  EXPECT_EQ(rec.reqs.count(b), 0u);
  EXPECT_EQ(client.resps[b].statuses, std::vector<std::string>{"400"});
}

TEST_F(H2Server, RequestSplitAtEveryByteGivesTheSameHead) {
  Client c;
  Fields f = getRequest("/split");
  f.emplace_back("x-long", std::string(300, 'v'));
  std::string body = "0123456789";
  c.request(f, &body);
  std::string bytes = c.take();
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    Recorder r;
    H2ServerCodec k(r, settings);
    ASSERT_EQ(k.feed(bytes.data(), cut), Error::kNone) << cut;
    ASSERT_EQ(k.feed(bytes.data() + cut, bytes.size() - cut), Error::kNone) << cut;
    ASSERT_EQ(r.reqs.size(), 1u) << cut;
    EXPECT_EQ(r.reqs[1].head.target, "/split");
    EXPECT_EQ(r.reqs[1].body, body);
    EXPECT_TRUE(r.reqs[1].ended);
  }
  Recorder r;
  H2ServerCodec k(r, settings);
  for (char ch : bytes) ASSERT_EQ(k.feed(&ch, 1), Error::kNone);
  EXPECT_EQ(r.reqs[1].body, body);
  EXPECT_EQ(r.reqs[1].head.framing, Framing::kChunked);  // no Content-Length: chunked upstream
}

TEST_F(H2Server, RequestBodyLargerThanTheWindowFlowsOnlyAsFastAsConsumed) {
  make();
  std::string body(300 * 1024, 'b');
  for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
  Fields f = getRequest("/upload", "POST");
  f.emplace_back("content-length", std::to_string(body.size()));
  std::int32_t id = client.request(f, &body);
  pump(client, *codec);
  auto& r = rec.reqs[id];
  EXPECT_EQ(r.head.framing, Framing::kLength);
  EXPECT_EQ(r.head.content_length, body.size());
  // Nothing consumed: at most the stream's window arrived.
  EXPECT_LE(r.body.size(), settings.initial_window);
  EXPECT_GT(r.body.size(), 0u);
  std::size_t before = r.body.size();
  pump(client, *codec);
  EXPECT_EQ(r.body.size(), before);  // no WINDOW_UPDATE without consumed()
  std::size_t acked = 0;
  for (int i = 0; i < 100 && !r.ended; ++i) {
    codec->consumed(id, r.body.size() - acked);
    acked = r.body.size();
    pump(client, *codec);
    EXPECT_LE(r.body.size() - acked, settings.initial_window);
  }
  EXPECT_TRUE(r.ended);
  EXPECT_EQ(r.body, body);
}

TEST_F(H2Server, ContentLengthAboveTheBodyLimitIsAnswered413) {
  settings.max_request_body_bytes = 1000;
  make();
  std::string body(2000, 'b');
  Fields f = getRequest("/upload", "POST");
  f.emplace_back("content-length", "2000");
  std::int32_t id = client.request(f, &body);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(id), 0u);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"413"});
  EXPECT_TRUE(client.resps[id].ended);
  EXPECT_EQ(client.resps[id].closed, NGHTTP2_NO_ERROR);
  EXPECT_EQ(codec->streamCount(), 0u);
}

TEST_F(H2Server, TrailersBothWays) {
  make();
  std::string body = "payload";
  Fields trailers = {{"x-checksum", "abc"}};
  std::int32_t id = client.request(getRequest("/t", "POST"), &body, &trailers);
  pump(client, *codec);
  auto& r = rec.reqs[id];
  ASSERT_TRUE(r.ended);
  ASSERT_TRUE(r.had_trailers);
  ASSERT_EQ(r.trailers.size(), 1u);
  EXPECT_EQ(r.trailers.name(0), "x-checksum");
  EXPECT_EQ(r.trailers.value(0), "abc");
  ASSERT_TRUE(codec->submitResponse(id, response(200, {{"Trailer", "Grpc-Status"}}), false));
  EXPECT_EQ(codec->sendBody(id, "ok", 2, false), 2u);
  HeaderList t;
  t.add("Grpc-Status", "0");
  t.add("Connection", "close");  // hop-by-hop: not sent
  ASSERT_TRUE(codec->submitTrailers(id, t));
  pump(client, *codec);
  EXPECT_EQ(client.resps[id].body, "ok");
  EXPECT_EQ(client.resps[id].trailers, (Fields{{"grpc-status", "0"}}));
  EXPECT_TRUE(client.resps[id].ended);
}

TEST_F(H2Server, InformationalHeadsComeBeforeTheFinalOne) {
  make();
  std::int32_t id = client.request(getRequest("/"));
  pump(client, *codec);
  ASSERT_TRUE(codec->submitResponse(id, response(103, {{"Link", "</a.css>; rel=preload"}}), false));
  ASSERT_TRUE(codec->submitResponse(id, response(200), true));
  EXPECT_FALSE(codec->submitResponse(id, response(200), true));  // one final head
  pump(client, *codec);
  EXPECT_EQ(client.resps[id].statuses, (std::vector<std::string>{"103", "200"}));
  EXPECT_TRUE(client.resps[id].ended);
}

TEST_F(H2Server, HeadAnd204And304AnswersHaveNoBody) {
  make();
  std::int32_t head = client.request(getRequest("/", "HEAD"));
  std::int32_t nc = client.request(getRequest("/nc"));
  std::int32_t nm = client.request(getRequest("/nm"));
  pump(client, *codec);
  ASSERT_TRUE(codec->submitResponse(head, response(200, {{"Content-Length", "5"}}), false));
  EXPECT_EQ(codec->sendBody(head, "hello", 5, true), 5u);  // dropped
  ASSERT_TRUE(codec->submitResponse(nc, response(204), false));
  ASSERT_TRUE(codec->submitResponse(nm, response(304), false));
  EXPECT_EQ(codec->writable(nm), 0u);
  pump(client, *codec);
  for (std::int32_t id : {head, nc, nm}) {
    EXPECT_TRUE(client.resps[id].ended) << id;
    EXPECT_EQ(client.resps[id].body, "") << id;
  }
  EXPECT_EQ(client.resps[head].headers, (Fields{{"content-length", "5"}}));
}

TEST_F(H2Server, ConcurrentStreamsAreAnsweredInAnyOrder) {
  make();
  std::int32_t ids[3];
  for (int i = 0; i < 3; ++i) ids[i] = client.request(getRequest("/" + std::to_string(i)));
  pump(client, *codec);
  EXPECT_EQ(codec->streamCount(), 3u);
  answer(ids[2], 200, "two");
  answer(ids[0], 200, "zero");
  pump(client, *codec);
  answer(ids[1], 404, "one");
  pump(client, *codec);
  EXPECT_EQ(client.resps[ids[0]].body, "zero");
  EXPECT_EQ(client.resps[ids[1]].statuses, std::vector<std::string>{"404"});
  EXPECT_EQ(client.resps[ids[2]].body, "two");
}

TEST_F(H2Server, ClientResetMidBodyIsReportedWithItsCode) {
  make();
  std::string body(100 * 1024, 'x');
  std::int32_t id = client.request(getRequest("/up", "POST"), &body);
  pump(client, *codec);
  ASSERT_FALSE(rec.reqs[id].ended);
  nghttp2_submit_rst_stream(client.session(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs[id].reset, NGHTTP2_CANCEL);
  EXPECT_EQ(codec->counters().premature_resets, 1u);
  EXPECT_FALSE(codec->submitResponse(id, response(200), true));
  EXPECT_EQ(codec->streamCount(), 1u);  // the slot is held until released
  codec->released(id);
  EXPECT_EQ(codec->streamCount(), 0u);
  // The connection window of the unconsumed bytes came back: another upload flows.
  std::int32_t next = client.request(getRequest("/up2", "POST"), &body);
  pump(client, *codec);
  EXPECT_GT(rec.reqs[next].body.size(), 0u);
}

// Found by fuzz_h2_server (regress-release-inside-reset-callback).
TEST_F(H2Server, ReleasedFromInsideTheResetCallback) {
  make();
  rec.on_reset = [&](std::int32_t id) { codec->released(id); };
  std::string body(1000, 'x');
  std::int32_t id = client.request(getRequest("/up", "POST"), &body);
  pump(client, *codec);
  nghttp2_submit_rst_stream(client.session(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs[id].reset, NGHTTP2_CANCEL);
  EXPECT_EQ(codec->streamCount(), 0u);
}

TEST_F(H2Server, BackendDeathResetsThatStreamOnly) {
  make();
  std::int32_t a = client.request(getRequest("/a"));
  std::int32_t b = client.request(getRequest("/b"));
  pump(client, *codec);
  ASSERT_TRUE(codec->submitResponse(a, response(200), false));
  codec->sendBody(a, "par", 3, false);
  codec->resetStream(a);
  answer(b, 200, "fine");
  pump(client, *codec);
  EXPECT_EQ(client.resps[a].closed, NGHTTP2_INTERNAL_ERROR);
  EXPECT_EQ(rec.reqs[a].reset, -1);  // the caller's own reset is not reported back
  EXPECT_EQ(client.resps[b].body, "fine");
  EXPECT_EQ(codec->error(), Error::kNone);
}

TEST_F(H2Server, ResponseBodyTakesOnlyTheClientsWindowAndSaysWhenItReopens) {
  Client small({{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1000}}, false);
  make();
  std::int32_t id = small.request(getRequest("/sse"));
  pump(small, *codec);
  ASSERT_TRUE(codec->submitResponse(id, response(200, {{"Content-Type", "text/event-stream"}}), false));
  std::string big(5000, 'e');
  EXPECT_LE(codec->writable(id), 1000u);
  std::size_t took = codec->sendBody(id, big.data(), big.size(), false);
  EXPECT_EQ(took, 1000u);
  EXPECT_EQ(codec->writable(id), 0u);
  pump(small, *codec);
  EXPECT_EQ(small.resps[id].body.size(), 1000u);
  EXPECT_EQ(rec.reqs[id].writable, 0);
  nghttp2_session_consume(small.session(), id, 1000);  // the client reads: WINDOW_UPDATE
  pump(small, *codec);
  EXPECT_EQ(rec.reqs[id].writable, 1);
  EXPECT_GT(codec->writable(id), 0u);
}

TEST_F(H2Server, PerStreamBufferBoundsWhatIsQueued) {
  settings.per_stream_buffer = 4096;
  make();
  std::int32_t id = client.request(getRequest("/"));
  pump(client, *codec);
  ASSERT_TRUE(codec->submitResponse(id, response(200), false));
  std::string big(60000, 'z');
  EXPECT_EQ(codec->sendBody(id, big.data(), big.size(), false), 4096u);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs[id].writable, 1);  // drained: writable again
  EXPECT_EQ(codec->writable(id), 4096u);
}

// RFC 9113 §8.2.2 and §8.3: nghttp2 refuses these itself (RST_STREAM
// PROTOCOL_ERROR); the caller never sees the request.
TEST_F(H2Server, MalformedRequestsAreStreamErrors) {
  std::vector<Fields> bad = {
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"connection", "close"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"keep-alive", "5"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"proxy-connection", "x"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"transfer-encoding", "chunked"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"upgrade", "websocket"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"te", "gzip"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"X-Upper", "1"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}},                        // no :path
      {{":method", "GET"}, {":method", "GET"}, {":scheme", "https"}, {":path", "/"}},        // duplicate
      {{":scheme", "https"}, {":authority", "a"}, {":path", "/"}},                           // no :method
      {{":method", "GET"}, {":scheme", "https"}, {"x", "1"}, {":path", "/"}},                // pseudo after regular
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {":foo", "1"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {"x", "a\r\nb"}},
      {{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}, {":protocol", "websocket"}},
  };
  for (std::size_t i = 0; i < bad.size(); ++i) {
    Recorder r;
    H2ServerCodec k(r, settings);
    Hpack hp;
    std::string in = clientStart() + frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
                                           hp.block(bad[i]));
    EXPECT_EQ(k.feed(in.data(), in.size()), Error::kNone) << i;
    EXPECT_EQ(r.reqs.size(), 0u) << i;
    EXPECT_GE(k.counters().stream_protocol_errors, 1u) << i;
    std::string out(k.output());
    // RST_STREAM(1, PROTOCOL_ERROR) is in the output.
    EXPECT_NE(out.find(frame(NGHTTP2_RST_STREAM, 0, 1, testing::be32(NGHTTP2_PROTOCOL_ERROR))), std::string::npos) << i;
  }
}

TEST_F(H2Server, TeTrailersIsAllowed) {
  make();
  Fields f = getRequest("/");
  f.emplace_back("te", "trailers");
  std::int32_t id = client.request(f);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(id), 1u);
}

// Found by fuzz_h2_server (regress-unknown-method): llhttp has no code for it.
TEST_F(H2Server, UnknownMethodIsAnswered400) {
  make();
  std::int32_t id = client.request(getRequest("/", "BREW"));
  std::int32_t lower = client.request(getRequest("/", "get"));  // methods are case-sensitive
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(id), 0u);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"400"});
  EXPECT_EQ(client.resps[lower].statuses, std::vector<std::string>{"400"});
}

TEST_F(H2Server, PlainConnectIsRefusedAsOverHttp1) {
  make();
  std::int32_t id = client.request({{":method", "CONNECT"}, {":authority", "db:5432"}});
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(id), 0u);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"405"});
}

TEST_F(H2Server, ExtendedConnectWhenWebsocketsAreOn) {
  settings.enable_connect_protocol = true;
  make();
  pump(client, *codec);
  EXPECT_EQ(client.peer_connect_protocol, 1u);
  std::string none;
  std::int32_t id = client.request({{":method", "CONNECT"},
                                    {":protocol", "websocket"},
                                    {":scheme", "https"},
                                    {":authority", "chat.example"},
                                    {":path", "/ws/socket.io/?EIO=4&transport=websocket"},
                                    {"sec-websocket-version", "13"}},
                                   &none);
  pump(client, *codec);
  ASSERT_EQ(rec.reqs.count(id), 1u);
  EXPECT_EQ(rec.reqs[id].head.method, kMethodConnect);
  EXPECT_EQ(rec.reqs[id].head.protocol, "websocket");
  EXPECT_TRUE(rec.reqs[id].head.upgrade);
  ASSERT_TRUE(codec->submitResponse(id, response(101, {{"Upgrade", "websocket"}, {"Connection", "Upgrade"}}), false));
  pump(client, *codec);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"200"});  // RFC 8441 §5
  EXPECT_TRUE(client.resps[id].headers.empty());                          // hop-by-hop fields dropped
}

TEST_F(H2Server, WebsocketsOffAdvertisesNoConnectProtocol) {
  make();
  pump(client, *codec);
  EXPECT_EQ(client.peer_connect_protocol, 0u);
}

TEST_F(H2Server, HeaderListAboveItsBoundIsAnswered431) {
  settings.max_header_list_bytes = 1024;
  make();
  Fields f = getRequest("/");
  f.emplace_back("x-big", std::string(2000, 'h'));
  std::int32_t id = client.request(f);
  std::int32_t ok = client.request(getRequest("/ok"));
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(id), 0u);
  EXPECT_EQ(client.resps[id].statuses, std::vector<std::string>{"431"});
  EXPECT_EQ(codec->counters().headers_too_large, 1u);
  EXPECT_EQ(rec.reqs.count(ok), 1u);  // the connection goes on
}

// A 4 KB field put in the dynamic table once, then referenced by one byte
// each: 16 KB of block decodes to 64 MB. Stored: nothing past the bound;
// the stream is refused (nghttp2 resets it before tether's 431) and the
// connection goes on.
TEST_F(H2Server, HpackBombIsBoundedByTheHeaderListSize) {
  make();
  Hpack hp;
  std::string first = hp.block({{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"},
                                {"x-bomb", std::string(4000, 'B')}});
  std::string in = clientStart() + frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, first);
  // :method GET, :scheme https, :path / (static), :authority a (literal, not indexed).
  std::string refs = "\x82\x87\x84\x01\x01" "a";
  refs.append(16000, static_cast<char>(0x80 | 62));  // indexed: the newest dynamic entry
  in += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3, refs);
  in += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 5, "\x82\x87\x84\x01\x01" "a");
  EXPECT_EQ(feedRaw(in), Error::kNone);
  EXPECT_EQ(rec.reqs.count(1), 1u);
  EXPECT_EQ(rec.reqs.count(3), 0u);
  EXPECT_EQ(rec.reqs.count(5), 1u);
  EXPECT_LE(rec.reqs[1].head.headers.bytes(), 2 * settings.max_header_list_bytes);
  EXPECT_EQ(codec->counters().headers_too_large + codec->counters().stream_protocol_errors, 1u);
  EXPECT_EQ(codec->error(), Error::kNone);
}

// CONTINUATION flood (2024): a header block that never ends. nghttp2 caps
// CONTINUATION frames per block (8) and ends the connection.
TEST_F(H2Server, ContinuationFloodEndsTheConnection) {
  make();
  Hpack hp;
  std::string in = clientStart() + frame(NGHTTP2_HEADERS, 0, 1, hp.block(getRequest("/")));
  for (int i = 0; i < 100; ++i) in += frame(NGHTTP2_CONTINUATION, 0, 1, hp.block({{"x-c", "1"}}));
  Error e = feedRaw(in);
  EXPECT_EQ(e, Error::kFlood);
  EXPECT_EQ(codec->counters().goaway_flood, 1u);
  std::string out = testing::drain(*codec);
  EXPECT_NE(out.find(std::string(1, static_cast<char>(NGHTTP2_GOAWAY))), std::string::npos);
  EXPECT_EQ(rec.reqs.size(), 0u);
  EXPECT_TRUE(codec->wantsClose());
}

// Rapid Reset (CVE-2023-44487): HEADERS then RST_STREAM, again and again.
TEST_F(H2Server, RapidResetEndsTheConnectionWithEnhanceYourCalm) {
  make();
  Hpack hp;
  std::string in = clientStart();
  for (std::uint32_t id = 1; id < 2 * 300; id += 2) {
    in += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, id, hp.block(getRequest("/")));
    in += frame(NGHTTP2_RST_STREAM, 0, id, testing::be32(NGHTTP2_CANCEL));
  }
  rec.on_head = [&](std::int32_t id) { codec->released(id); };  // even work released at once is counted
  EXPECT_EQ(feedRaw(in), Error::kRapidReset);
  EXPECT_EQ(codec->counters().goaway_rapid_reset, 1u);
  EXPECT_LE(rec.reqs.size(), settings.rapid_reset_min_streams);
  std::string out = testing::drain(*codec);
  // GOAWAY(last, ENHANCE_YOUR_CALM)
  EXPECT_NE(out.find(testing::be32(NGHTTP2_ENHANCE_YOUR_CALM)), std::string::npos);
}

// A reset stream keeps its concurrency slot until its upstream work is
// released: new streams are refused meanwhile.
TEST_F(H2Server, ResetStreamHoldsItsSlotUntilReleased) {
  settings.max_concurrent_streams = 4;
  make();
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(client.request(getRequest("/")));
  pump(client, *codec);
  for (std::int32_t id : ids) nghttp2_submit_rst_stream(client.session(), NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  pump(client, *codec);
  EXPECT_EQ(codec->streamCount(), 4u);
  std::int32_t refused = client.request(getRequest("/more"));
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(refused), 0u);
  EXPECT_EQ(client.resps[refused].closed, NGHTTP2_REFUSED_STREAM);
  EXPECT_EQ(codec->counters().streams_refused, 1u);
  codec->released(ids[0]);
  std::int32_t admitted = client.request(getRequest("/more"));
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(admitted), 1u);
}

// MadeYouReset (CVE-2025-8671): frames that make the server reset streams
// (here DATA beyond the request's Content-Length: a stream error. nghttp2
// 1.52 makes a WINDOW_UPDATE of 0 or DATA after END_STREAM connection errors).
TEST_F(H2Server, MadeYouResetIsCountedAsGlitchesAndEndsTheConnection) {
  settings.glitch_budget = 50;
  make();
  Hpack hp;
  std::string in = clientStart();
  for (std::uint32_t id = 1; id < 2 * 80; id += 2) {
    Fields f = getRequest("/", "POST");
    f.emplace_back("content-length", "1");
    in += frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, hp.block(f));
    in += frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, id, "xx");
  }
  rec.on_head = [&](std::int32_t id) { codec->released(id); };
  EXPECT_EQ(feedRaw(in), Error::kGlitches);
  EXPECT_EQ(codec->counters().goaway_glitches, 1u);
  EXPECT_GE(codec->counters().stream_protocol_errors, 50u);
}

TEST_F(H2Server, PingFloodIsBoundedByTheGlitchBudget) {
  settings.glitch_budget = 500;
  make();
  std::string in = clientStart();
  for (int i = 0; i < 1200; ++i) in += frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  EXPECT_EQ(feedRaw(in), Error::kGlitches);
  EXPECT_LE(codec->counters().glitches, settings.glitch_budget + 1);
}

TEST_F(H2Server, UnreadAcknowledgementsAreBoundedByNghttp2) {
  settings.glitch_budget = 100000;
  make();
  std::string in = clientStart();
  for (int i = 0; i < 1100; ++i) in += frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  EXPECT_EQ(feedRaw(in), Error::kFlood);  // max_outbound_ack: 1000 queued PING ACKs
}

TEST_F(H2Server, OutputIsStagedUpToItsBound) {
  settings.output_bound = 1000;
  settings.glitch_budget = 100000;
  make();
  std::string in = clientStart();
  for (int i = 0; i < 500; ++i) in += frame(NGHTTP2_PING, 0, 0, std::string(8, 'p'));
  EXPECT_EQ(feedRaw(in), Error::kNone);
  std::string_view out = codec->output();
  EXPECT_GE(out.size(), 1000u);
  EXPECT_LT(out.size(), 1000u + 17 * 2 + 64);  // at most one frame (or one nghttp2 chunk) past it
  EXPECT_TRUE(codec->outputOverBound());
  codec->wrote(out.size());
  EXPECT_FALSE(codec->outputOverBound());
}

TEST_F(H2Server, SettingsAndEmptyDataFloodsAreGlitches) {
  settings.glitch_budget = 20;
  {
    make();
    std::string in = clientStart();
    for (int i = 0; i < 40; ++i) in += frame(NGHTTP2_SETTINGS, 0, 0, "");
    EXPECT_EQ(feedRaw(in), Error::kGlitches);
  }
  {
    make();
    Hpack hp;
    std::string in = clientStart() + frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, hp.block(getRequest("/", "POST")));
    for (int i = 0; i < 40; ++i) in += frame(NGHTTP2_DATA, 0, 1, "");
    EXPECT_EQ(feedRaw(in), Error::kGlitches);
  }
  {
    make();
    std::string in = clientStart();
    for (int i = 0; i < 40; ++i) in += frame(NGHTTP2_WINDOW_UPDATE, 0, 99, testing::be32(1));
    EXPECT_NE(feedRaw(in), Error::kNone);  // a WINDOW_UPDATE on an idle stream: nghttp2's connection error
  }
}

TEST_F(H2Server, CompletedStreamsGiveGlitchesBack) {
  settings.glitch_budget = 10;
  make();
  for (int round = 0; round < 30; ++round) {
    nghttp2_submit_ping(client.session(), NGHTTP2_FLAG_NONE, nullptr);
    std::int32_t id = client.request(getRequest("/"));
    pump(client, *codec);
    answer(id, 200, "x");
    pump(client, *codec);
    codec->released(id);
  }
  EXPECT_EQ(codec->error(), Error::kNone);
  EXPECT_EQ(codec->counters().glitches, 30u);
}

TEST_F(H2Server, TooManyStreamsOverTheConnectionsLifeEndGracefully) {
  settings.max_streams_per_connection = 5;
  make();
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(client.request(getRequest("/")));
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.size(), 5u);
  EXPECT_EQ(client.goaway_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(client.goaway_last, ids[4]);
  EXPECT_TRUE(codec->goingAway());
  EXPECT_FALSE(codec->wantsClose());  // five streams still to answer
  for (int i = 0; i < 5; ++i) {
    answer(ids[i], 200, "");
    pump(client, *codec);
    codec->released(ids[i]);
  }
  EXPECT_TRUE(codec->wantsClose());
  EXPECT_EQ(codec->error(), Error::kNone);
}

TEST_F(H2Server, GracefulShutdownIsTwoGoaways) {
  make();
  std::int32_t id = client.request(getRequest("/slow"));
  pump(client, *codec);
  codec->shutdownNotice();
  std::string notice = testing::drain(*codec);
  // A request the client sent before the notice reached it.
  std::int32_t late = client.request(getRequest("/late"));
  std::string up = client.take();
  EXPECT_EQ(feedRaw(up), Error::kNone);
  client.give(notice);
  EXPECT_TRUE(codec->goingAway());
  EXPECT_EQ(client.goaway_last, 0x7fffffff);
  pump(client, *codec);
  EXPECT_EQ(rec.reqs.count(late), 1u);
  codec->goAway();
  pump(client, *codec);
  EXPECT_EQ(client.goaways, 2);
  EXPECT_EQ(client.goaway_last, late);
  EXPECT_FALSE(codec->wantsClose());
  for (std::int32_t s : {id, late}) {
    answer(s, 200, "done");
    pump(client, *codec);
    codec->released(s);
  }
  EXPECT_EQ(client.resps[id].body, "done");
  EXPECT_TRUE(codec->wantsClose());
}

TEST_F(H2Server, GarbageInsteadOfThePrefaceIsAProtocolError) {
  make();
  EXPECT_EQ(feedRaw("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Error::kProtocol);
  EXPECT_TRUE(codec->wantsClose() || !codec->output().empty());
}

TEST_F(H2Server, DataOnAStreamNobodyTakesKeepsTheConnectionWindowOpen) {
  settings.connection_window = 65535;
  settings.max_header_list_bytes = 256;
  make();
  std::string body(60000, 'q');
  Fields f = getRequest("/");
  f.emplace_back("x-big", std::string(400, 'h'));  // answered 431: its body goes nowhere
  std::int32_t big = client.request(f, &body);
  pump(client, *codec);
  EXPECT_EQ(client.resps[big].statuses, std::vector<std::string>{"431"});
  std::int32_t id = client.request(getRequest("/next", "POST"), &body);
  pump(client, *codec);
  EXPECT_GT(rec.reqs[id].body.size(), 0u);
}

}  // namespace
}  // namespace tether::http
