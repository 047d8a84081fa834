// libFuzzer target: the admin listener (proxy/admin.h) reading hostile bytes
// from a client, on a libuv loop, over a loopback TCP connection (its one way
// in: AdminServer owns its connections).
//
// The routes live in Server::handleAdmin (proxy/server.cc), a private member
// that needs a running Server; the handler here stands in for it with the
// same kinds of answers (text, JSON built from the request, a 401 with an
// extra header, a handler that throws). Input: byte 0 chooses the cuts the
// client writes the rest in (bit 7: 130 KB of 'x' follow, past the admin's
// head and body bounds); the client half-closes after the last byte. Checked:
//   - the process lives and leaks nothing whatever arrives, and the
//     connection ends (the loop gets back to no admin connection);
//   - each request the handler sees has a method and a path without '?';
//   - what the admin writes back reads as HTTP/1.1 responses to tether's
//     own response decoder, no more than one per request handled plus a
//     last error answer.
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "proxy/admin.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/log.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using tether::http::H1Decoder;
using tether::proxy::AdminRequest;
using tether::proxy::AdminResponse;
using tether::proxy::AdminServer;

std::vector<std::string> g_methods;  // of the requests handled, in order

void handle(const AdminRequest& req, AdminResponse& res) {
  FUZZ_CHECK(!req.method.empty());
  FUZZ_CHECK(req.path.find('?') == std::string::npos);
  g_methods.push_back(req.method);
  if (req.path == "/healthz" || req.path == "/metrics") {
    res.body = "ok\n";
    return;
  }
  if (req.path == "/throw") throw std::runtime_error("handler failed");
  res.content_type = "application/json";
  if (req.path.rfind("/admin/", 0) == 0 && req.method == "POST" && req.authorization.empty()) {
    res.status = 401;
    res.extra_headers = "WWW-Authenticate: Bearer\r\n";
    res.body = "{\"error\":\"missing bearer token\"}\n";
    return;
  }
  nlohmann::json j = {{"method", req.method},
                      {"path", req.path},
                      {"query", req.query},
                      {"authorization", req.authorization},
                      {"body_bytes", req.body.size()}};
  if (req.path == "/admin/affinity") {
    // As strict as nlohmann's default: invalid UTF-8 throws, answered 500.
    res.body = j.dump() + "\n";
  } else {
    res.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
}

struct Client {
  uv_tcp_t tcp;
  uv_connect_t connect;
  uv_shutdown_t shutdown;
  std::string out;                  // what is written, in pieces
  std::vector<std::size_t> pieces;  // sizes
  std::string in;                   // what the admin answered
  char buf[65536];
  bool closed = false;
};

struct Loop {
  uv_loop_t loop;
  std::unique_ptr<AdminServer> admin;
  int port = 0;

  Loop() {
    tether::proxy::log::setLevel(
        static_cast<tether::conf::LogLevel>(99));  // quiet: 500s are expected
    FUZZ_CHECK(uv_loop_init(&loop) == 0);
    admin = std::make_unique<AdminServer>(&loop, handle);
    // Short deadlines, so that a connection that never ends is a slow input,
    // not a hang.
    admin->setLimits(tether::proxy::AdminLimits{8, 2000, 2000});
    std::string bound;
    std::string err = admin->listen("127.0.0.1", 0, &bound);
    if (!err.empty()) {
      std::fprintf(stderr, "admin listen: %s\n", err.c_str());
      __builtin_trap();
    }
    port = std::stoi(bound.substr(bound.rfind(':') + 1));
  }
};

Loop& theLoop() {
  static Loop* l = new Loop;  // lives for the process, like tether's main loop
  return *l;
}

void onClosed(uv_handle_t* h) { static_cast<Client*>(h->data)->closed = true; }

void closeClient(Client* c) {
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp)))
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp), onClosed);
}

