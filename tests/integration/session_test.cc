// The real worker loop and sessions, in process, against scripted upstreams
// (plain blocking sockets on threads). Each test ends with every handle
// closed: the worker's destructor closes its loop and the test checks it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "proxy/runtime.h"
#include "proxy/worker.h"

namespace tether::proxy {
namespace {

int listenLoopback(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  listen(fd, 64);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

int connectTo(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void sendAll(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

// Reads until `done(buffer)` or EOF/timeout.
std::string recvUntil(int fd, const std::function<bool(const std::string&)>& done) {
  std::string out;
  char buf[4096];
  while (!done(out)) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

int countOf(const std::string& hay, const std::string& needle) {
  int n = 0;
  for (std::size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

// A scripted upstream: answers each request on a connection with `reply`
// (keep-alive), counting requests and connections.
class ScriptedUpstream {
 public:
  explicit ScriptedUpstream(std::string reply) : reply_(std::move(reply)) {
    fd_ = listenLoopback(&port_);
    thread_ = std::thread([this] { run(); });
  }
  // Every connection thread is joined here: none may outlive the reply it sends.
  ~ScriptedUpstream() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();  // no connection is added after this
    for (Conn& c : conns_) {
      shutdown(c.fd, SHUT_RDWR);
      c.thread.join();
      close(c.fd);
    }
  }
  int port() const { return port_; }
  int requests() const { return requests_; }
  int connections() const { return connections_; }

 private:
  void run() {
    while (!stop_) {
      int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      ++connections_;
      // The fd stays open until the destructor, which joins the thread first.
      conns_.push_back(Conn{c, std::thread([this, c] {
        std::string in;
        char buf[4096];
        while (true) {
          std::size_t end;
          while ((end = in.find("\r\n\r\n")) == std::string::npos) {
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n <= 0) return;
            in.append(buf, static_cast<std::size_t>(n));
          }
          in.erase(0, end + 4);
          ++requests_;
          sendAll(c, reply_);
        }
      })});
    }
  }
  struct Conn {
    int fd;
    std::thread thread;
  };
  std::vector<Conn> conns_;  // touched by the accept thread only, until it is joined
  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

// One worker on its own thread, listening on 127.0.0.1:0.
class WorkerFixture : public ::testing::Test {
 protected:
  void start(const std::vector<int>& backend_ports, std::function<void(conf::Config&)> tweak = {}) {
    auto cfg = std::make_shared<conf::Config>();
    cfg->listeners[0].address = conf::HostPort{"127.0.0.1", 0};
    cfg->access_log.enabled = false;
    if (tweak) tweak(*cfg);
    rt_.setConfig(cfg);
    rt_.memory_pins = std::make_unique<SharedMemoryPins>(1000);
    for (int p : backend_ports) {
      auto b = std::make_unique<balancer::Backend>();
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(static_cast<std::uint16_t>(p));
      std::memcpy(&b->addr, &a, sizeof a);
      b->addr_len = sizeof a;
      b->name = "127.0.0.1:" + std::to_string(p);
      b->state = balancer::BackendState::kUp;
      balancer::Backend* added = rt_.backends.add(std::move(b));
      rt_.metrics.addBackend(added->id, added->name);
    }
    worker_ = std::make_unique<Worker>(rt_, 0);
    std::vector<std::string> bound;
    ASSERT_EQ(worker_->bind(*cfg, &bound, nullptr), "");
    port_ = std::stoi(bound[0].substr(bound[0].rfind(':') + 1));
    worker_->setOnDrained([] {});
    thread_ = std::thread([this] { worker_->run(); });
  }
  void TearDown() override {
    if (!worker_) return;
    worker_->requestStop();
    worker_->requestForceStop();
    thread_.join();
    // The loop ran dry: every handle was closed (libuv's rule).
    EXPECT_EQ(uv_loop_alive(worker_->loop()), 0);
    worker_.reset();
  }
  Runtime rt_;
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  int port_ = 0;
};

const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

TEST_F(WorkerFixture, ForwardsARequestAndReusesTheUpstreamConnection) {
  ScriptedUpstream up(kOk);
  start({up.port()});
  int c = connectTo(port_);
  ASSERT_GE(c, 0);
  for (int i = 0; i < 3; ++i) {
    sendAll(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    std::string r = recvUntil(c, [](const std::string& s) { return s.find("\r\n\r\nok") != std::string::npos; });
    EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
    EXPECT_NE(r.find("X-Request-Id: "), std::string::npos);
  }
  close(c);
  EXPECT_EQ(up.requests(), 3);
  EXPECT_EQ(up.connections(), 1);
}

TEST_F(WorkerFixture, AnswersPipelinedRequestsInOrder) {
  ScriptedUpstream up(kOk);
  start({up.port()});
  int c = connectTo(port_);
  sendAll(c, "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string r = recvUntil(c, [](const std::string& s) { return countOf(s, "\r\n\r\nok") == 3; });
  EXPECT_EQ(countOf(r, "HTTP/1.1 200 OK"), 3) << r;
  close(c);
}

TEST_F(WorkerFixture, NoBackendIsAPrompt503WithRetryAfter) {
  start({});
  int c = connectTo(port_);
  sendAll(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string r = recvUntil(c, [](const std::string&) { return false; });
  EXPECT_EQ(r.rfind("HTTP/1.1 503", 0), 0u) << r;
  EXPECT_NE(r.find("Retry-After: 1\r\n"), std::string::npos);
  close(c);
}

TEST_F(WorkerFixture, RefusedConnectionIs502AfterRetries) {
  int dead_port = 0;
  int fd = listenLoopback(&dead_port);
  close(fd);  // nothing listens there now
  start({dead_port});
  int c = connectTo(port_);
  sendAll(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string r = recvUntil(c, [](const std::string&) { return false; });
  EXPECT_EQ(r.rfind("HTTP/1.1 502", 0), 0u) << r;
  close(c);
}

TEST_F(WorkerFixture, SmugglingAttemptIs400AndNothingIsForwarded) {
  ScriptedUpstream up(kOk);
  start({up.port()});
  int c = connectTo(port_);
  sendAll(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  std::string r = recvUntil(c, [](const std::string&) { return false; });
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r;
  close(c);
  EXPECT_EQ(up.requests(), 0);
}

TEST_F(WorkerFixture, OversizedHeadIs431) {
  ScriptedUpstream up(kOk);
  start({up.port()}, [](conf::Config& c) { c.limits.max_request_header_bytes = 1024; });
  int c = connectTo(port_);
  sendAll(c, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(4000, 'a') + "\r\n\r\n");
  std::string r = recvUntil(c, [](const std::string&) { return false; });
  EXPECT_EQ(r.rfind("HTTP/1.1 431", 0), 0u) << r;
  close(c);
  EXPECT_EQ(up.requests(), 0);
}

}  // namespace
}  // namespace tether::proxy
