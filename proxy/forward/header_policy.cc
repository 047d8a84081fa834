#include "proxy/forward/header_policy.h"

#include <cstdio>

namespace tether::forward {

using http::HeaderKind;
using http::HeaderList;

void dropConnectionOptions(HeaderList& h, const http::ConnectionTokens& tokens) {
  if (tokens.count == 0) return;
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!http::framingOrRouting(h.kind(i)) && tokens.names(h.name(i))) h.drop(i);
}

void filterTrailers(HeaderList& t) {
  for (std::size_t i = 0; i < t.size(); ++i) {
    std::string_view n = t.name(i);
    bool forwarded = n.size() >= 12 && http::iequals(n.substr(0, 12), "x-forwarded-");
    if (http::forbiddenInTrailer(t.kind(i)) || forwarded || http::iequals(n, "forwarded")) t.drop(i);
  }
}

bool applyUnderscorePolicy(HeaderList& h, conf::UnderscoreHeaders policy) {
  if (policy == conf::UnderscoreHeaders::kAllow) return true;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (!h.underscore(i)) continue;
    if (policy == conf::UnderscoreHeaders::kReject) return false;
    h.drop(i);
  }
  return true;
}

void upstreamRequestFields(http::RequestHead& r, const UpstreamRequest& in, http::ExtraFields& extra, std::string& scratch) {
  HeaderList& h = r.headers;
  http::ConnectionTokens connection;
  std::string_view xfp, xfh, upgrade_value;
  bool xff = false;
  bool te = false;
  for (std::size_t i = 0; i < h.size(); ++i) {
    HeaderKind k = h.kind(i);
    switch (k) {
      case HeaderKind::kTransferEncoding: te = true; break;
      case HeaderKind::kConnection: connection.add(h.value(i)); break;
      case HeaderKind::kUpgrade: upgrade_value = h.value(i); break;
      case HeaderKind::kXRequestId:
        if (!in.request_id_from_client) h.drop(i);
        break;
      case HeaderKind::kXForwardedFor: xff = true; break;
      case HeaderKind::kXForwardedProto: if (xfp.empty()) xfp = h.value(i); break;
      case HeaderKind::kXForwardedHost: if (xfh.empty()) xfh = h.value(i); break;
      default: break;
    }
    if (http::isHopByHop(k) || k == HeaderKind::kXForwardedFor || k == HeaderKind::kXForwardedProto ||
        k == HeaderKind::kXForwardedHost) {
      h.drop(i);
    }
  }
  dropConnectionOptions(h, connection);
  if (!in.trusted_peer) xff = false, xfp = {}, xfh = {};

  extra.clear();
  // X-Forwarded-For: the client's own lines only from a trusted peer, in
  // order, then the peer.
  scratch.clear();
  if (xff) {
    for (std::size_t i = 0; i < h.size(); ++i) {
      if (h.kind(i) != HeaderKind::kXForwardedFor) continue;
      scratch.append(h.value(i));
      scratch.append(", ");
    }
  }
  scratch.append(in.client_ip);
  extra.add("X-Forwarded-For", scratch);
  extra.add("X-Forwarded-Proto", !xfp.empty() && xfp.size() < 16 ? xfp : (in.tls ? "https" : "http"));
  // The client's Host, dropped or not (a second attempt sees the first's marks).
  long host_at = -1;
  for (std::size_t i = 0; i < h.size() && host_at < 0; ++i)
    if (h.kind(i) == HeaderKind::kHost) host_at = static_cast<long>(i);
  std::string_view host = r.authority;
  if (host_at < 0) {
    // HTTP/1.0 without Host: an HTTP/1.1 request must carry one (RFC 9112
    // §3.2): the backend's own, as nginx's $proxy_host.
    extra.add("Host", in.backend_host);
  } else if (r.absolute_form) {
    h.drop(static_cast<std::size_t>(host_at));
    extra.add("Host", r.authority);
  }
  if (!host.empty() || !xfh.empty()) {
    extra.add("X-Forwarded-Host", !xfh.empty() && xfh.size() <= host.size() + 64 ? xfh : host);
  }
  if (!in.request_id_from_client) extra.add("X-Request-Id", in.request_id);
  if (r.framing == http::Framing::kLength) {
    // The length as tether read it, in one spelling: "0040" is 40 here and
    // 32 to a backend that reads octal.
    char* digits = extra.digits;
    int n = std::snprintf(digits, sizeof extra.digits, "%llu", static_cast<unsigned long long>(r.content_length));
    std::string_view canonical(digits, static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < h.size(); ++i) {
      if (h.kind(i) != HeaderKind::kContentLength || h.value(i) == canonical) continue;
      h.drop(i);
      extra.add("Content-Length", canonical);
    }
  }
  // A body of unknown length (HTTP/2 without content-length) goes chunked.
  if (r.framing == http::Framing::kChunked && !te) extra.add("Transfer-Encoding", "chunked");
  if (r.upgrade && !upgrade_value.empty()) {
    extra.add("Connection", "upgrade");
    extra.add("Upgrade", upgrade_value);
  }
}

bool downstreamResponseFields(http::ResponseHead& r, const DownstreamResponse& in, http::ExtraFields& extra) {
  HeaderList& h = r.headers;
  bool informational = r.informational();
  bool switching = r.status == 101;
  http::ConnectionTokens connection;
  bool has_rid = false;
  bool sse = false;
  for (std::size_t i = 0; i < h.size(); ++i) {
    HeaderKind k = h.kind(i);
    if (k == HeaderKind::kConnection) {
      connection.add(h.value(i));
    } else if (k == HeaderKind::kXRequestId) {
      has_rid = true;
    } else if (k == HeaderKind::kContentType && !informational) {
      std::string_view v = h.value(i);
      if (v.size() >= 17 && http::iequals(v.substr(0, 17), "text/event-stream")) sse = true;
    }
    if (switching && (k == HeaderKind::kUpgrade || k == HeaderKind::kConnection)) continue;
    if (http::isHopByHop(k) || (in.dechunk && k == HeaderKind::kTransferEncoding)) h.drop(i);
  }
  if (!switching) dropConnectionOptions(h, connection);
  extra.clear();
  if (informational) return false;
  if (!in.set_cookie.empty()) extra.add("Set-Cookie", in.set_cookie);
  if (!has_rid) extra.add("X-Request-Id", in.request_id);
  if (!switching) {
    if (in.close) {
      extra.add("Connection", "close");
    } else if (in.http10_client) {
      extra.add("Connection", "keep-alive");
    }
  }
  return sse;
}

}  // namespace tether::forward