void onConnect(uv_connect_t* req, int status) {
  Client* c = static_cast<Client*>(req->data);
  if (status != 0) return closeClient(c);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        Client* c = static_cast<Client*>(h->data);
        *b = uv_buf_init(c->buf, sizeof c->buf);
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
        Client* c = static_cast<Client*>(s->data);
        if (n < 0) return closeClient(c);
        c->in.append(b->base, static_cast<std::size_t>(n));
      });
  std::size_t at = 0;
  for (std::size_t n : c->pieces) {
    auto* w = new uv_write_t;
    uv_buf_t b = uv_buf_init(c->out.data() + at, static_cast<unsigned>(n));
    at += n;
    if (uv_write(w, reinterpret_cast<uv_stream_t*>(&c->tcp), &b, 1,
                 [](uv_write_t* w, int) { delete w; }) != 0) {
      delete w;
      return closeClient(c);
    }
  }
  c->shutdown.data = c;
  uv_shutdown(&c->shutdown, reinterpret_cast<uv_stream_t*>(&c->tcp), [](uv_shutdown_t*, int) {});
}

// The admin's answers, decoded as the responses they claim to be.
void checkAnswers(const std::string& in) {
  H1Decoder d(H1Decoder::Type::kResponse, {});
  std::size_t answered = 0, at = 0;
  auto expect = [&] {
    const bool head = answered < g_methods.size() && g_methods[answered] == "HEAD";
    d.expectResponseTo(head ? tether::http::kMethodHead : tether::http::kMethodGet, false);
  };
  expect();
  while (at < in.size()) {
    std::size_t used = 0;
    H1Decoder::Event ev = d.execute(in.data() + at, in.size() - at, &used);
    at += used;
    if (ev == H1Decoder::Event::kNeedMore) break;  // the stream may end mid-answer
    if (ev == H1Decoder::Event::kError) {
      std::fprintf(stderr, "admin answer %zu does not parse (%d %s):\n%s\n", answered,
                   d.errorStatus(), std::string(d.errorReason()).c_str(), in.c_str());
      __builtin_trap();
    }
    if (ev == H1Decoder::Event::kHead) {
      // The handler's answers (200, 401, 500 when it throws), or the status
      // the decoder refused a request with (admin.cc).
      const int s = d.response().status;
      FUZZ_CHECK(s == 200 || s == 401 || s == 500 || s == 400 || s == 405 || s == 413 || s == 431 ||
                 s == 505);
      if (s == 200 || s == 401) FUZZ_CHECK(answered < g_methods.size());
      continue;
    }
    ++answered;
    d.nextMessage();
    expect();
  }
  FUZZ_CHECK(answered <= g_methods.size() + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  Loop& l = theLoop();
  g_methods.clear();
  auto c = std::make_unique<Client>();
  c->out.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  std::mt19937 rng(data[0]);
  const std::size_t most = 1 + (data[0] & 0x7F) % 64;
  for (std::size_t total = 0; total < c->out.size();) {
    std::size_t n = data[0] & 0x7F ? std::min<std::size_t>(1 + rng() % most, c->out.size() - total)
                                   : c->out.size();
    c->pieces.push_back(n);
    total += n;
  }
  if (data[0] & 0x80) {
    c->out.append(130'000, 'x');  // in one write
    c->pieces.push_back(130'000);
  }
  uv_tcp_init(&l.loop, &c->tcp);
  uv_tcp_nodelay(&c->tcp, 1);
  c->tcp.data = c->connect.data = c.get();
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", l.port, &addr);
  FUZZ_CHECK(uv_tcp_connect(&c->connect, &c->tcp, reinterpret_cast<const sockaddr*>(&addr),
                            onConnect) == 0);
  // Until the client saw the end and the admin closed its side.
  while (!c->closed || l.admin->connections() != 0) uv_run(&l.loop, UV_RUN_ONCE);
  uv_run(&l.loop, UV_RUN_NOWAIT);  // the admin connection's close callbacks
  checkAnswers(c->in);
  return 0;
}
