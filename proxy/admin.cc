#include "proxy/admin.h"

#include <netinet/in.h>

#include <exception>

#include "proxy/http/h1_decoder.h"
#include "proxy/http/h1_encoder.h"
#include "proxy/http/status.h"
#include "proxy/log.h"
#include "proxy/net.h"

namespace tether::proxy {
namespace {

// The bounds admin.h promises: the decoder answers 431 above the first and
// 413 above the second.
constexpr http::H1Decoder::Limits kLimits{.max_head_bytes = kAdminMaxHeadBytes,
                                          .max_trailer_bytes = kAdminMaxHeadBytes,
                                          .max_body_bytes = kAdminMaxBodyBytes,
                                          .max_chunk_line = 4096};

// The handler's "Name: value\r\n" lines as fields (our own text, not the
// network's: a line without a colon is skipped).
void addExtraHeaders(std::string_view text, http::HeaderList* out) {
  while (!text.empty()) {
    std::size_t eol = text.find("\r\n");
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    out->add(line.substr(0, colon), value);
  }
}

}  // namespace

struct AdminServer::Conn : ListHook<> {
  AdminServer* server;
  uv_tcp_t tcp;
  uv_timer_t timer;
  int open_handles = 0;  // tcp and timer; the Conn is freed after both close callbacks
  http::H1Decoder decoder{http::H1Decoder::Type::kRequest, kLimits};
  AdminRequest req;
  bool in_request = false;  // a byte of the current request has arrived
  bool closing = false;
  bool last_answer = false;  // an answer with Connection: close is queued: read no more
  char buf[16384];

  Conn() {
    decoder.setBodySink(
        [](void* ctx, const char* p, std::size_t n) { static_cast<AdminRequest*>(ctx)->body.append(p, n); },
        &req);
  }

  // Closes the connection after `ms` (none when ms <= 0), replacing any
  // earlier deadline.
  void armTimer(std::int64_t ms) {
    if (closing) return;
    uv_timer_stop(&timer);
    if (ms <= 0) return;
    uv_timer_start(&timer, [](uv_timer_t* t) { static_cast<Conn*>(t->data)->close(); },
                   static_cast<std::uint64_t>(ms), 0);
  }

  void close() {
    if (closing) return;
    closing = true;
    server->conns_.remove(this);
    uv_timer_stop(&timer);
    auto closed = [](uv_handle_t* h) {
      Conn* c = static_cast<Conn*>(h->data);
      if (--c->open_handles == 0) delete c;
    };
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), closed);
  }

  // Writes `r` (its body left out for a HEAD request); with keep_alive
  // false, reads no more and closes once it is written.
  void respond(const AdminResponse& r, bool keep_alive, bool head_request) {
    if (!keep_alive) {
      last_answer = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
    }
    // Until the answer is written (a client that does not read it) and then
    // between requests.
    armTimer(server->limits_.idle_ms);
    http::ResponseHead h;
    // The encoder writes three digits; a handler's status outside them is our bug.
    h.status = static_cast<std::uint16_t>(r.status >= 100 && r.status <= 999 ? r.status : 500);
    h.reason.assign(http::reasonPhrase(h.status));
    h.headers.add("Content-Type", r.content_type);
    h.headers.add("Content-Length", std::to_string(r.body.size()));
    h.headers.add("Cache-Control", "no-store");
    addExtraHeaders(r.extra_headers, &h.headers);
    if (!keep_alive) h.headers.add("Connection", "close");
    http::ExtraFields extra;
    std::string* out = new std::string;
    out->resize(http::responseHeadSize(h, extra));
    out->resize(http::writeResponseHead(h, extra, out->data()));
    if (!head_request) *out += r.body;
    struct W {
      uv_write_t req;
      std::string* data;
      Conn* conn;
      bool close_after;
    };
    W* w = new W{{}, out, this, !keep_alive};
    uv_buf_t b = uv_buf_init(out->data(), static_cast<unsigned>(out->size()));
    int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp), &b, 1, [](uv_write_t* wr, int status) {
      W* w = reinterpret_cast<W*>(wr);
      if ((status != 0 || w->close_after) && status != UV_ECANCELED) w->conn->close();
      delete w->data;
      delete w;
    });
    if (rc != 0) {
      delete out;
      delete w;
      close();
    }
  }

  // Runs the handler; nothing it throws gets past here.
  void handle(AdminResponse& r) {
    try {
      server->handler_(req, r);
      return;
    } catch (const std::exception& e) {
      log::error("admin request failed",
                 {{"method", req.method}, {"path", req.path}, {"error", e.what()}});
    } catch (...) {
      log::error("admin request failed",
                 {{"method", req.method}, {"path", req.path}, {"error", "unknown"}});
    }
    r = AdminResponse{};
    r.status = 500;
    r.content_type = "application/json";
    r.body = "{\"error\":\"internal error\"}\n";
  }

  // A request the decoder refused: its status (400, 405, 413, 431, 505) and
  // reason, and the connection ends, since nothing after it can be framed.
  void refuse() {
    const int status = decoder.errorStatus();
    log::debug("admin request refused", {{"status", status},
                                         {"reason", decoder.errorReason()},
                                         {"error", decoder.errorName()}});
    AdminResponse r;
    r.status = status;
    r.body.assign(decoder.errorReason());
    r.body += '\n';
    respond(r, false, false);
  }

  // The request is whole: the handler answers it.
  void answer() {
    const http::RequestHead& h = decoder.request();
    req.method.assign(http::methodName(h.method));
    std::size_t q = h.target.find('?');
    req.path.assign(h.target, 0, q);
    if (q == std::string::npos) {
      req.query.clear();
    } else {
      req.query.assign(h.target, q + 1);
    }
    // The last one, as before the codec was shared.
    req.authorization.clear();
    for (std::size_t i = 0; i < h.headers.size(); ++i)
      if (h.headers.kind(i) == http::HeaderKind::kAuthorization) req.authorization.assign(h.headers.value(i));
    // An upgrade is not served here, and what follows it is not HTTP.
    const bool keep = h.keep_alive && !h.upgrade;
    AdminResponse r;
    handle(r);
    respond(r, keep, h.method == http::kMethodHead);
  }

  void onRead(const char* p, std::size_t left) {
    bool after_head = false;
    for (;;) {
      if (closing || last_answer) return;
      // After a head, once more even with nothing left: that completes a
      // request without a body.
      if (left == 0 && !after_head) return;
      after_head = false;
      if (!in_request) {
        // The first byte of a request: all of it within request_header.
        in_request = true;
        armTimer(server->limits_.request_header_ms);
      }
      std::size_t used = 0;
      http::H1Decoder::Event ev = decoder.execute(p, left, &used);
      p += used;
      left -= used;
      switch (ev) {
        case http::H1Decoder::Event::kNeedMore:
          return;
        case http::H1Decoder::Event::kError:
          refuse();
          return;
        case http::H1Decoder::Event::kHead:
          after_head = true;
          break;
        case http::H1Decoder::Event::kComplete:
          answer();
          // What is left in this read belongs to the next request.
          req.body.clear();
          decoder.nextMessage();
          in_request = false;
          break;
      }
    }
  }
};

