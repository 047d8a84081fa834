#include "proxy/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>

namespace tether::proxy {

std::string formatAddress(const sockaddr* sa) {
  char ip[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    return "[" + std::string(ip) + "]:" + std::to_string(ntohs(a->sin6_port));
  }
  auto* a = reinterpret_cast<const sockaddr_in*>(sa);
  inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
  return std::string(ip) + ":" + std::to_string(ntohs(a->sin_port));
}

std::string localAddress(const uv_tcp_t* t) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getsockname(t, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return formatAddress(reinterpret_cast<const sockaddr*>(&ss));
}

std::int64_t wallClockMs() {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

}  // namespace tether::proxy
