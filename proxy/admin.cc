#include "proxy/admin.h"

#include <llhttp.h>
#include <netinet/in.h>

#include <cstring>

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

struct AdminServer::Conn {
  AdminServer* server;
  uv_tcp_t tcp;
  llhttp_t parser;
  llhttp_settings_t settings;
  AdminRequest req;
  std::string url;
  std::string field;
  std::string value;
  bool in_value = false;
  bool complete = false;
  bool closing = false;
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
    req = AdminRequest{};
    url.clear();
    field.clear();
    value.clear();
    in_value = false;
    complete = false;
  }

  void close() {
    if (closing) return;
    closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), [](uv_handle_t* h) { delete static_cast<Conn*>(h->data); });
  }

  void respond(const AdminResponse& r, bool keep_alive) {
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
  if (!open_) return;
  open_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), nullptr);
}

void AdminServer::onConnection(uv_stream_t* server, int status) {
  if (status != 0) return;
  AdminServer* self = static_cast<AdminServer*>(server->data);
  Conn* c = new Conn;
  c->server = self;
  uv_tcp_init(self->loop_, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
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
  bool loopback = c->req.loopback_peer;
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
  c->req.loopback_peer = loopback;
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
                  c->received += static_cast<std::size_t>(nread);
                  const char* p = b->base;
                  std::size_t left = static_cast<std::size_t>(nread);
                  while (left > 0 && !c->closing) {
                    llhttp_errno_t err = llhttp_execute(&c->parser, p, left);
                    std::size_t used = left;
                    if (err == HPE_PAUSED) {
                      used = static_cast<std::size_t>(llhttp_get_error_pos(&c->parser) - p);
                      llhttp_resume(&c->parser);
                    } else if (err != HPE_OK) {
                      AdminResponse r;
                      r.status = 400;
                      r.body = "bad request\n";
                      c->respond(r, false);
                      return;
                    }
                    p += used;
                    left -= used;
                    if (c->complete) {
                      std::size_t q = c->url.find('?');
                      c->req.path = c->url.substr(0, q);
                      c->req.query = q == std::string::npos ? "" : c->url.substr(q + 1);
                      c->req.method = llhttp_method_name(static_cast<llhttp_method>(c->parser.method));
                      bool keep = llhttp_should_keep_alive(&c->parser) != 0;
                      AdminResponse r;
                      c->server->handler_(c->req, r);
                      c->respond(r, keep);
                      bool lb = c->req.loopback_peer;
                      c->reset();
                      c->req.loopback_peer = lb;
                      c->received = 0;
                      if (!keep) return;
                    } else if (c->received > kMaxRequestBytes) {
                      AdminResponse r;
                      r.status = 413;
                      r.body = "request too large\n";
                      c->respond(r, false);
                      return;
                    }
                  }
                });
}

}  // namespace tether::proxy
