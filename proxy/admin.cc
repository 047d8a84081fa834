#include "proxy/admin.h"

#include <llhttp.h>
#include <netinet/in.h>

#include <cstring>
#include <exception>

#include "proxy/log.h"
#include "proxy/net.h"

namespace tether::proxy {
namespace {

constexpr std::size_t kMaxRequestBytes = 128 * 1024;

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

}  // namespace

struct AdminServer::Conn : ListHook<> {
  AdminServer* server;
  uv_tcp_t tcp;
  uv_timer_t timer;
  int open_handles = 0;  // tcp and timer; the Conn is freed after both close callbacks
  llhttp_t parser;
  llhttp_settings_t settings;
  AdminRequest req;
  std::string url;
  std::string field;
  std::string value;
  bool in_value = false;
  bool in_request = false;  // a byte of the current request has arrived
  bool complete = false;
  bool closing = false;
  bool last_answer = false;  // an answer with Connection: close is queued: read no more
  std::size_t received = 0;
  char buf[16384];

  void flushHeader() {
    if (!field.empty()) {
      if (strcasecmp(field.c_str(), "Authorization") == 0) req.authorization = value;
    }
    field.clear();
    value.clear();
    in_value = false;
  }

  void reset() {
    bool loopback = req.loopback_peer;
    req = AdminRequest{};
    req.loopback_peer = loopback;
    url.clear();
    field.clear();
    value.clear();
    in_value = false;
    in_request = false;
    complete = false;
    received = 0;
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

  void respond(const AdminResponse& r, bool keep_alive) {
    if (!keep_alive) {
      last_answer = true;
      uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
    }
    // Until the answer is written (a client that does not read it) and then
    // between requests.
    armTimer(server->limits_.idle_ms);
    std::string* out = new std::string;
    out->reserve(r.body.size() + 256);
    *out += "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    *out += "Content-Type: " + r.content_type + "\r\n";
    *out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    *out += "Cache-Control: no-store\r\n";
    *out += r.extra_headers;
    if (!keep_alive) *out += "Connection: close\r\n";
    *out += "\r\n";
    if (req.method != "HEAD") *out += r.body;
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

  void onRead(const char* p, std::size_t left) {
    received += left;
    while (left > 0 && !closing && !last_answer) {
      if (!in_request) {
        // The first byte of a request: all of it within request_header.
        in_request = true;
        armTimer(server->limits_.request_header_ms);
      }
      llhttp_errno_t err = llhttp_execute(&parser, p, left);
      std::size_t used = left;
      if (err == HPE_PAUSED) {
        used = static_cast<std::size_t>(llhttp_get_error_pos(&parser) - p);
        llhttp_resume(&parser);
      } else if (err != HPE_OK) {
        AdminResponse r;
        r.status = 400;
        r.body = "bad request\n";
        respond(r, false);
        return;
      }
      p += used;
      left -= used;
      if (complete) {
        std::size_t q = url.find('?');
        req.path = url.substr(0, q);
        req.query = q == std::string::npos ? "" : url.substr(q + 1);
        req.method = llhttp_method_name(static_cast<llhttp_method>(parser.method));
        bool keep = llhttp_should_keep_alive(&parser) != 0;
        AdminResponse r;
        handle(r);
        respond(r, keep);
        reset();
        // What is left in this read belongs to the next request.
        received = left;
        if (!keep) return;
      } else if (received > kMaxRequestBytes) {
        AdminResponse r;
        r.status = 413;
        r.body = "request too large\n";
        respond(r, false);
        return;
      }
    }
  }
};

AdminServer::AdminServer(uv_loop_t* loop, Handler handler) : loop_(loop), handler_(std::move(handler)) {}
AdminServer::~AdminServer() = default;

std::string AdminServer::listen(const std::string& host, int port, std::string* bound) {
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

void AdminServer::close() {
  if (open_) {
    open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), nullptr);
  }
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
  llhttp_settings_init(&c->settings);
  c->settings.on_url = [](llhttp_t* p, const char* at, std::size_t n) {
    static_cast<Conn*>(p->data)->url.append(at, n);
    return 0;
  };
  c->settings.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) {
    Conn* c = static_cast<Conn*>(p->data);
    if (c->in_value) c->flushHeader();
    c->field.append(at, n);
    return 0;
  };
  c->settings.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) {
    Conn* c = static_cast<Conn*>(p->data);
    c->in_value = true;
    c->value.append(at, n);
    return 0;
  };
  c->settings.on_headers_complete = [](llhttp_t* p) {
    Conn* c = static_cast<Conn*>(p->data);
    c->flushHeader();
    return 0;
  };
  c->settings.on_body = [](llhttp_t* p, const char* at, std::size_t n) {
    static_cast<Conn*>(p->data)->req.body.append(at, n);
    return 0;
  };
  c->settings.on_message_complete = [](llhttp_t* p) {
    static_cast<Conn*>(p->data)->complete = true;
    return static_cast<int>(HPE_PAUSED);
  };
  llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
  c->parser.data = c;
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