AdminServer::AdminServer(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}
AdminServer::~AdminServer() = default;

std::string AdminServer::listen(const std::string& host, int port, std::string* bound, int fd) {
  if (fd >= 0) {
    uv_tcp_init(loop_, &tcp_);
    tcp_.data = this;
    open_ = true;
    int rc = uv_tcp_open(&tcp_, fd);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), 128, onConnection);
    if (rc != 0) return "admin.address: " + host + ":" + std::to_string(port) + ": inherited socket: " + uv_strerror(rc);
    *bound = localAddress(&tcp_);
    return {};
  }
  sockaddr_storage ss{};
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
    if (host == "localhost") {
      uv_ip4_addr("127.0.0.1", port, reinterpret_cast<sockaddr_in*>(&ss));
    } else {
      return "admin.address: " + host + " is not an IP address";
    }
  }
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  open_ = true;
  int rc = uv_tcp_bind(&tcp_, reinterpret_cast<sockaddr*>(&ss), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&tcp_), 128, onConnection);
  if (rc != 0) return "admin.address: " + host + ":" + std::to_string(port) + ": " + uv_strerror(rc);
  *bound = localAddress(&tcp_);
  return {};
}

int AdminServer::listeningFd() const {
  uv_os_fd_t fd = -1;
  if (!open_ || uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return -1;
  return fd;
}

void AdminServer::stopListening() {
  if (open_) {
    open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), nullptr);
  }
}

void AdminServer::close() {
  stopListening();
  // Conn::close() unlinks the connection it closes, and only that one.
  conns_.forEach([](Conn* c) { c->close(); });
}

void AdminServer::onConnection(uv_stream_t* server, int status) {
  if (status != 0) return;
  AdminServer* self = static_cast<AdminServer*>(server->data);
  Conn* c = new Conn;
  c->server = self;
  uv_tcp_init(self->loop_, &c->tcp);
  uv_timer_init(self->loop_, &c->timer);
  c->open_handles = 2;
  c->tcp.data = c;
  c->timer.data = c;
  // Over the cap, the connection is still accepted (so that the kernel's
  // queue empties) and closed at once.
  const bool over_cap = self->conns_.size() >= self->limits_.max_connections;
  self->conns_.pushBack(c);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0 || over_cap || !self->open_) {
    if (over_cap) log::debug("admin connection refused: admin.max_connections reached", {});
    c->close();
    return;
  }
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&c->tcp, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    if (peer.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&peer);
      c->req.loopback_peer = (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    } else if (peer.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&peer);
      c->req.loopback_peer = IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
  }
  // Before the first request, the stricter request_header applies.
  c->armTimer(self->limits_.request_header_ms);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->tcp),
                [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
                  Conn* c = static_cast<Conn*>(h->data);
                  *b = uv_buf_init(c->buf, sizeof c->buf);
                },
                [](uv_stream_t* s, ssize_t nread, const uv_buf_t* b) {
                  Conn* c = static_cast<Conn*>(s->data);
                  if (nread < 0) {
                    c->close();
                    return;
                  }
                  if (nread == 0 || c->closing) return;
                  c->onRead(b->base, static_cast<std::size_t>(nread));
                });
}

}  // namespace tether::proxy
