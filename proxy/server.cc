#include "proxy/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <strings.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "balancer/affinity_key.h"
#include "balancer/picker.h"
#include "proxy/log.h"
#include "proxy/net.h"

#ifdef TETHER_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace tether::proxy {

using balancer::Backend;
using balancer::BackendState;

namespace {

bool isIpLiteral(const std::string& host) {
  in6_addr a6;
  in_addr a4;
  return inet_pton(AF_INET, host.c_str(), &a4) == 1 || inet_pton(AF_INET6, host.c_str(), &a6) == 1;
}

// Sets or clears a backend's drain and keeps tether_backend_state in step:
// draining overrides the health state there, as it does in /admin/backends.
void setDrain(metrics::Metrics& m, Backend* b, bool on) {
  b->admin_drain.store(on);
  BackendState s = b->state.load();
  if (s == BackendState::kRemoved) return;
  m.backend(b->id).setState(static_cast<int>(on ? BackendState::kDraining : s));
}

// Sets a backend's weight and keeps tether_backend_weight in step.
void setWeight(metrics::Metrics& m, Backend* b, std::uint32_t w) {
  b->weight.store(w);
  m.backend(b->id).weight.set(static_cast<std::int64_t>(w));
}

// A drain that is the configuration's, not the admin's: an enable from
// another tether leaves it.
bool structuralDrain(const Backend* b) {
  return b->last_check_reason == "removed by reload" || b->last_check_reason == "dns: address gone";
}

// Every admin JSON answer goes through here: bytes that are not UTF-8 (a
// %ff in a query, a pin read from Redis) become U+FFFD instead of throwing.
std::string jsonText(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

AdminLimits adminLimits(const conf::Config& c) {
  return AdminLimits{c.admin.max_connections, c.timeouts.request_header,
                     c.timeouts.downstream_idle};
}

std::string hostHeader(const conf::BackendConf& bc) {
  const std::string& h = bc.address.host;
  std::string host = h.find(':') != std::string::npos ? "[" + h + "]" : h;
  return host + ":" + std::to_string(bc.address.port);
}

}  // namespace

// Re-resolves one backend URL's DNS name every resolve_interval, off the
// loop (uv_getaddrinfo runs in libuv's thread pool). Every address returned
// is a backend; an address that disappears is drained.
struct Server::Resolver {
  Server* server;
  std::size_t config_index;
  conf::BackendConf bc;
  uv_timer_t timer;
  uv_getaddrinfo_t req;
  bool busy = false;
  bool stopped = false;

  void schedule() {
    if (stopped || bc.resolve_interval <= 0) return;
    uv_timer_start(&timer, [](uv_timer_t* t) { static_cast<Resolver*>(t->data)->resolve(); },
                   static_cast<std::uint64_t>(bc.resolve_interval), 0);
  }

  void resolve() {
    if (busy || stopped) return;
    busy = true;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    req.data = this;
    std::string port = std::to_string(bc.address.port);
    int rc = uv_getaddrinfo(uv_default_loop() == nullptr ? nullptr : timer.loop, &req, onResolved,
                            bc.address.host.c_str(), port.c_str(), &hints);
    if (rc != 0) {
      busy = false;
      log::warn("resolve failed", {{"backend", bc.url}, {"error", uv_strerror(rc)}});
      schedule();
    }
  }

  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
    Resolver* r = static_cast<Resolver*>(req->data);
    r->busy = false;
    if (r->stopped) {
      uv_freeaddrinfo(res);
      return;
    }
    if (status != 0) {
      // Keep the last good answer: a DNS hiccup must not empty the pool.
      log::warn("resolve failed", {{"backend", r->bc.url}, {"error", uv_strerror(status)}});
      uv_freeaddrinfo(res);
      r->schedule();
      return;
    }
    std::set<std::string> seen;
    for (addrinfo* a = res; a; a = a->ai_next) {
      std::string name = formatAddress(a->ai_addr);
      if (!seen.insert(name).second) continue;
      Backend* b = r->server->rt_.backends.findByName(name);
      if (!b) {
        r->server->addBackend(r->config_index, r->bc, a->ai_addr, a->ai_addrlen);
      } else if (b->state.load() == BackendState::kRemoved || (b->admin_drain.load() && b->config_index == r->config_index && b->last_check_reason == "dns: address gone")) {
        if (b->state.load() == BackendState::kRemoved) b->state.store(BackendState::kUnknown);
        if (!r->server->sharedDrain(b)) setDrain(r->server->rt_.metrics, b, false);
        log::info("backend address back", {{"backend", name}, {"url", r->bc.url}});
      }
    }
    uv_freeaddrinfo(res);
    std::size_t n = r->server->rt_.backends.size();
    for (std::size_t i = 0; i < n; ++i) {
      Backend* b = r->server->rt_.backends.at(i);
      if (b->url != r->bc.url || seen.count(b->name) || b->admin_drain.load()) continue;
      setDrain(r->server->rt_.metrics, b, true);
      b->last_check_reason = "dns: address gone";
      log::info("backend address gone: draining", {{"backend", b->name}, {"url", r->bc.url}});
    }
    r->schedule();
  }
};

Server::Server(std::vector<std::string> args, conf::EnvLookup env, std::shared_ptr<conf::Config> config)
    : args_(std::move(args)), env_(std::move(env)) {
  rt_.setConfig(config);
}

Server::~Server() = default;

Backend* Server::addBackend(std::size_t config_index, const conf::BackendConf& bc, const sockaddr* addr,
                            socklen_t len) {
  auto b = std::make_unique<Backend>();
  b->url = bc.url;
  b->name = formatAddress(addr);
  b->host_header = hostHeader(bc);
  std::memcpy(&b->addr, addr, len);
  b->addr_len = len;
  b->config_index = static_cast<std::uint32_t>(config_index);
  b->weight.store(bc.weight);
  Backend* added = rt_.backends.add(std::move(b));
  if (!added) {
    log::error("too many backends", {{"max", static_cast<std::uint64_t>(balancer::BackendTable::kMaxBackends)}});
    return nullptr;
  }
  metrics::BackendMetrics& bm = rt_.metrics.addBackend(added->id, added->name);
  bm.setState(static_cast<int>(BackendState::kUnknown));
  bm.weight.set(static_cast<std::int64_t>(bc.weight));
  log::info("backend added", {{"backend", added->name}, {"url", added->url}, {"id", added->id}});
  if (health_) health_->add(added, rt_.config()->health);
  if (admin_sync_) admin_sync_->added(added);
  return added;
}

