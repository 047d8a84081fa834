// Header policy on heads decoded from byte strings: what the backend and the
// client see, with no socket in between.
#include "proxy/forward/header_policy.h"

#include <gtest/gtest.h>

#include <string>

#include "proxy/http/h1_decoder.h"
#include "proxy/http/h1_encoder.h"

namespace tether::forward {
namespace {

using http::H1Decoder;

// Decodes one request head and writes it as the backend would see it.
std::string upstream(const std::string& in, UpstreamRequest u = {}) {
  H1Decoder d(H1Decoder::Type::kRequest, {});
  std::size_t used = 0;
  EXPECT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead) << in;
  if (u.client_ip.empty()) u.client_ip = "192.0.2.7";
  if (u.request_id.empty()) u.request_id = "rid";
  if (u.backend_host.empty()) u.backend_host = "10.0.0.1:8080";
  http::ExtraFields extra;
  std::string scratch;
  upstreamRequestFields(d.request(), u, extra, scratch);
  std::string out(http::requestHeadSize(d.request(), extra), '\0');
  out.resize(http::writeRequestHead(d.request(), extra, out.data()));
  // Written twice (a retry), the same bytes.
  upstreamRequestFields(d.request(), u, extra, scratch);
  std::string again(http::requestHeadSize(d.request(), extra), '\0');
  again.resize(http::writeRequestHead(d.request(), extra, again.data()));
  EXPECT_EQ(out, again);
  return out;
}

std::string downstream(const std::string& in, DownstreamResponse o = {}) {
  H1Decoder d(H1Decoder::Type::kResponse, {});
  d.expectResponseTo(http::kMethodGet, in.find(" 101 ") != std::string::npos);
  std::size_t used = 0;
  EXPECT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead) << in;
  if (o.request_id.empty()) o.request_id = "rid";
  http::ExtraFields extra;
  downstreamResponseFields(d.response(), o, extra);
  std::string out(http::responseHeadSize(d.response(), extra), '\0');
  out.resize(http::writeResponseHead(d.response(), extra, out.data()));
  return out;
}

TEST(UpstreamRequestFields, HopByHopAndConnectionOptionsAreDropped) {
  std::string out = upstream("GET /a HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
                             "X-Secret: s\r\nTE: trailers\r\nProxy-Connection: x\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(out,
            "GET /a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: h\r\nX-Request-Id: rid\r\n\r\n");
}

TEST(UpstreamRequestFields, ForwardedFieldsOfUntrustedPeersAreReplaced) {
  std::string out = upstream("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n"
                             "X-Forwarded-Host: evil\r\n\r\n");
  EXPECT_EQ(out.find("1.2.3.4"), std::string::npos);
  EXPECT_EQ(out.find("evil"), std::string::npos);
  EXPECT_NE(out.find("X-Forwarded-Proto: http\r\n"), std::string::npos);
}

TEST(UpstreamRequestFields, ForwardedFieldsOfTrustedPeersAreAppendedTo) {
  UpstreamRequest u;
  u.trusted_peer = true;
  std::string out = upstream("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n"
                             "X-Forwarded-Proto: https\r\n\r\n", u);
  EXPECT_NE(out.find("X-Forwarded-For: 1.2.3.4, 5.6.7.8, 192.0.2.7\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Forwarded-Proto: https\r\n"), std::string::npos) << out;
}

TEST(UpstreamRequestFields, Http10WithoutHostGetsTheBackendsHost) {
  std::string out = upstream("GET / HTTP/1.0\r\n\r\n");
  EXPECT_EQ(out.rfind("GET / HTTP/1.1\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Host: 10.0.0.1:8080\r\n"), std::string::npos) << out;
}

