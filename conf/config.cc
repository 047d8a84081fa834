#include "conf/config.h"

#include <arpa/inet.h>

#include <cstring>

namespace tether::conf {

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

namespace {

// True when the first `prefix` bits of a and b are equal.
bool samePrefix(const std::uint8_t* a, const std::uint8_t* b, unsigned prefix) {
  unsigned whole = prefix / 8;
  if (std::memcmp(a, b, whole) != 0) return false;
  unsigned rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

bool isV4Mapped(const std::uint8_t* addr) {
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(addr, kMapped, sizeof kMapped) == 0;
}

}  // namespace

bool Cidr::contains(const std::uint8_t* addr, std::uint8_t addr_family) const {
  if (addr_family == family) return samePrefix(bytes, addr, prefix);
  if (family == 4 && addr_family == 6 && isV4Mapped(addr)) {
    return samePrefix(bytes, addr + 12, prefix);
  }
  return false;
}

std::string Cidr::str() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes, text, sizeof text);
  return std::string(text) + "/" + std::to_string(prefix);
}

const char* toString(Balance b) {
  switch (b) {
    case Balance::kRoundRobin:
      return "round_robin";
    case Balance::kLeastConn:
      return "least_conn";
    case Balance::kP2c:
      return "p2c";
    case Balance::kConsistentHash:
      return "consistent_hash";
  }
  return "?";
}

const char* toString(LogLevel l) {
  switch (l) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

const char* toString(LogFormat f) {
  switch (f) {
    case LogFormat::kText:
      return "text";
    case LogFormat::kJson:
      return "json";
  }
  return "?";
}

const char* toString(OnTargetDown o) {
  switch (o) {
    case OnTargetDown::kRedispatch:
      return "redispatch";
    case OnTargetDown::kStrict:
      return "strict";
  }
  return "?";
}

const char* toString(UnderscoreHeaders u) {
  switch (u) {
    case UnderscoreHeaders::kDrop:
      return "drop";
    case UnderscoreHeaders::kReject:
      return "reject";
    case UnderscoreHeaders::kAllow:
      return "allow";
  }
  return "?";
}

const char* toString(Coding c) {
  switch (c) {
    case Coding::kIdentity:
      return "identity";
    case Coding::kZstd:
      return "zstd";
    case Coding::kBrotli:
      return "br";
    case Coding::kGzip:
      return "gzip";
  }
  return "?";
}

}  // namespace tether::conf