std::string Server::addBackendsFor(std::size_t config_index, const conf::BackendConf& bc) {
  if (isIpLiteral(bc.address.host)) {
    sockaddr_storage ss{};
    if (uv_ip4_addr(bc.address.host.c_str(), bc.address.port, reinterpret_cast<sockaddr_in*>(&ss)) != 0)
      uv_ip6_addr(bc.address.host.c_str(), bc.address.port, reinterpret_cast<sockaddr_in6*>(&ss));
    addBackend(config_index, bc, reinterpret_cast<sockaddr*>(&ss),
               ss.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in));
    return {};
  }
  // A DNS name: resolved now (start-up may block), then again every
  // resolve_interval off the loop.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(bc.address.port);
  int rc = getaddrinfo(bc.address.host.c_str(), port.c_str(), &hints, &res);
  if (rc == 0) {
    std::set<std::string> seen;
    for (addrinfo* a = res; a; a = a->ai_next) {
      if (!seen.insert(formatAddress(a->ai_addr)).second) continue;
      addBackend(config_index, bc, a->ai_addr, a->ai_addrlen);
    }
    freeaddrinfo(res);
  } else {
    log::warn("resolve failed", {{"backend", bc.url}, {"error", gai_strerror(rc)}});
  }
  auto r = std::make_unique<Resolver>();
  r->server = this;
  r->config_index = config_index;
  r->bc = bc;
  uv_timer_init(workers_[0]->loop(), &r->timer);
  r->timer.data = r.get();
  resolvers_.push_back(std::move(r));
  return {};
}

void Server::startResolvers() {
  for (auto& r : resolvers_) r->schedule();
}