TEST(UpstreamRequestFields, AbsoluteFormIsSentInOriginFormWithItsAuthority) {
  std::string out = upstream("GET http://h.example/x?y HTTP/1.1\r\nHost: H.example\r\n\r\n");
  EXPECT_EQ(out.rfind("GET /x?y HTTP/1.1\r\n", 0), 0u) << out;
  EXPECT_NE(out.find("Host: h.example\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("H.example"), std::string::npos) << out;
}

TEST(UpstreamRequestFields, UpgradeKeepsItsFields) {
  std::string out = upstream("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_NE(out.find("Connection: upgrade\r\nUpgrade: websocket\r\n"), std::string::npos) << out;
}

TEST(UpstreamRequestFields, ClientRequestIdIsKept) {
  UpstreamRequest u;
  u.request_id = "abc";
  u.request_id_from_client = true;
  std::string out = upstream("GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc\r\n\r\n", u);
  EXPECT_NE(out.find("X-Request-Id: abc\r\n"), std::string::npos);
  EXPECT_EQ(out.find("X-Request-Id: abc\r\nX-Request-Id"), std::string::npos);
}

TEST(UpstreamRequestFields, ContentLengthIsWrittenAsReadInOneSpelling) {
  std::string out = upstream("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0040\r\n\r\n");
  EXPECT_EQ(out.find("0040"), std::string::npos) << out;
  EXPECT_NE(out.find("Content-Length: 40\r\n"), std::string::npos) << out;
  std::string plain = upstream("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\n\r\n");
  EXPECT_EQ(plain.find("Content-Length: 40\r\n"), plain.rfind("Content-Length: 40\r\n")) << plain;
}

TEST(UnderscorePolicy, DropRejectAllow) {
  std::string in = "GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 1.1.1.1\r\n\r\n";
  for (auto p : {conf::UnderscoreHeaders::kDrop, conf::UnderscoreHeaders::kReject, conf::UnderscoreHeaders::kAllow}) {
    H1Decoder d(H1Decoder::Type::kRequest, {});
    std::size_t used = 0;
    ASSERT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead);
    bool ok = applyUnderscorePolicy(d.request().headers, p);
    EXPECT_EQ(ok, p != conf::UnderscoreHeaders::kReject);
    EXPECT_EQ(d.request().headers.dropped(1), p == conf::UnderscoreHeaders::kDrop);
  }
}

TEST(DownstreamResponseFields, FramingFieldsNamedByConnectionAreKept) {
  std::string out = downstream("HTTP/1.1 200 OK\r\nConnection: Content-Length, Transfer-Encoding, X-Hop\r\n"
                               "X-Hop: 1\r\nContent-Length: 2\r\n\r\n");
  EXPECT_EQ(out, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: rid\r\n\r\n");
}

TEST(DownstreamResponseFields, CloseAndKeepAliveAsDecided) {
  DownstreamResponse o;
  o.close = true;
  EXPECT_NE(downstream("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", o).find("Connection: close\r\n"), std::string::npos);
  DownstreamResponse h10;
  h10.http10_client = true;
  EXPECT_NE(downstream("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", h10).find("Connection: keep-alive\r\n"), std::string::npos);
}

TEST(DownstreamResponseFields, DechunkDropsTransferEncoding) {
  DownstreamResponse o;
  o.dechunk = true;
  o.close = true;
  std::string out = downstream("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n", o);
  EXPECT_EQ(out.find("Transfer-Encoding"), std::string::npos) << out;
  EXPECT_EQ(out.find("Trailer"), std::string::npos) << out;
}

TEST(DownstreamResponseFields, SwitchingProtocolsKeepsUpgrade) {
  std::string out = downstream("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_NE(out.find("Connection: Upgrade\r\nUpgrade: websocket\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("Connection: close"), std::string::npos) << out;
}

TEST(DownstreamResponseFields, EventStreamIsReported) {
  H1Decoder d(H1Decoder::Type::kResponse, {});
  std::string in = "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::size_t used = 0;
  ASSERT_EQ(d.execute(in.data(), in.size(), &used), H1Decoder::Event::kHead);
  http::ExtraFields extra;
  EXPECT_TRUE(downstreamResponseFields(d.response(), {}, extra));
}

TEST(FilterTrailers, OnlyFieldsAllowedInTrailersStay) {
  http::HeaderList t;
  t.add("Content-Length", "40");
  t.add("X-Checksum", "abc");
  t.add("Host", "evil");
  t.add("Set-Cookie", "a=b");
  t.add("Transfer-Encoding", "chunked");
  filterTrailers(t);
  EXPECT_TRUE(t.dropped(0));
  EXPECT_FALSE(t.dropped(1));
  EXPECT_TRUE(t.dropped(2));
  EXPECT_TRUE(t.dropped(3));
  EXPECT_TRUE(t.dropped(4));
}

}  // namespace
}  // namespace tether::forward
