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
// proxy/server.cc checks the descriptors and spawns, through Successor.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
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
// plain decimal in 3..kMaxInheritedFd, one listed twice, more than one admin
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

// A new process started for an upgrade, watched from the main loop until it
// reports ready, exits, or lets the timeout pass. Main loop only.
class Successor {
 public:
  struct Socket {
    InheritedFd::Kind kind;
    std::string address;  // as configured
    int fd;               // ours; the child gets a copy
  };
  // ok: the child wrote its ready line (it runs on, on its own). Otherwise
  // `why` says what went wrong, and the child has been killed and reaped.
  using Done = std::function<void(bool ok, const std::string& why)>;

  // Spawns `binary` with argv[0] = binary, then `args`, the process's
  // environment with the upgrade variables (see above), and `sockets`.
  // Returns nullptr and sets *error when nothing was started. Otherwise
  // `done` runs exactly once, later, on the loop; the Successor frees itself
  // once its handles are closed after that (do not touch it after `done`).
  static Successor* start(uv_loop_t* loop, const std::string& binary,
                          const std::vector<std::string>& args, const std::vector<Socket>& sockets,
                          std::int64_t timeout_ms, Done done, std::string* error);
  int pid() const { return pid_; }
  // Gives up on the child (tether is stopping): it is killed, and `done`
  // reports the failure once it is reaped.
  void abandon(const std::string& why);

 private:
  Successor() = default;
  void fail(const std::string& why);
  void finish();
  static void onExit(uv_process_t* p, std::int64_t status, int signal);
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void onClosed(uv_handle_t* h);

  uv_process_t process_;
  uv_pipe_t ready_;
  uv_timer_t timer_;
  int pid_ = 0;
  int open_handles_ = 0;
  bool exited_ = false;
  bool ready_seen_ = false;
  bool done_called_ = false;
  std::string why_;      // the first failure seen
  std::string line_;     // what the child wrote so far (bounded)
  char buf_[64];
  std::int64_t timeout_ms_ = 0;
  Done done_;
};

}  // namespace tether::proxy
