// The new process of a binary upgrade (proxy/upgrade.h), watched from the
// main loop until it reports ready, exits, or lets its timeout pass.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "proxy/upgrade.h"

namespace tether::proxy {

// Main loop only.
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
  // environment with the upgrade variables (proxy/upgrade.h), and `sockets`.
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
