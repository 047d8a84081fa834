#include "proxy/successor.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <string_view>

extern char** environ;

namespace tether::proxy {

Successor* Successor::start(uv_loop_t* loop, const std::string& binary,
                            const std::vector<std::string>& args, const std::vector<Socket>& sockets,
                            std::int64_t timeout_ms, Done done, std::string* error) {
  std::vector<InheritedFd> listed;
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    InheritedFd f;
    f.kind = sockets[i].kind;
    f.address = sockets[i].address;
    f.fd = static_cast<int>(4 + i);
    listed.push_back(std::move(f));
  }
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view v(*e);
    std::string_view name = v.substr(0, v.find('='));
    if (name == kUpgradeFdsEnv || name == kUpgradeReadyEnv || name == "WATCHDOG_PID") continue;
    env.emplace_back(v);
  }
  env.push_back(std::string(kUpgradeReadyEnv) + "=3");
  env.push_back(std::string(kUpgradeFdsEnv) + "=" + formatUpgradeFds(listed));
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store;
  argv_store.push_back(binary);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  auto* s = new Successor;
  s->timeout_ms_ = timeout_ms;
  s->done_ = std::move(done);
  uv_pipe_init(loop, &s->ready_, 0);
  uv_timer_init(loop, &s->timer_);
  s->ready_.data = s->timer_.data = s->process_.data = s;
  std::vector<uv_stdio_container_t> stdio(4 + sockets.size());
  for (int i = 0; i < 3; ++i) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  stdio[3].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[3].data.stream = reinterpret_cast<uv_stream_t*>(&s->ready_);
  for (std::size_t i = 0; i < sockets.size(); ++i) {
    stdio[4 + i].flags = UV_INHERIT_FD;
    stdio[4 + i].data.fd = sockets[i].fd;
  }
  uv_process_options_t opts{};
  opts.exit_cb = onExit;
  opts.file = argv[0];
  opts.args = argv.data();
  opts.env = envp.data();
  opts.stdio_count = static_cast<int>(stdio.size());
  opts.stdio = stdio.data();
  int rc = uv_spawn(loop, &s->process_, &opts);
  s->open_handles_ = 3;
  if (rc != 0) {
    *error = binary + ": " + uv_strerror(rc);
    s->done_called_ = true;  // nothing to report: the caller has the error
    s->exited_ = true;
    s->finish();
    return nullptr;
  }
  s->process_.data = s;
  s->pid_ = s->process_.pid;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&s->ready_),
      [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
        auto* self = static_cast<Successor*>(h->data);
        *b = uv_buf_init(self->buf_, sizeof self->buf_);
      },
      onRead);
  uv_timer_start(&s->timer_, [](uv_timer_t* t) {
    auto* self = static_cast<Successor*>(t->data);
    self->fail("not ready within " + std::to_string(self->timeout_ms_) + " ms (timeouts.upgrade)");
  }, static_cast<std::uint64_t>(timeout_ms), 0);
  return s;
}

void Successor::onRead(uv_stream_t* st, ssize_t n, const uv_buf_t* buf) {
  auto* s = static_cast<Successor*>(st->data);
  if (s->done_called_) return;
  if (n < 0) {
    // Its exit (the better reason) or the timeout follows.
    uv_read_stop(st);
    return;
  }
  s->line_.append(buf->base, static_cast<std::size_t>(n));
  std::string_view want = kUpgradeReadyLine;
  if (s->line_.size() >= want.size() && s->line_.compare(0, want.size(), want) == 0) {
    s->ready_seen_ = true;
    s->finish();
  } else if (want.compare(0, s->line_.size(), s->line_) != 0) {
    s->fail("wrote something else than its ready line");
  }
}

void Successor::onExit(uv_process_t* p, std::int64_t status, int signal) {
  auto* s = static_cast<Successor*>(p->data);
  s->exited_ = true;
  if (s->why_.empty()) {
    s->why_ = signal ? "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")"
                     : "exited with status " + std::to_string(status);
  }
  s->finish();
}

void Successor::fail(const std::string& why) {
  if (done_called_) return;
  if (why_.empty()) why_ = why;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&ready_));
  uv_timer_stop(&timer_);
  if (exited_) {
    finish();
  } else {
    // Reported once reaped (onExit), so that no second upgrade starts while it lives.
    uv_process_kill(&process_, SIGKILL);
  }
}

void Successor::finish() {
  if (!done_called_) {
    done_called_ = true;
    Done done = std::move(done_);
    if (done) done(ready_seen_, why_);
  }
  for (uv_handle_t* h : {reinterpret_cast<uv_handle_t*>(&ready_), reinterpret_cast<uv_handle_t*>(&timer_),
                         reinterpret_cast<uv_handle_t*>(&process_)}) {
    if (!uv_is_closing(h)) uv_close(h, onClosed);
  }
}

void Successor::abandon(const std::string& why) { fail(why); }

void Successor::onClosed(uv_handle_t* h) {
  auto* s = static_cast<Successor*>(h->data);
  if (--s->open_handles_ == 0) delete s;
}

}  // namespace tether::proxy
