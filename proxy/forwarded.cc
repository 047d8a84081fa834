#include "proxy/forwarded.h"

#include <arpa/inet.h>

#include <cstring>

namespace tether::proxy {

bool isTrusted(const std::uint8_t* bytes, std::uint8_t family, std::span<const conf::Cidr> trusted) {
  for (const conf::Cidr& c : trusted)
    if (c.contains(bytes, family)) return true;
  return false;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

struct Parsed {
  std::uint8_t bytes[16];
  std::uint8_t family = 0;  // 0: not an address
};

Parsed parse(std::string_view s) {
  Parsed p;
  char text[INET6_ADDRSTRLEN];
  if (s.empty() || s.size() >= sizeof text) return p;
  std::memcpy(text, s.data(), s.size());
  text[s.size()] = 0;
  if (inet_pton(AF_INET, text, p.bytes) == 1) {
    p.family = 4;
  } else if (inet_pton(AF_INET6, text, p.bytes) == 1) {
    p.family = 6;
  }
  return p;
}

}  // namespace

std::string_view clientAddress(const PeerAddress& peer, std::span<const std::string_view> xff,
                               std::span<const conf::Cidr> trusted, char (&out)[46]) {
  if (!isTrusted(peer.bytes, peer.family, trusted)) return peer.text;
  // Right to left over the lines, then over each line's comma-separated list.
  Parsed client;
  bool walking = true;
  for (std::size_t line = xff.size(); walking && line-- > 0;) {
    std::string_view rest = xff[line];
    while (walking && !rest.empty()) {
      std::size_t comma = rest.rfind(',');
      std::string_view entry = trim(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
      Parsed p = parse(entry);
      if (p.family == 0) {
        walking = false;  // not an address: the hop to its right vouched last
        break;
      }
      client = p;
      walking = isTrusted(p.bytes, p.family, trusted);
    }
  }
  if (client.family == 0) return peer.text;
  inet_ntop(client.family == 4 ? AF_INET : AF_INET6, client.bytes, out, sizeof out);
  return std::string_view(out);
}

}  // namespace tether::proxy
