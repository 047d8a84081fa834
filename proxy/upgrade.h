// Binary upgrade (SIGUSR2): the running process starts the binary it was
// started from, with the same arguments and environment, and hands it the
// listening sockets; once the new process reports ready, the old one stops
// accepting and drains.
//
// The hand-over is by inherited descriptors. The new process gets, beside
// stdin, stdout and stderr:
//   descriptor 3                a socket it writes "READY\n" to once it serves;
//   descriptors 4, 5, ...       the listening sockets, FD_CLOEXEC cleared;
//   TETHER_UPGRADE_READY_FD=3
//   TETHER_UPGRADE_FDS=proxy:127.0.0.1:8000=4,proxy:127.0.0.1:8000=5,admin:127.0.0.1:9901=6
// one entry per socket: its kind (proxy or admin), the address as configured
// (HostPort::str(); a port 0 stays 0, the socket says which port it has), and
// its descriptor. The sockets of one proxy listener (one per worker with
// SO_REUSEPORT) are listed in worker order. The old process drops
// WATCHDOG_PID from that environment: the watchdog belongs to whichever
// process systemd knows as the main one.
//
// The new process matches a configured listener to the first unclaimed
// inherited listener of the same kind and configured address, so that the
// accept queue the old process fills is the one the new process reads: no
// SYN is refused and no queued connection is lost. It binds new sockets for
// new addresses and closes the inherited ones its configuration dropped.
//
// The parsing and the matching here are pure (no descriptor is touched);
// proxy/server.cc checks the descriptors, and spawns and watches the new
// process through Successor (proxy/successor.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::proxy {

inline constexpr const char* kUpgradeFdsEnv = "TETHER_UPGRADE_FDS";
inline constexpr const char* kUpgradeReadyEnv = "TETHER_UPGRADE_READY_FD";
inline constexpr const char* kUpgradeReadyLine = "READY\n";
// Bounds on what the new process accepts from its environment.
inline constexpr std::size_t kMaxInheritedFds = 4096;
inline constexpr int kMaxInheritedFd = 1 << 20;

struct InheritedFd {
  enum class Kind { kProxy, kAdmin };
  Kind kind = Kind::kProxy;
  std::string address;  // as configured (HostPort::str())
  int fd = -1;
  // Filled by the caller after checking the descriptor (not by the parser):
  std::string bound;        // getsockname, "ip:port"
  bool reuse_port = false;  // SO_REUSEPORT set on it
};

// TETHER_UPGRADE_FDS. Refuses (nullopt, *why set) an empty list, an entry
// without a kind, an address or a descriptor, a descriptor that is not a
// plain decimal (no sign, no leading zero) in 3..kMaxInheritedFd, one listed twice, more than one admin
// socket and more than kMaxInheritedFds entries.
std::optional<std::vector<InheritedFd>> parseUpgradeFds(std::string_view text, std::string* why);
// TETHER_UPGRADE_READY_FD: a plain decimal in 3..kMaxInheritedFd.
std::optional<int> parseUpgradeReadyFd(std::string_view text, std::string* why);
// The inverse of parseUpgradeFds.
std::string formatUpgradeFds(const std::vector<InheritedFd>& fds);

// One socket a worker opens for a listener. `shared`: another worker opens
// the same one (a socket without SO_REUSEPORT cannot be joined by a new
// one): the worker opens a duplicate of it.
struct InheritedTake {
  int fd = -1;
  bool shared = false;
  bool operator==(const InheritedTake&) const = default;
};

struct UpgradePlan {
  // [listener][worker]: what that worker opens for that listener. Empty for
  // every worker: a new listener, bound as at a start. Empty for one worker
  // only: it binds a new SO_REUSEPORT socket beside the inherited ones.
  std::vector<std::vector<std::vector<InheritedTake>>> proxy;
  int admin = -1;           // the inherited admin socket, or -1: bind one
  std::vector<int> unused;  // inherited, not in this configuration: to close
};

// Matches inherited sockets to a configuration: `listeners` are the
// configured proxy addresses in order, `admin` the admin one, `workers` the
// worker count. Every inherited socket of a matched listener is opened by
// some worker (the sockets of a SO_REUSEPORT group each have a queue of their
// own: one closed would drop what waits in it); with more workers than
// sockets, the extra workers join the group (SO_REUSEPORT) or share a socket.
UpgradePlan planUpgrade(const std::vector<InheritedFd>& inherited,
                        const std::vector<std::string>& listeners, const std::string& admin,
                        std::uint32_t workers);

}  // namespace tether::proxy