std::optional<UpgradePlan> Server::takeInherited(const conf::Config& cfg, std::vector<std::string>* errors) {
  std::optional<std::string> fds_text = env_(kUpgradeFdsEnv);
  std::optional<std::string> ready_text = env_(kUpgradeReadyEnv);
  // Not for this process's own successor, which gets its own.
  unsetenv(kUpgradeFdsEnv);
  unsetenv(kUpgradeReadyEnv);
  if (!fds_text && !ready_text) return std::nullopt;
  std::string why;
  if (ready_text) {
    std::optional<int> fd = parseUpgradeReadyFd(*ready_text, &why);
    if (!fd) {
      errors->push_back(std::string(kUpgradeReadyEnv) + ": " + why);
    } else if (fcntl(*fd, F_SETFD, FD_CLOEXEC) != 0) {
      errors->push_back(std::string(kUpgradeReadyEnv) + ": descriptor " + *ready_text + ": " + std::strerror(errno));
    } else {
      ready_fd_ = *fd;
    }
  }
  std::vector<InheritedFd> inherited;
  if (fds_text) {
    std::optional<std::vector<InheritedFd>> parsed = parseUpgradeFds(*fds_text, &why);
    if (!parsed) {
      errors->push_back(std::string(kUpgradeFdsEnv) + ": " + why);
      return std::nullopt;
    }
    inherited = std::move(*parsed);
  }
  for (InheritedFd& f : inherited) {
    std::string at = std::string(kUpgradeFdsEnv) + ": descriptor " + std::to_string(f.fd) + ": ";
    int type = 0, listening = 0, reuse = 0;
    socklen_t len = sizeof type;
    sockaddr_storage ss{};
    socklen_t ss_len = sizeof ss;
    if (f.fd == ready_fd_) {
      errors->push_back(at + "is the ready descriptor");
    } else if (fcntl(f.fd, F_SETFD, FD_CLOEXEC) != 0) {
      errors->push_back(at + std::strerror(errno));
    } else if (getsockopt(f.fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM) {
      errors->push_back(at + "not a stream socket");
    } else if (len = sizeof listening;
               getsockopt(f.fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) {
      errors->push_back(at + "not a listening socket");
    } else if (getsockname(f.fd, reinterpret_cast<sockaddr*>(&ss), &ss_len) != 0 ||
               (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
      errors->push_back(at + "not an IP socket");
    } else {
      len = sizeof reuse;
      getsockopt(f.fd, SOL_SOCKET, SO_REUSEPORT, &reuse, &len);
      f.reuse_port = reuse != 0;
      f.bound = formatAddress(reinterpret_cast<sockaddr*>(&ss));
    }
  }
  if (!errors->empty()) return std::nullopt;
  std::vector<std::string> listeners;
  for (const conf::Listener& l : cfg.listeners) listeners.push_back(l.address.str());
  UpgradePlan plan = planUpgrade(inherited, listeners, cfg.admin.address.str(), cfg.workers);
  log::info("upgrade: taking the listening sockets over",
            {{"inherited", static_cast<std::uint64_t>(inherited.size())},
             {"unused", static_cast<std::uint64_t>(plan.unused.size())}});
  return plan;
}

int Server::run() {
  conf::ConfigPtr cfg = rt_.config();
  signal(SIGPIPE, SIG_IGN);
  {
    // The binary to start on SIGUSR2: read now, for a package upgrade
    // replaces the file (and the link would then name a deleted one).
    char exe[4096];
    std::size_t len = sizeof exe;
    if (uv_exepath(exe, &len) == 0) exe_path_.assign(exe, len);
  }
  std::vector<std::string> inherit_errors;
  std::optional<UpgradePlan> plan = takeInherited(*cfg, &inherit_errors);
  if (!inherit_errors.empty()) {
    for (const std::string& e : inherit_errors) log::error("cannot start", {{"error", e}});
    return static_cast<int>(conf::ExitCode::kCannotStart);
  }
  std::vector<std::string> tls_errors;
  rt_.setTls(loadListenerTls(*cfg, &tls_errors));
  rt_.setBackendTls(loadBackendTls(*cfg, &tls_errors));
  redisTlsContext(cfg->affinity, &tls_errors);  // rediss://: loaded once, for every worker's store
  if (!tls_errors.empty()) {
    for (const std::string& e : tls_errors) log::error("cannot start", {{"error", e}});
    return static_cast<int>(conf::ExitCode::kCannotStart);
  }

  if (cfg->access_log.enabled) {
    if (std::string e = rt_.access_log.use(cfg->access_log.path); !e.empty()) {
      log::error("cannot start", {{"error", e}});
      return static_cast<int>(conf::ExitCode::kCannotStart);
    }
  }
  rt_.memory_pins = std::make_unique<SharedMemoryPins>(cfg->affinity.memory_max_entries);
  for (std::uint32_t i = 0; i < cfg->workers; ++i) workers_.push_back(std::make_unique<Worker>(rt_, i));
  uv_loop_t* loop = workers_[0]->loop();
  health_ = std::make_unique<HealthChecker>(loop, rt_.metrics);
  health_->setTls([this](const Backend& b) { return rt_.backendTls(b.config_index); });
  health_->setOnDown([this](Backend* b) {
    for (auto& w : workers_) w->requestTunnelDrain(b->id);
  });

  for (std::size_t i = 0; i < cfg->backends.size(); ++i) addBackendsFor(i, cfg->backends[i]);

  std::vector<std::string> bound;
  const UpgradePlan* p = plan ? &*plan : nullptr;
  // A new process of an upgrade accepts once it can serve (announceReady).
  bool defer = p != nullptr;
  std::string err = workers_[0]->bind(*cfg, &bound, nullptr, p, defer);
  for (std::size_t i = 1; i < workers_.size() && err.empty(); ++i) err = workers_[i]->bind(*cfg, nullptr, &bound, p, defer);
  std::string admin_bound;
  admin_ = std::make_unique<AdminServer>(loop, [this](const AdminRequest& q, AdminResponse& r) { handleAdmin(q, r); });
  admin_->setLimits(adminLimits(*cfg));
  if (err.empty()) err = admin_->listen(cfg->admin.address.host, cfg->admin.address.port, &admin_bound, p ? p->admin : -1);
  if (!err.empty()) {
    log::error("cannot start", {{"error", err}});
    health_->stop();
    admin_->close();
    for (auto& r : resolvers_) uv_close(reinterpret_cast<uv_handle_t*>(&r->timer), nullptr);
    // Closed before any loop turns: an inherited socket's queue stays whole
    // for the old process, which keeps serving.
    for (auto& w : workers_) w->closeListeners();
    for (auto& w : workers_) {
      w->requestStop();
      uv_run(w->loop(), UV_RUN_NOWAIT);
    }
    for (auto& w : workers_) uv_run(w->loop(), UV_RUN_DEFAULT);
    return static_cast<int>(conf::ExitCode::kCannotStart);
  }
  if (plan) {
    for (int fd : plan->unused) ::close(fd);  // listeners the new configuration dropped
  }
  for (const std::string& b : bound) log::info("listening", {{"kind", "proxy"}, {"address", b}});
  log::info("listening", {{"kind", "admin"}, {"address", admin_bound}});
  rt_.listening = true;
  startAdminSync(admin_bound);

  uv_signal_init(loop, &sig_term_);
  uv_signal_init(loop, &sig_int_);
  uv_signal_init(loop, &sig_hup_);
  uv_signal_init(loop, &sig_usr1_);
  uv_signal_init(loop, &sig_usr2_);
  sig_term_.data = sig_int_.data = sig_hup_.data = sig_usr1_.data = sig_usr2_.data = this;
  uv_signal_start(&sig_term_, onSignal, SIGTERM);
  uv_signal_start(&sig_int_, onSignal, SIGINT);
  uv_signal_start(&sig_hup_, onSignal, SIGHUP);
  uv_signal_start(&sig_usr1_, onSignal, SIGUSR1);
  uv_signal_start(&sig_usr2_, onSignal, SIGUSR2);
  uv_timer_init(loop, &grace_timer_);
  grace_timer_.data = this;
  uv_timer_init(loop, &watchdog_timer_);
  watchdog_timer_.data = this;
  uv_async_init(loop, &drained_async_, [](uv_async_t* a) {
    Server* s = static_cast<Server*>(a->data);
    if (s->drained_workers_.load() == s->workers_.size()) s->finishStop();
  });
  drained_async_.data = this;
  for (auto& w : workers_) {
    w->setOnDrained([this] {
      drained_workers_.fetch_add(1);
      uv_async_send(&drained_async_);
    });
  }

  startResolvers();
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    threads_.emplace_back([w] { w->run(); });
  }

#ifdef TETHER_HAVE_SYSTEMD
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    watchdog_ = true;
    // A new process of an upgrade is not systemd's main process until the
    // old one names it: its first ping waits a period (the old one pings
    // until then).
    std::uint64_t period = usec / 2000;
    uv_timer_start(&watchdog_timer_, [](uv_timer_t*) { sd_notify(0, "WATCHDOG=1"); },
                   ready_fd_ >= 0 ? period : 0, period);
  }
#endif
  uv_timer_init(loop, &ready_timer_);
  ready_timer_.data = this;
  if (plan) {
    // Until every backend has had its first health check, this process
    // would answer 503 where the old one serves: it waits for them, within
    // the old one's timeouts.upgrade, and accepts only then.
    uv_timer_start(&ready_timer_, [](uv_timer_t* t) {
      Server* s = static_cast<Server*>(t->data);
      if (s->stopping_) {
        uv_timer_stop(t);  // never ready: the old process sees this one exit
        return;
      }
      std::size_t n = s->rt_.backends.size();
      for (std::size_t i = 0; i < n; ++i)
        if (s->rt_.backends.at(i)->state.load() == balancer::BackendState::kUnknown) return;
      uv_timer_stop(t);
      for (auto& w : s->workers_) w->requestListen();
      s->announceReady();
    }, 0, 10);
  } else {
    announceReady();
  }
  log::info("started", {{"version", TETHER_VERSION}, {"workers", cfg->workers},
                        {"backends", static_cast<std::uint64_t>(rt_.backends.size())},
                        {"pid", static_cast<std::int64_t>(getpid())}});
  workers_[0]->run();
  for (auto& t : threads_) t.join();
  // Every loop is done; close what is left on each (nothing should be).
  for (auto& w : workers_) uv_run(w->loop(), UV_RUN_NOWAIT);
  log::info("stopped", {});
  return 0;
}

void Server::onSignal(uv_signal_t* s, int signum) {
  Server* self = static_cast<Server*>(s->data);
  if (signum == SIGHUP) {
    self->reload();
  } else if (signum == SIGUSR1) {
    self->reopenAccessLog();
  } else if (signum == SIGUSR2) {
    self->startUpgrade("SIGUSR2");
  } else {
    self->beginStop(signum == SIGTERM ? "SIGTERM" : "SIGINT");
  }
}

void Server::notify(const char* state) {
#ifdef TETHER_HAVE_SYSTEMD
  // Once handed over, the new process is the service to systemd: nothing
  // this one could say (STOPPING=1 above all) is about the service any more.
  if (upgrade_ == Upgrade::kHandedOff) return;
  sd_notify(0, state);
#else
  (void)state;
#endif
}

void Server::beginStop(const char* why) {
  if (stopping_) {
    // A second signal: stop waiting.
    log::warn("stopping now", {{"signal", why}});
    for (auto& w : workers_) w->requestForceStop();
    return;
  }
  stopping_ = true;
  if (upgrade_ == Upgrade::kStarting && successor_) successor_->abandon("tether is stopping");
  if (upgrade_ == Upgrade::kHandedOff) {
    // Already draining after a hand-over, its grace running: the tunnels get
    // their 1001 now, as on any SIGTERM.
    log::info("stopping", {{"signal", why}, {"after", "upgrade"}});
    for (auto& w : workers_) w->requestStop();
    return;
  }
  rt_.stopping = true;
  notify("STOPPING=1");
  const conf::Config& cfg = *rt_.config();
  log::info("stopping", {{"signal", why}, {"grace_ms", cfg.timeouts.shutdown_grace}});
  uv_timer_start(&grace_timer_, [](uv_timer_t* t) {
    Server* s = static_cast<Server*>(t->data);
    log::warn("shutdown grace over: closing what is left", {});
    for (auto& w : s->workers_) w->requestForceStop();
  }, static_cast<std::uint64_t>(cfg.timeouts.shutdown_grace), 0);
  stopBackground();
  for (auto& w : workers_) w->requestStop();
}

void Server::stopBackground() {
  health_->stop();
  for (auto& r : resolvers_) {
    r->stopped = true;
    uv_timer_stop(&r->timer);
  }
}

// ---------------------------------------------------------------------------
// Binary upgrade (proxy/upgrade.h)

bool Server::startUpgrade(const char* why) {
  if (upgrade_ != Upgrade::kNone) {
    log::warn("upgrade refused: one is in progress",
              {{"signal", why}, {"pid", static_cast<std::int64_t>(successor_pid_)},
               {"state", upgrade_ == Upgrade::kStarting ? "starting" : "handed over"}});
    return false;
  }
  if (stopping_) {
    log::warn("upgrade refused: stopping", {{"signal", why}});
    return false;
  }
  if (ready_fd_ >= 0) {
    log::warn("upgrade refused: this process is itself starting from an upgrade", {{"signal", why}});
    return false;
  }
  const conf::Config& cfg = *rt_.config();
  // Every socket of a listener, in worker order; then the admin one.
  std::vector<Successor::Socket> sockets;
  for (std::size_t i = 0; i < cfg.listeners.size(); ++i) {
    for (auto& w : workers_) {
      for (const Worker::Listening& l : w->listening())
        if (l.index == i) sockets.push_back({InheritedFd::Kind::kProxy, l.address, l.fd});
    }
  }
  if (int fd = admin_->listeningFd(); fd >= 0)
    sockets.push_back({InheritedFd::Kind::kAdmin, cfg.admin.address.str(), fd});
  std::string error = exe_path_.empty() ? "the path of this binary is unknown" : "";
  if (error.empty()) {
    successor_ = Successor::start(
        workers_[0]->loop(), exe_path_, args_, sockets, cfg.timeouts.upgrade,
        [this](bool ok, const std::string& why) { upgradeDone(ok, why); }, &error);
  }
  if (!successor_) {
    rt_.metrics.upgrades_failed.inc();
    log::error("upgrade failed: the running process keeps serving", {{"signal", why}, {"error", error}});
    return false;
  }
  upgrade_ = Upgrade::kStarting;
  successor_pid_ = successor_->pid();
  log::info("upgrade: new process started", {{"signal", why}, {"binary", exe_path_},
                                              {"pid", static_cast<std::int64_t>(successor_pid_)},
                                              {"sockets", static_cast<std::uint64_t>(sockets.size())},
                                              {"timeout_ms", cfg.timeouts.upgrade}});
  return true;
}

void Server::upgradeDone(bool ok, const std::string& why) {
  successor_ = nullptr;  // it frees itself
  if (ok && !stopping_) {
    handOff(successor_pid_);
    return;
  }
  upgrade_ = Upgrade::kNone;
  rt_.metrics.upgrades_failed.inc();
  log::error("upgrade failed: the running process keeps serving",
             {{"pid", static_cast<std::int64_t>(successor_pid_)}, {"error", ok ? "tether is stopping" : why}});
  if (upgrade_reloading_) {
    upgrade_reloading_ = false;
    if (!stopping_) notify("READY=1");
  }
}

// The new process serves on the same sockets: stop accepting (their queues
// stay open in the new process, which takes what waits in them), let what is
// in flight finish, then exit 0.
void Server::handOff(int pid) {
#ifdef TETHER_HAVE_SYSTEMD
  // Said while this process is still the main one, so that NotifyAccess=main
  // accepts it; the new one's own notifications count from here on.
  std::string msg = "MAINPID=" + std::to_string(pid) + "\nREADY=1";
  sd_notify(0, msg.c_str());
#endif
  upgrade_ = Upgrade::kHandedOff;
  upgrade_reloading_ = false;
  rt_.metrics.upgrades_ok.inc();
  uv_timer_stop(&watchdog_timer_);
  const conf::Config& cfg = *rt_.config();
  log::info("upgrade: new process ready, handing over",
            {{"pid", static_cast<std::int64_t>(pid)}, {"grace_ms", cfg.timeouts.shutdown_grace}});
  rt_.stopping = true;
  admin_->stopListening();
  stopBackground();
  for (auto& w : workers_) w->requestHandOff();
  uv_timer_start(&grace_timer_, [](uv_timer_t* t) {
    Server* s = static_cast<Server*>(t->data);
    const conf::Config& c = *s->rt_.config();
    log::warn("shutdown grace over: closing what is left", {{"after", "upgrade"}});
    for (auto& w : s->workers_) w->requestGraceOver();
    // The tunnels have had their 1001: the close handshakes get their time.
    uv_timer_start(t, [](uv_timer_t* t2) {
      Server* s2 = static_cast<Server*>(t2->data);
      for (auto& w : s2->workers_) w->requestForceStop();
    }, static_cast<std::uint64_t>(c.timeouts.websocket_close + c.timeouts.websocket_close_spread), 0);
  }, static_cast<std::uint64_t>(cfg.timeouts.shutdown_grace), 0);
}

// The READY=1 of a start. A new process of an upgrade tells the old one
// instead, which names it to systemd (handOff).
void Server::announceReady() {
  if (ready_fd_ < 0) {
    notify("READY=1");
    return;
  }
  std::string_view line = kUpgradeReadyLine;
  ssize_t n;
  do {
    n = ::write(ready_fd_, line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(line.size()))
    log::warn("upgrade: could not tell the old process that this one is ready",
              {{"error", n < 0 ? std::strerror(errno) : "short write"}});
  ::close(ready_fd_);
  ready_fd_ = -1;
}

std::string Server::upgradeJson() const {
  const char* state = upgrade_ == Upgrade::kNone ? "idle" : upgrade_ == Upgrade::kStarting ? "starting" : "handed over";
  nlohmann::json j = {{"pid", static_cast<std::int64_t>(getpid())}, {"binary", exe_path_}, {"state", state},
                      {"ok", rt_.metrics.upgrades_ok.value()}, {"failed", rt_.metrics.upgrades_failed.value()}};
  j["new_pid"] = upgrade_ == Upgrade::kNone ? nlohmann::json(nullptr) : nlohmann::json(successor_pid_);
  return jsonText(j, 2);
}

void Server::finishStop() {
  if (stopped_) return;
  stopped_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&grace_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&drained_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig_term_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig_int_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig_hup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig_usr1_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sig_usr2_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&ready_timer_), nullptr);
  for (auto& r : resolvers_) uv_close(reinterpret_cast<uv_handle_t*>(&r->timer), nullptr);
  while (!drain_deadlines_.empty()) closeDrainDeadline(drain_deadlines_.begin()->second);
  if (admin_sync_) admin_sync_->close();
  // Every admin connection too: an idle one would otherwise keep the loop,
  // and the process, alive past shutdown_grace.
  admin_->close();
}

