// The client behind trusted proxies.
//
// A request that reaches tether through a proxy listed in trusted_proxies
// (an ingress, a CDN) names its client in X-Forwarded-For, each hop
// appending the address it received from. The client is the rightmost
// address that is not itself a trusted proxy: the walk starts at the
// connection's peer and moves left while the hop is trusted, as nginx's
// real_ip_recursive does. Used wherever SPEC says "the client's address after
// trusted_proxies": the client_ip affinity key and consistent_hash.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "conf/config.h"

namespace tether::proxy {

struct PeerAddress {
  std::string_view text;        // as tether prints it, e.g. "127.0.0.1"
  const std::uint8_t* bytes;    // 4 or 16 bytes, network order
  std::uint8_t family;          // 4 or 6
};

// X-Forwarded-For values (every line of the header, in order) are read only
// when the peer is trusted. Walking left: an entry that is not a plain IPv4
// or IPv6 address (a name, "unknown", an address with a port) ends the walk
// at the hop to its right, which vouched for it; when every entry is trusted,
// the leftmost is the client. A result from the header is written into `out`
// in canonical form; the view points into `out` or at peer.text.
std::string_view clientAddress(const PeerAddress& peer, std::span<const std::string_view> xff,
                               std::span<const conf::Cidr> trusted, char (&out)[46]);

bool isTrusted(const std::uint8_t* bytes, std::uint8_t family, std::span<const conf::Cidr> trusted);

}  // namespace tether::proxy
