// A scripted Redis for the proxy's unit tests: a thread on a loopback port
// that accepts any number of connections and answers each RESP command by
// its name (upper-cased) with the scripted bytes, or not at all when the
// script has none. Records the commands' names in arrival order.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tether::proxy {

class ScriptedRedis {
 public:
  using Replies = std::map<std::string, std::string>;
  explicit ScriptedRedis(Replies replies) : replies_(std::move(replies)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 4), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedRedis() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }
  std::vector<std::string> commands() {
    std::lock_guard<std::mutex> l(mu_);
    return commands_;
  }

 private:
  struct Conn {
    int fd;
    std::string in;
  };

  void run() {
    std::vector<Conn> conns;
    while (!stop_) {
      std::vector<pollfd> p{{fd_, POLLIN, 0}};
      for (const Conn& c : conns) p.push_back({c.fd, POLLIN, 0});
      if (::poll(p.data(), p.size(), 20) <= 0) continue;
      if (p[0].revents & POLLIN) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c >= 0) conns.push_back({c, {}});
      }
      for (std::size_t i = 1; i < p.size(); ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Conn& c = conns[i - 1];
        char buf[4096];
        ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        c.in.append(buf, static_cast<std::size_t>(n));
        std::string name;
        while (takeCommand(c.in, &name)) {
          {
            std::lock_guard<std::mutex> l(mu_);
            commands_.push_back(name);
          }
          auto it = replies_.find(name);
          if (it != replies_.end() && ::send(c.fd, it->second.data(), it->second.size(), MSG_NOSIGNAL) < 0)
            break;  // (the client may have closed: no SIGPIPE)
        }
      }
      std::erase_if(conns, [](const Conn& c) { return c.fd < 0; });
    }
    for (const Conn& c : conns) ::close(c.fd);
  }

  // One "*N\r\n$len\r\narg\r\n..." off the front of `in`; its first word, upper-cased.
  static bool takeCommand(std::string& in, std::string* name) {
    std::size_t pos = 0;
    auto line = [&](std::string* out) {
      std::size_t e = in.find("\r\n", pos);
      if (e == std::string::npos) return false;
      *out = in.substr(pos, e - pos);
      pos = e + 2;
      return true;
    };
    std::string l;
    if (!line(&l) || l.empty() || l[0] != '*') return false;
    int n = std::stoi(l.substr(1));
    for (int i = 0; i < n; ++i) {
      if (!line(&l)) return false;
      std::size_t len = std::stoul(l.substr(1));
      if (in.size() < pos + len + 2) return false;
      if (i == 0) {
        *name = in.substr(pos, len);
        for (char& ch : *name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      }
      pos += len + 2;
    }
    in.erase(0, pos);
    return true;
  }

  std::map<std::string, std::string> replies_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> commands_;
};

}  // namespace tether::proxy