// SIGUSR1, after logrotate renamed the file: lines go to a new one of the same
// name. A worker's lines still buffered at this moment land in the new file.
void Server::reopenAccessLog() {
  const std::string& path = rt_.access_log.path();
  if (path.empty()) {
    log::info("access log reopen: nothing to do", {{"path", "stdout"}});
    return;
  }
  if (std::string e = rt_.access_log.reopen(); !e.empty()) {
    log::error("access log reopen failed: the old file stays", {{"error", e}});
    return;
  }
  log::info("access log reopened", {{"path", path}});
}

void Server::startDrainDeadline(std::uint32_t id, std::int64_t delay_ms) {
  if (stopped_) return;
  cancelDrainDeadline(id);
  // Closed by finishStop() if tether stops first, so that it never holds the loop.
  auto* d = new DrainDeadline{{}, this, id};
  uv_timer_init(workers_[0]->loop(), &d->timer);
  d->timer.data = d;
  drain_deadlines_[id] = d;
  uv_timer_start(&d->timer, [](uv_timer_t* t) {
    auto* d = static_cast<DrainDeadline*>(t->data);
    // After the deadline, tunnels still open to it get close frames 1001.
    if (d->server->rt_.backends.at(d->id)->admin_drain.load())
      for (auto& w : d->server->workers_) w->requestTunnelDrain(d->id);
    d->server->closeDrainDeadline(d);
  }, static_cast<std::uint64_t>(std::max<std::int64_t>(delay_ms, 0)), 0);
}

