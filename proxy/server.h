// The process: configuration, backends, workers, the admin listener, health
// checks, DNS, signals and systemd. Runs on the main thread; worker 0's loop
// is the main loop.
#pragma once

#include <uv.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "conf/loader.h"
#include "proxy/admin.h"
#include "proxy/admin_sync.h"
#include "proxy/health_checker.h"
#include "proxy/runtime.h"
#include "proxy/successor.h"
#include "proxy/upgrade.h"
#include "proxy/worker.h"

namespace tether::proxy {

class Server : private AdminSync::Target {
 public:
  // args: the command line without argv[0], kept for reloads.
  Server(std::vector<std::string> args, conf::EnvLookup env, std::shared_ptr<conf::Config> config);
  ~Server();
  // Runs until stopped; returns the process exit code.
  int run();

 private:
  struct Resolver;  // one per backend URL with a DNS name
  // POST /admin/backends/{id}/drain?deadline=: the going-away closes once it
  // passes. One per backend: the last drain's (a drain shared through Redis
  // counts from the original request). An enable cancels it.
  struct DrainDeadline {
    uv_timer_t timer;
    Server* server;
    std::uint32_t id;
  };
  void startDrainDeadline(std::uint32_t id, std::int64_t delay_ms);
  void cancelDrainDeadline(std::uint32_t id);
  void closeDrainDeadline(DrainDeadline* d);
  void startAdminSync(const std::string& admin_bound);
  void applySharedAdmin(balancer::Backend* b, const balancer::AdminState& now,
                        const balancer::AdminState& before) override;
  bool sharedDrain(const balancer::Backend* b) const;
  void adminAction(const AdminRequest& req, AdminResponse& res, balancer::Backend* b, const std::string& action);

  std::string addBackendsFor(std::size_t config_index, const conf::BackendConf& bc);
  balancer::Backend* addBackend(std::size_t config_index, const conf::BackendConf& bc, const sockaddr* addr,
                                socklen_t len);
  void startResolvers();
  void handleAdmin(const AdminRequest& req, AdminResponse& res);
  std::string backendsJson() const;
  std::string affinityJson(const std::string& key);
  bool ready() const;
  enum class ReloadResult { kApplied, kRefused, kUpgrading };
  ReloadResult reload();
  // Binary upgrade (proxy/upgrade.h). takeInherited: in a new process, the
  // sockets the old one handed over, matched to `cfg` (nullopt when this
  // process was not started by an upgrade). startUpgrade: spawns the new
  // binary; false (logged) when refused or it could not be started.
  std::optional<UpgradePlan> takeInherited(const conf::Config& cfg, std::vector<std::string>* errors);
  bool startUpgrade(const char* why);
  void upgradeDone(bool ok, const std::string& why);
  void handOff(int pid);
  void announceReady();
  void stopBackground();
  std::string upgradeJson() const;
  void reopenAccessLog();
  void beginStop(const char* why);
  void finishStop();
  void notify(const char* state);
  static void onSignal(uv_signal_t* s, int signum);

  std::vector<std::string> args_;
  conf::EnvLookup env_;
  Runtime rt_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::thread> threads_;
  std::unique_ptr<AdminServer> admin_;
  std::unique_ptr<HealthChecker> health_;
  std::vector<std::unique_ptr<Resolver>> resolvers_;
  std::map<std::uint32_t, DrainDeadline*> drain_deadlines_;  // by backend id
  std::unique_ptr<AdminSync> admin_sync_;  // with a Redis store only
  uv_signal_t sig_term_, sig_int_, sig_hup_, sig_usr1_, sig_usr2_;
  uv_timer_t grace_timer_;
  uv_timer_t watchdog_timer_;
  uv_timer_t ready_timer_;  // a new process of an upgrade: waits to accept
  uv_async_t drained_async_;
  std::atomic<std::uint32_t> drained_workers_{0};
  // kStarting: a new process was spawned and has not reported ready yet;
  // kHandedOff: it has, and took the listening sockets and systemd's main
  // process over; this one drains, tells systemd nothing more, and exits.
  enum class Upgrade { kNone, kStarting, kHandedOff };
  Upgrade upgrade_ = Upgrade::kNone;
  Successor* successor_ = nullptr;  // while kStarting; frees itself after upgradeDone
  int successor_pid_ = 0;
  bool upgrade_reloading_ = false;  // started by a reload: RELOADING=1 was sent
  std::string exe_path_;            // the binary this process runs, read at start
  int ready_fd_ = -1;               // a new process: where it reports ready
  bool watchdog_ = false;
  bool stopping_ = false;
  bool stopped_ = false;
};

}  // namespace tether::proxy
