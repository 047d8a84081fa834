#include "proxy/upgrade.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>

extern char** environ;

namespace tether::proxy {

namespace {

std::optional<int> parseFd(std::string_view text) {
  if (text.empty() || text.size() > 7) return std::nullopt;
  int v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 3 || v > kMaxInheritedFd) return std::nullopt;
  return v;
}

std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) {
    unsigned char u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out + (s.size() > 80 ? "...\"" : "\"");
}

}  // namespace

std::optional<std::vector<InheritedFd>> parseUpgradeFds(std::string_view text, std::string* why) {
  std::vector<InheritedFd> out;
  if (text.empty()) {
    *why = "empty";
    return std::nullopt;
  }
  bool admin_seen = false;
  std::size_t p = 0;
  while (p <= text.size()) {
    std::size_t q = text.find(',', p);
    if (q == std::string_view::npos) q = text.size();
    std::string_view e = text.substr(p, q - p);
    p = q + 1;
    if (out.size() == kMaxInheritedFds) {
      *why = "more than " + std::to_string(kMaxInheritedFds) + " entries";
      return std::nullopt;
    }
    std::size_t colon = e.find(':');
    std::size_t eq = e.rfind('=');
    if (colon == std::string_view::npos || eq == std::string_view::npos || eq < colon) {
      *why = "entry " + quoted(e) + ": expected KIND:ADDRESS=FD";
      return std::nullopt;
    }
    InheritedFd f;
    std::string_view kind = e.substr(0, colon);
    if (kind == "proxy") {
      f.kind = InheritedFd::Kind::kProxy;
    } else if (kind == "admin") {
      f.kind = InheritedFd::Kind::kAdmin;
      if (admin_seen) {
        *why = "entry " + quoted(e) + ": a second admin socket";
        return std::nullopt;
      }
      admin_seen = true;
    } else {
      *why = "entry " + quoted(e) + ": kind is proxy or admin";
      return std::nullopt;
    }
    std::string_view address = e.substr(colon + 1, eq - colon - 1);
    if (address.empty() || address.size() > 512) {
      *why = "entry " + quoted(e) + ": no address";
      return std::nullopt;
    }
    for (char c : address) {
      unsigned char u = static_cast<unsigned char>(c);
      if (u <= 0x20 || u >= 0x7f) {
        *why = "entry " + quoted(e) + ": a control or non-ASCII byte in the address";
        return std::nullopt;
      }
    }
    std::optional<int> fd = parseFd(e.substr(eq + 1));
    if (!fd) {
      *why = "entry " + quoted(e) + ": descriptor is a decimal in 3.." + std::to_string(kMaxInheritedFd);
      return std::nullopt;
    }
    for (const InheritedFd& o : out) {
      if (o.fd == *fd) {
        *why = "entry " + quoted(e) + ": descriptor " + std::to_string(*fd) + " listed twice";
        return std::nullopt;
      }
    }
    f.address = std::string(address);
    f.fd = *fd;
    out.push_back(std::move(f));
  }
  return out;
}

std::optional<int> parseUpgradeReadyFd(std::string_view text, std::string* why) {
  std::optional<int> fd = parseFd(text);
  if (!fd) *why = quoted(text) + ": a decimal in 3.." + std::to_string(kMaxInheritedFd);
  return fd;
}

std::string formatUpgradeFds(const std::vector<InheritedFd>& fds) {
  std::string out;
  for (const InheritedFd& f : fds) {
    if (!out.empty()) out += ',';
    out += f.kind == InheritedFd::Kind::kAdmin ? "admin:" : "proxy:";
    out += f.address;
    out += '=';
    out += std::to_string(f.fd);
  }
  return out;
}

UpgradePlan planUpgrade(const std::vector<InheritedFd>& inherited,
                        const std::vector<std::string>& listeners, const std::string& admin,
                        std::uint32_t workers) {
  if (workers == 0) workers = 1;
  // A group: the sockets of one old listener (same configured address, same
  // bound address), in worker order.
  struct Group {
    const InheritedFd* first;
    std::vector<int> fds;
    bool claimed = false;
  };
  std::vector<Group> groups;
  UpgradePlan plan;
  for (const InheritedFd& f : inherited) {
    if (f.kind == InheritedFd::Kind::kAdmin) {
      if (plan.admin < 0 && f.address == admin) {
        plan.admin = f.fd;
      } else {
        plan.unused.push_back(f.fd);
      }
      continue;
    }
    Group* g = nullptr;
    for (Group& o : groups)
      if (o.first->address == f.address && o.first->bound == f.bound) g = &o;
    if (!g) g = &groups.emplace_back(Group{&f, {}});
    g->fds.push_back(f.fd);
  }
  for (const std::string& address : listeners) {
    std::vector<std::vector<InheritedTake>> per_worker(workers);
    Group* g = nullptr;
    for (Group& o : groups) {
      if (!o.claimed && o.first->address == address) {
        g = &o;
        break;
      }
    }
    if (g) {
      g->claimed = true;
      std::size_t k = g->fds.size();
      for (std::uint32_t w = 0; w < workers; ++w) {
        if (w < k) {
          for (std::size_t j = w; j < k; j += workers) per_worker[w].push_back({g->fds[j], false});
        } else if (!g->first->reuse_port) {
          per_worker[w].push_back({g->fds[w % k], true});
        }
        // else: w binds a new SO_REUSEPORT socket that joins the group.
      }
    }
    plan.proxy.push_back(std::move(per_worker));
  }
  for (const Group& g : groups)
    if (!g.claimed) plan.unused.insert(plan.unused.end(), g.fds.begin(), g.fds.end());
  return plan;
}

// ---------------------------------------------------------------------------
// Successor

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