void Server::cancelDrainDeadline(std::uint32_t id) {
  auto it = drain_deadlines_.find(id);
  if (it != drain_deadlines_.end()) closeDrainDeadline(it->second);
}

void Server::closeDrainDeadline(DrainDeadline* d) {
  drain_deadlines_.erase(d->id);
  uv_timer_stop(&d->timer);
  uv_close(reinterpret_cast<uv_handle_t*>(&d->timer),
           [](uv_handle_t* h) { delete static_cast<DrainDeadline*>(h->data); });
}

void Server::startAdminSync(const std::string& admin_bound) {
  const conf::Config& cfg = *rt_.config();
  if (!cfg.affinity.redis) return;  // the memory store: admin changes stay with this tether
  AdminSync::Options o;
  o.url = *cfg.affinity.redis;
  std::vector<std::string> errors;
  o.tls = redisTlsContext(cfg.affinity, &errors);  // loaded and checked by run() already
  o.connect_timeout_ms = std::max<std::int64_t>(cfg.timeouts.connect, 1);
  o.reply_timeout_ms = cfg.affinity.redis_options.reply_timeout;
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = 0;
  o.by = std::string(host[0] ? host : "?") + " " + admin_bound;
  AdminSync::Locate locate;
  if (o.url.sentinels.empty()) {
    locate = [at = o.url.address] { return std::optional<conf::HostPort>(at); };
  } else {
    // The master worker 0's pin store follows (the same loop).
    locate = [w = workers_[0].get()] { return w->pins().server(); };
  }
  admin_sync_ = std::make_unique<AdminSync>(workers_[0]->loop(), std::move(o), std::move(locate), rt_.backends,
                                            static_cast<AdminSync::Target*>(this));
}

bool Server::sharedDrain(const Backend* b) const {
  if (!admin_sync_) return false;
  const balancer::KnownAdminState* k = admin_sync_->known(b->name);
  return k && k->state.has_drain && k->state.drain;
}

// Another tether's change read from Redis (or the state a tether finds at
// its start): the same effects as the POST, counted from the original request.
void Server::applySharedAdmin(Backend* b, const balancer::AdminState& now, const balancer::AdminState& before) {
  const std::string from = now.by.empty() ? "?" : now.by;
  if (!now.sameDrain(before) && now.has_drain) {
    if (now.drain) {
      if (!b->admin_drain.load()) log::info("backend draining", {{"backend", b->name}, {"by", "redis"}, {"from", from}});
      setDrain(rt_.metrics, b, true);
      if (now.deadline_ms) {
        startDrainDeadline(b->id, now.deadline_ms - wallClockMs());
      } else {
        cancelDrainDeadline(b->id);
      }
    } else {
      cancelDrainDeadline(b->id);
      if (b->admin_drain.load() && !structuralDrain(b)) {
        setDrain(rt_.metrics, b, false);
        log::info("backend enabled", {{"backend", b->name}, {"by", "redis"}, {"from", from}});
      }
    }
  }
  if (!now.sameWeight(before) && now.has_weight && b->weight.load() != now.weight) {
    setWeight(rt_.metrics, b, now.weight);
    log::info("backend weight", {{"backend", b->name}, {"weight", now.weight}, {"by", "redis"}, {"from", from}});
  }
}

