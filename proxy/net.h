// Small helpers at the socket boundary, shared by every part of proxy/.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <string>

namespace tether::proxy {

// "ip:port", IPv6 as "[ip]:port": how tether names an address in logs,
// metric labels and pins.
std::string formatAddress(const sockaddr* sa);
// The local address of a bound TCP handle, formatted; "?" when unknown.
std::string localAddress(const uv_tcp_t* t);
// Wall-clock milliseconds since the epoch (pins, ejections, last check).
std::int64_t wallClockMs();

}  // namespace tether::proxy
