// The admin listener: a small HTTP/1.1 server on the main loop.
//
// It reads requests with tether's one HTTP/1 decoder (proxy/http/h1_decoder.h,
// the same RFC 9112 rules as the proxy listeners), hands each to the handler
// synchronously and writes the answer; a kept-alive connection may carry any
// number of requests, pipelined or not. The routes and their rules live in
// the handler (server.cc); this file only speaks HTTP.
//
// Bounded: a head of at most kAdminMaxHeadBytes (431 above), a body of at
// most kAdminMaxBodyBytes (413 above). A request the decoder refuses is
// answered with the status it chose (400 for malformed syntax or framing,
// e.g. obs-fold or a Transfer-Encoding other than chunked; 405 for CONNECT;
// 413; 431; 505 for a version other than 1.0 and 1.1), the reason as a
// text/plain body, and Connection: close. An upgrade request is answered
// and the connection closed.
//
// Hostile or dead clients cannot hold it (AdminLimits): at most
// max_connections are open (one more is accepted and closed at once), a
// request must arrive whole within request_header_ms of its first byte (and
// the first one within request_header_ms of the connection), a kept-alive
// connection may idle idle_ms between requests, and close() ends every
// connection, so that the loop can stop. The handler may throw: the
// exception is caught here and the client gets a 500, the process lives.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>

#include "proxy/intrusive_list.h"

namespace tether::proxy {

inline constexpr std::uint64_t kAdminMaxHeadBytes = 64 * 1024;
inline constexpr std::uint64_t kAdminMaxBodyBytes = 64 * 1024;

struct AdminRequest {
  std::string method;
  std::string path;    // origin-form (an absolute-form target's authority removed), without the query
  std::string query;   // after '?', without it
  std::string authorization;  // the last Authorization field's value
  std::string body;
  bool loopback_peer = false;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string extra_headers;  // "Name: value\r\n" lines
};

// From the configuration: admin.max_connections, timeouts.request_header,
// timeouts.downstream_idle. A timeout <= 0 is none.
struct AdminLimits {
  std::uint32_t max_connections = 64;
  std::int64_t request_header_ms = 10'000;
  std::int64_t idle_ms = 75'000;
};

class AdminServer {
 public:
  // Main loop only, like every method below. The handler runs synchronously
  // inside a read callback; it may throw (answered 500).
  using Handler = std::function<void(const AdminRequest&, AdminResponse&)>;
  AdminServer(uv_loop_t* loop, Handler handler);
  // close() must have run, and the loop turned until its handles closed.
  ~AdminServer();
  // Returns an error message, or empty; *bound gets "ip:port". With an
  // inherited listening socket (fd >= 0, a binary upgrade), listens on it
  // instead of binding host:port.
  std::string listen(const std::string& host, int port, std::string* bound, int fd = -1);
  // The listening socket's descriptor (-1 when not listening).
  int listeningFd() const;
  // Stops accepting (a new process took the socket over); the open
  // connections live on until close().
  void stopListening();
  // Takes effect for new connections and for every timer armed from now on
  // (a reload calls it).
  void setLimits(const AdminLimits& limits) { limits_ = limits; }
  const AdminLimits& limits() const { return limits_; }
  // Open connections (the cap counts these).
  std::size_t connections() const { return conns_.size(); }
  // Stops listening and closes every connection now; answers not yet written
  // are dropped. Idempotent.
  void close();

  struct Conn;

 private:
  static void onConnection(uv_stream_t* server, int status);
  uv_loop_t* loop_;
  uv_tcp_t tcp_;
  Handler handler_;
  AdminLimits limits_;
  IntrusiveList<Conn> conns_;
  bool open_ = false;
};

}  // namespace tether::proxy
