// tether: a Layer-7 load balancer and WebSocket-aware sidecar.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "conf/loader.h"
#include "proxy/access_log.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/io/tls.h"
#include "proxy/io/tls_client.h"
#include "proxy/pin_store.h"

int main(int argc, char** argv) {
  using tether::conf::ExitCode;
#if defined(TETHER_SSE42)
  if (!__builtin_cpu_supports("sse4.2")) {
    std::fprintf(stderr, "tether: this CPU lacks SSE4.2; rebuild with cmake -DTETHER_SSE42=OFF\n");
    return static_cast<int>(ExitCode::kCannotStart);
  }
#endif
  tether::conf::EnvLookup env = tether::conf::processEnv();
  tether::conf::LoadResult r = tether::conf::load(argc, argv, env);
  if (r.invocation.version) {
    std::printf("tether %s\n", TETHER_VERSION);
    return 0;
  }
  if (r.invocation.help) {
    std::printf("%s", r.invocation.help_text.c_str());
    return 0;
  }
  if (!r.errors.empty() || !r.config) {
    for (const std::string& e : r.errors) std::fprintf(stderr, "tether: %s\n", e.c_str());
    if (r.exit_code == ExitCode::kBadCommandLine) std::fprintf(stderr, "tether: see tether --help\n");
    return static_cast<int>(r.exit_code == ExitCode::kOk ? ExitCode::kConfigInvalid : r.exit_code);
  }
  std::shared_ptr<tether::conf::Config> cfg = r.config;
  if (!cfg->log_format_explicit) {
    cfg->log_format = isatty(STDERR_FILENO) ? tether::conf::LogFormat::kText : tether::conf::LogFormat::kJson;
  }
  if (r.invocation.check_config) {
    std::vector<std::string> errors;
    tether::proxy::loadListenerTls(*cfg, &errors);
    tether::proxy::loadBackendTls(*cfg, &errors);
    tether::proxy::redisTlsContext(cfg->affinity, &errors);
    if (cfg->access_log.enabled) {
      std::string e = tether::proxy::AccessLogFile::check(cfg->access_log.path);
      if (!e.empty()) errors.push_back(e);
    }
    for (const std::string& e : errors) std::fprintf(stderr, "tether: %s\n", e.c_str());
    if (!errors.empty()) return static_cast<int>(ExitCode::kConfigInvalid);
    std::printf("configuration ok%s%s\n", cfg->source.empty() ? "" : ": ", cfg->source.c_str());
    return 0;
  }
  tether::proxy::log::init(cfg->log_level, cfg->log_format);
  std::vector<std::string> args(argv + 1, argv + argc);
  tether::proxy::Server server(std::move(args), env, cfg);
  return server.run();
}