Server::ReloadResult Server::reload() {
  if (upgrade_ != Upgrade::kNone) {
    // Starting: the new process reads the file itself. Handed over: the new
    // process is the one to reload.
    log::warn("reload refused: an upgrade is in progress",
              {{"pid", static_cast<std::int64_t>(successor_pid_)},
               {"state", upgrade_ == Upgrade::kStarting ? "starting" : "handed over"}});
    return ReloadResult::kRefused;
  }
  notify("RELOADING=1");
  auto refuse = [this](const std::vector<std::string>& errors) {
    for (const std::string& e : errors) log::error("reload refused", {{"error", e}});
    rt_.metrics.config_reloads_invalid.inc();
    notify("READY=1");
    return ReloadResult::kRefused;
  };
  conf::LoadResult r = conf::reload(args_, env_);
  if (!r.errors.empty() || !r.config) return refuse(r.errors);
  std::shared_ptr<conf::Config> next = r.config;
  conf::ConfigPtr prev = rt_.config();
  // Listeners, workers and the admin address are sockets and threads made
  // at start: a new process makes them, through the upgrade's hand-over.
  bool listeners_same = next->listeners.size() == prev->listeners.size();
  for (std::size_t i = 0; listeners_same && i < next->listeners.size(); ++i)
    listeners_same = next->listeners[i].address == prev->listeners[i].address &&
                     next->listeners[i].tls == prev->listeners[i].tls;
  if (!listeners_same || next->workers != prev->workers || !(next->admin.address == prev->admin.address)) {
    std::vector<std::string> tls_errors;
    loadListenerTls(*next, &tls_errors);
    loadBackendTls(*next, &tls_errors);
    if (!tls_errors.empty()) return refuse(tls_errors);
    log::info("reload: listeners, workers or the admin address changed: upgrading",
              {{"workers", next->workers}, {"listeners", static_cast<std::uint64_t>(next->listeners.size())},
               {"admin", next->admin.address.str()}});
    if (!startUpgrade("SIGHUP")) {
      notify("READY=1");
      return ReloadResult::kRefused;
    }
    upgrade_reloading_ = true;
    return ReloadResult::kUpgrading;
  }
  // Certificates are read again (a renewed one replaces the old for new
  // connections); one that cannot be loaded refuses the whole reload.
  std::vector<std::string> tls_errors;
  std::vector<std::shared_ptr<const TlsContext>> tls = loadListenerTls(*next, &tls_errors);
  std::vector<std::shared_ptr<const TlsClientContext>> backend_tls = loadBackendTls(*next, &tls_errors);
  if (!tls_errors.empty()) return refuse(tls_errors);
  if (next->access_log.enabled) {
    if (std::string e = rt_.access_log.use(next->access_log.path); !e.empty()) return refuse({e});
  }
  rt_.setTls(std::move(tls));
  rt_.setBackendTls(std::move(backend_tls));
  if (!next->log_format_explicit) next->log_format = prev->log_format;
  rt_.setConfig(next);
  log::setLevel(next->log_level);
  admin_->setLimits(adminLimits(*next));
  health_->setConfig(next->health);

  // Backends: new URLs are added (unknown until checked), vanished ones drained.
  std::set<std::string> urls;
  for (std::size_t i = 0; i < next->backends.size(); ++i) {
    const conf::BackendConf& bc = next->backends[i];
    urls.insert(bc.url);
    bool known = false;
    std::size_t n = rt_.backends.size();
    for (std::size_t k = 0; k < n; ++k) {
      Backend* b = rt_.backends.at(k);
      if (b->url != bc.url) continue;
      known = true;
      // A weight shared through Redis outlives a reload, as a drain does.
      const balancer::KnownAdminState* shared = admin_sync_ ? admin_sync_->known(b->name) : nullptr;
      setWeight(rt_.metrics, b, shared && shared->state.has_weight ? shared->state.weight : bc.weight);
      if (b->admin_drain.load() && b->last_check_reason == "removed by reload") {
        if (!sharedDrain(b)) setDrain(rt_.metrics, b, false);
        b->last_check_reason.clear();
      }
    }
    if (!known) addBackendsFor(i, bc);
  }
  std::size_t n = rt_.backends.size();
  for (std::size_t k = 0; k < n; ++k) {
    Backend* b = rt_.backends.at(k);
    if (urls.count(b->url) || b->admin_drain.load()) continue;
    setDrain(rt_.metrics, b, true);
    b->last_check_reason = "removed by reload";
    log::info("backend removed by reload: draining", {{"backend", b->name}, {"url", b->url}});
  }
  startResolvers();
  for (auto& w : workers_) w->requestConfigUpdate();
  rt_.metrics.config_reloads_ok.inc();
  log::info("reloaded", {{"source", next->source}});
  notify("READY=1");
  return ReloadResult::kApplied;
}

bool Server::ready() const {
  if (!rt_.listening || rt_.stopping) return false;
  if (admin_sync_ && !admin_sync_->settled()) return false;
  std::int64_t now = Worker::nowWallMs();
  std::size_t n = rt_.backends.size();
  for (std::size_t i = 0; i < n; ++i)
    if (rt_.backends.at(i)->available(now)) return true;
  return false;
}

std::string Server::backendsJson() const {
  nlohmann::json arr = nlohmann::json::array();
  std::size_t n = rt_.backends.size();
  for (std::size_t i = 0; i < n; ++i) {
    const Backend* b = rt_.backends.at(i);
    BackendState s = b->state.load();
    const char* state = balancer::toString(s);
    if (b->admin_drain.load() && s != BackendState::kRemoved) state = "draining";
    nlohmann::json j = {
        {"id", b->id},
        {"url", b->url},
        {"address", b->name},
        {"state", state},
        {"health", balancer::toString(s)},
        {"weight", b->weight.load()},
        {"active_requests", b->active_requests.load()},
        {"active_tunnels", b->active_tunnels.load()},
        {"connections", b->connections.load()},
        {"ejected", b->ejected.load()},
    };
    if (admin_sync_) {
      // Where its admin state comes from: null while nobody changed it (the
      // configuration's), else the shared state this tether applies.
      const balancer::KnownAdminState* k = admin_sync_->known(b->name);
      if (!k) {
        j["shared"] = nullptr;
      } else {
        nlohmann::json sh = {{"version", k->state.version}, {"by", k->state.by},
                             {"pending", k->drain_pending || k->weight_pending}};
        if (k->state.has_drain) {
          sh["drain"] = k->state.drain;
          sh["drain_ms"] = k->state.drain_ms;
          sh["deadline_ms"] = k->state.deadline_ms ? nlohmann::json(k->state.deadline_ms) : nlohmann::json(nullptr);
        }
        if (k->state.has_weight) {
          sh["weight"] = k->state.weight;
          sh["weight_ms"] = k->state.weight_ms;
        }
        j["shared"] = std::move(sh);
      }
    }
    std::int64_t last = b->last_check_ms.load();
    if (last) {
      j["last_check"] = {{"time_ms", last}, {"status", b->last_check_status.load()}, {"result", b->last_check_reason}};
    } else {
      j["last_check"] = nullptr;
    }
    arr.push_back(std::move(j));
  }
  return jsonText(arr, 2);
}

