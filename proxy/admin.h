// The admin listener: a small HTTP/1.1 server on the main loop.
//
// It parses requests (bounded: 64 KiB of head, 64 KiB of body), hands each
// to the handler synchronously and writes the answer. The routes and their
// rules live in the handler (server.cc); this file only speaks HTTP.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

namespace tether::proxy {

struct AdminRequest {
  std::string method;
  std::string path;    // without the query
  std::string query;   // after '?', without it
  std::string authorization;
  std::string body;
  bool loopback_peer = false;
};

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::string extra_headers;  // "Name: value\r\n" lines
};

class AdminServer {
 public:
  using Handler = std::function<void(const AdminRequest&, AdminResponse&)>;
  AdminServer(uv_loop_t* loop, Handler handler);
  ~AdminServer();
  // Returns an error message, or empty; *bound gets "ip:port".
  std::string listen(const std::string& host, int port, std::string* bound);
  void close();

  struct Conn;

 private:
  static void onConnection(uv_stream_t* server, int status);
  uv_loop_t* loop_;
  uv_tcp_t tcp_;
  Handler handler_;
  bool open_ = false;
};

}  // namespace tether::proxy
