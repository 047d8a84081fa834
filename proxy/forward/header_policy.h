// Header policy on heads: what the backend sees of a request and what the
// client sees of a response. Pure functions over http:: heads: no bytes, no
// sockets, no clock. The codec has already refused what cannot be read one
// way only; this decides what is forwarded.
//
// A policy never edits a field's bytes. It marks fields dropped in the head
// and writes the fields tether adds into `extra`, so the same head can be
// written again for another attempt (a retry to another backend).
#pragma once

#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/http/head.h"

namespace tether::forward {

// A Connection header's options are hop-by-hop (RFC 9110 §7.6.1): dropped,
// except framing and routing fields, which keep their meaning.
void dropConnectionOptions(http::HeaderList& h, const http::ConnectionTokens& tokens);

// Trailer fields tether forwards: none that may not be a trailer.
void filterTrailers(http::HeaderList& trailers);

// limits.headers_with_underscores: drops such fields (kDrop), or says the
// request is refused (kReject: returns false). kAllow keeps them.
bool applyUnderscorePolicy(http::HeaderList& h, conf::UnderscoreHeaders policy);

struct UpstreamRequest {
  std::string_view client_ip;    // the peer's address, as text
  bool trusted_peer = false;     // the peer is in trusted_proxies: its X-Forwarded-* are kept
  bool tls = false;              // the client came over TLS
  std::string_view request_id;   // X-Request-Id to add when the client sent none usable
  bool request_id_from_client = false;
  std::string_view backend_host; // host[:port] of the backend, for an HTTP/1.0 request without Host
};

// The request head as the backend sees it: hop-by-hop fields and those
// Connection names dropped; X-Forwarded-For/-Proto/-Host set (the client's
// own kept and appended to only from a trusted peer); X-Request-Id kept or
// added; Host from an absolute-form target's authority, or the backend's
// for an HTTP/1.0 request without one; Connection: upgrade and Upgrade kept
// for an upgrade; Transfer-Encoding: chunked for a body of unknown length
// that came without one (HTTP/2). `scratch` holds built values until `extra` is written.
void upstreamRequestFields(http::RequestHead& r, const UpstreamRequest& in, http::ExtraFields& extra,
                           std::string& scratch);

struct DownstreamResponse {
  bool http10_client = false;  // the client spoke HTTP/1.0
  bool dechunk = false;        // the body is sent de-chunked (HTTP/1.0 client)
  bool close = false;          // the client connection closes after this response
  std::string_view set_cookie;  // an inserted affinity cookie, or empty
  std::string_view request_id;  // added when the backend set none
};

// The response head as the client sees it: hop-by-hop fields and those
// Connection names dropped (a 101 keeps Connection and Upgrade), X-Request-Id
// added if the backend set none, Connection as tether decides. Returns
// whether the response is an event stream (text/event-stream).
bool downstreamResponseFields(http::ResponseHead& r, const DownstreamResponse& in, http::ExtraFields& extra);

}  // namespace tether::forward