namespace {

std::string queryValue(const std::string& query, const std::string& name) {
  std::size_t p = 0;
  while (p <= query.size()) {
    std::size_t q = query.find('&', p);
    if (q == std::string::npos) q = query.size();
    std::string part = query.substr(p, q - p);
    std::size_t eq = part.find('=');
    if (part.substr(0, eq) == name) return eq == std::string::npos ? "" : part.substr(eq + 1);
    p = q + 1;
  }
  return {};
}

std::string percentDecode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16));
      i += 2;
    } else {
      out += s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

}  // namespace

// Where a key is pinned and why: for an operator following one user.
std::string Server::affinityJson(const std::string& key) {
  const conf::Config& cfg = *rt_.config();
  std::string store_key = balancer::pinStoreKey(key);
  Worker& w = *workers_[0];
  nlohmann::json j = {{"key", key}, {"store_key", store_key}, {"store", w.pins().kind()},
                      {"store_up", w.pins().up()}};
  std::optional<std::string> pinned;
  std::string source = "local";
  // Over TLS (this blocking client speaks none) or with no master known,
  // the store's local view is shown instead.
  const conf::RedisUrl* url = cfg.affinity.redis ? &*cfg.affinity.redis : nullptr;
  std::optional<conf::HostPort> redis_at;
  if (url) redis_at = url->sentinels.empty() ? std::optional(url->address) : w.pins().server();
  if (url && url->tls) j["store_error"] = "not asked directly over TLS: the local view is shown";
  if (url && !url->tls && !redis_at) j["store_error"] = "no master known: the local view is shown";
  if (url && !url->tls && redis_at) {
    // Ask Redis itself (briefly blocking: an operator's request, not traffic):
    // the server of the URL, or the master the store follows.
    const conf::RedisUrl& u = *url;
    timeval tv{0, 200'000};
    redisContext* c = redisConnectWithTimeout(redis_at->host.c_str(), redis_at->port, tv);
    if (c && !c->err) {
      redisSetTimeout(c, tv);
      if (!u.password.empty()) {
        auto* a = static_cast<redisReply*>(u.username.empty() ? redisCommand(c, "AUTH %b", u.password.data(), u.password.size())
                                                              : redisCommand(c, "AUTH %b %b", u.username.data(), u.username.size(), u.password.data(), u.password.size()));
        if (a) freeReplyObject(a);
      }
      if (u.db) {
        auto* a = static_cast<redisReply*>(redisCommand(c, "SELECT %d", u.db));
        if (a) freeReplyObject(a);
      }
      auto* r = static_cast<redisReply*>(redisCommand(c, "GET %b", store_key.data(), store_key.size()));
      auto* t = static_cast<redisReply*>(redisCommand(c, "PTTL %b", store_key.data(), store_key.size()));
      if (r && r->type == REDIS_REPLY_STRING) pinned = std::string(r->str, r->len);
      if (t && t->type == REDIS_REPLY_INTEGER) j["ttl_ms"] = t->integer;
      source = "redis";
      if (r) freeReplyObject(r);
      if (t) freeReplyObject(t);
    } else {
      j["store_error"] = c ? c->errstr : "cannot connect";
    }
    if (c) redisFree(c);
  }
  if (!pinned && source == "local") pinned = w.pins().peek(store_key);
  std::int64_t now = Worker::nowWallMs();
  if (pinned) {
    Backend* b = rt_.backends.findByName(*pinned);
    bool ok = b && b->available(now);
    j["pinned"] = {{"backend", *pinned}, {"from", source}, {"backend_state", b ? balancer::toString(b->state.load()) : "gone"},
                   {"draining", b ? b->admin_drain.load() : false}, {"honoured", ok}};
    j["why"] = ok ? "pinned, and its backend takes traffic"
                  : (cfg.affinity.on_target_down == conf::OnTargetDown::kStrict ? "pinned, backend unavailable: strict answers 503"
                                                                                 : "pinned, backend unavailable: the next request re-pins");
  } else {
    j["pinned"] = nullptr;
    j["why"] = "not pinned: the next request is placed by consistent hashing";
  }
  Backend* placed = w.placeByHash(balancer::hashKey(key), {});
  j["hash_placement"] = placed ? placed->name : "none available";
  return jsonText(j, 2);
}

void Server::handleAdmin(const AdminRequest& req, AdminResponse& res) {
  const conf::Config& cfg = *rt_.config();
  auto json = [&res](int status, const std::string& body) {
    res.status = status;
    res.content_type = "application/json";
    res.body = body;
  };
  auto error = [&json](int status, const std::string& message) {
    json(status, jsonText(nlohmann::json{{"error", message}}));
  };
  bool get = req.method == "GET" || req.method == "HEAD";
  if (req.path == "/metrics") {
    if (!get) return error(405, "use GET");
    res.content_type = metrics::Metrics::kContentType;
    res.body = rt_.metrics.scrape();
    return;
  }
  if (req.path == "/healthz") {
    if (!get) return error(405, "use GET");
    res.body = "ok\n";
    return;
  }
  if (req.path == "/readyz") {
    if (!get) return error(405, "use GET");
    bool ok = ready();
    res.status = ok ? 200 : 503;
    if (ok) {
      res.body = "ready\n";
    } else if (rt_.stopping) {
      res.body = "stopping\n";
    } else if (admin_sync_ && !admin_sync_->settled()) {
      res.body = "admin state not read from redis yet\n";
    } else {
      res.body = "no backend up\n";
    }
    return;
  }
  if (req.path == "/admin/backends") {
    if (!get) return error(405, "use GET");
    return json(200, backendsJson());
  }
  if (req.path == "/admin/affinity") {
    if (!get) return error(405, "use GET");
    std::string key = percentDecode(queryValue(req.query, "key"));
    if (key.empty()) return error(400, "key: expected ?key=SOURCE[:NAME]=value, e.g. cookie:tether_affinity=abc");
    return json(200, affinityJson(key));
  }
  if (req.path == "/admin/upgrade") {
    if (!get) return error(405, "use GET; SIGUSR2 upgrades");
    return json(200, upgradeJson());
  }
  if (req.path == "/admin/log" && get) {
    return json(200, jsonText(nlohmann::json{{"level", conf::toString(log::level())}}));
  }
  if (req.path.rfind("/admin/", 0) != 0) return error(404, "no such endpoint");

  // Everything else changes state: POST, and the token when one is set.
  if (req.method != "POST") return error(405, "use POST");
  if (!cfg.admin.token.empty()) {
    const std::string prefix = "Bearer ";
    // The scheme is case-insensitive (RFC 9110 section 11.1); the token is not.
    if (req.authorization.size() <= prefix.size() ||
        strncasecmp(req.authorization.c_str(), prefix.c_str(), prefix.size()) != 0) {
      res.extra_headers = "WWW-Authenticate: Bearer\r\n";
      return error(401, "missing bearer token");
    }
    std::string given = req.authorization.substr(prefix.size());
    bool same = given.size() == cfg.admin.token.size() &&
                CRYPTO_memcmp(given.data(), cfg.admin.token.data(), given.size()) == 0;
    if (!same) return error(403, "wrong token");
  } else if (!req.loopback_peer) {
    return error(403, "admin POST needs a token when not on loopback");
  }
  if (req.path == "/admin/log") {
    // The application log's level until the next reload, which applies the
    // configured one. The access log has no level: access_log.enabled.
    std::string wanted = queryValue(req.query, "level");
    std::optional<conf::LogLevel> level;
    for (conf::LogLevel l : {conf::LogLevel::kTrace, conf::LogLevel::kDebug, conf::LogLevel::kInfo,
                             conf::LogLevel::kWarn, conf::LogLevel::kError}) {
      if (wanted == conf::toString(l)) level = l;
    }
    if (!level) return error(400, "level: expected ?level=trace|debug|info|warn|error");
    conf::LogLevel previous = log::level();
    log::setLevel(*level);
    // At warn, so that the change shows at every level but error.
    log::warn("log level changed", {{"from", conf::toString(previous)},
                                    {"to", conf::toString(*level)},
                                    {"by", "admin"}});
    return json(200, jsonText(nlohmann::json{{"level", conf::toString(*level)},
                                             {"previous", conf::toString(previous)}}));
  }
  if (req.path == "/admin/reload") {
    ReloadResult rr = reload();
    if (rr == ReloadResult::kUpgrading) {
      // The new process applies it; GET /admin/upgrade follows it.
      return json(202, jsonText(nlohmann::json{{"reloaded", false}, {"upgrading", true},
                                               {"pid", successor_pid_}}));
    }
    return json(rr == ReloadResult::kApplied ? 200 : 400,
                jsonText(nlohmann::json{{"reloaded", rr == ReloadResult::kApplied}}));
  }
  if (req.path == "/admin/cache/purge") {
    // Every worker's stores (routes[].cache), on each worker's next loop turn.
    std::string prefix = percentDecode(queryValue(req.query, "prefix"));
    if (!prefix.empty() && prefix[0] != '/') return error(400, "prefix: expected ?prefix=/path/");
    for (auto& w : workers_) w->requestCachePurge(prefix);
    return json(200, jsonText(nlohmann::json{{"purged", true}, {"prefix", prefix}}));
  }
  // /admin/backends/{id}/{action}
  const std::string base = "/admin/backends/";
  if (req.path.rfind(base, 0) != 0) return error(404, "no such endpoint");
  std::string rest = req.path.substr(base.size());
  std::size_t slash = rest.find('/');
  if (slash == std::string::npos) return error(404, "no such endpoint");
  std::string id_text = rest.substr(0, slash);
  std::string action = rest.substr(slash + 1);
  char* end = nullptr;
  unsigned long id = std::strtoul(id_text.c_str(), &end, 10);
  if (id_text.empty() || *end != 0 || id >= rt_.backends.size()) return error(404, "no backend " + id_text);
  adminAction(req, res, rt_.backends.at(id), action);
}

// POST /admin/backends/{id}/drain|enable|weight: applied here at once and,
// with a Redis store, handed to every tether on it (AdminSync).
void Server::adminAction(const AdminRequest& req, AdminResponse& res, Backend* b, const std::string& action) {
  auto json = [&res](int status, nlohmann::json j) {
    res.status = status;
    res.content_type = "application/json";
    res.body = jsonText(j);
  };
  auto error = [&json](int status, const std::string& message) { json(status, {{"error", message}}); };
  const std::int64_t now = wallClockMs();
  // What the change becomes in the shared state (the aspects it names).
  const balancer::KnownAdminState* known = admin_sync_ ? admin_sync_->known(b->name) : nullptr;
  balancer::AdminState st = known ? known->state : balancer::AdminState{};
  bool drain_aspect = false, weight_aspect = false;
  nlohmann::json answer = {{"id", b->id}};
  if (action == "drain") {
    std::string deadline = queryValue(req.query, "deadline");
    std::optional<conf::Millis> ms;
    if (!deadline.empty() && !(ms = conf::parseDuration(deadline))) {
      return error(400, "deadline: not a duration: " + deadline);
    }
    // A drain of a draining backend keeps its start, and its deadline unless
    // this one names a new one.
    const bool again = st.has_drain && st.drain;
    st.has_drain = st.drain = drain_aspect = true;
    if (!again) {
      st.drain_ms = now;
      st.deadline_ms = 0;
    }
    if (ms) st.deadline_ms = now + *ms;
    setDrain(rt_.metrics, b, true);
    log::info("backend draining", {{"backend", b->name}, {"by", "admin"}});
    if (ms) startDrainDeadline(b->id, *ms);
    answer["state"] = "draining";
  } else if (action == "enable") {
    st.has_drain = drain_aspect = true;
    st.drain = false;
    st.drain_ms = now;
    st.deadline_ms = 0;
    setDrain(rt_.metrics, b, false);
    cancelDrainDeadline(b->id);
    log::info("backend enabled", {{"backend", b->name}, {"by", "admin"}});
    answer["state"] = balancer::toString(b->state.load());
  } else if (action == "weight") {
    std::string v = queryValue(req.query, "value");
    char* e = nullptr;
    unsigned long w = std::strtoul(v.c_str(), &e, 10);
    if (v.empty() || *e != 0 || w > conf::kMaxWeight) {
      return error(400, "value: expected an integer 0.." + std::to_string(conf::kMaxWeight));
    }
    st.has_weight = weight_aspect = true;
    st.weight = static_cast<std::uint32_t>(w);
    st.weight_ms = now;
    setWeight(rt_.metrics, b, st.weight);
    log::info("backend weight", {{"backend", b->name}, {"weight", static_cast<std::uint64_t>(w)}, {"by", "admin"}});
    answer["weight"] = w;
  } else {
    return error(404, "no such action: " + action);
  }
  if (admin_sync_) {
    // "sent": on its way to every tether; "pending": Redis is down (or the
    // subscription refused), written once it is back.
    answer["shared"] = admin_sync_->changed(b, st, drain_aspect, weight_aspect) ? "sent" : "pending";
  }
  json(200, answer);
}

}  // namespace tether::proxy
