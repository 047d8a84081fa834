// conf::load() and conf::reload(): the file, the environment and the flags together.
#include "conf/loader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

namespace tether::conf {
namespace {

// A file under /tmp, removed at the end of the test.
class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    char name[] = "/tmp/tether_conf_XXXXXX";
    int fd = mkstemp(name);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = name;
    write(content);
  }
  ~TempFile() { unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const std::string& content) const { std::ofstream(path_) << content; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using Env = std::map<std::string, std::string>;

EnvLookup envOf(Env vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

LoadResult run(std::vector<std::string> args, Env env = {}) {
  std::vector<const char*> argv{"tether"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  return load(static_cast<int>(argv.size()), argv.data(), envOf(std::move(env)));
}

std::string joined(const std::vector<std::string>& errors) {
  std::string all;
  for (const std::string& e : errors) all += e + "\n";
  return all;
}

// Loads and expects success.
Config ok(std::vector<std::string> args, Env env = {}) {
  LoadResult r = run(std::move(args), std::move(env));
  EXPECT_TRUE(r.errors.empty()) << joined(r.errors);
  EXPECT_EQ(r.exit_code, ExitCode::kOk);
  if (!r.config) return Config{};
  return *r.config;
}

// Loads a file and expects failure; returns the errors.
std::vector<std::string> fileErrors(const std::string& yaml, Env env = {}) {
  TempFile file(yaml);
  LoadResult r = run({"-c", file.path()}, std::move(env));
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  EXPECT_FALSE(r.config);
  return r.errors;
}

bool hasError(const std::vector<std::string>& errors, const std::string& expected) {
  for (const std::string& e : errors) {
    if (e.rfind(expected, 0) == 0) return true;
  }
  return false;
}

#define EXPECT_ERROR(errors, expected) \
  EXPECT_TRUE(hasError(errors, expected)) << "want: " << (expected) << "\ngot:\n" << joined(errors)

TEST(Load, NothingGivenMeansDefaults) {
  Config c = ok({});
  EXPECT_EQ(c.source, "");
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_EQ(c.listeners[0].address, (HostPort{"0.0.0.0", 8000}));
  EXPECT_EQ(c.admin.address, (HostPort{"127.0.0.1", 9901}));
  EXPECT_TRUE(c.backends.empty());  // not an error: tether answers 503
  EXPECT_EQ(c.workers, 1u);
  EXPECT_EQ(c.balance, Balance::kLeastConn);
  EXPECT_EQ(c.affinity.store, "memory");
  EXPECT_FALSE(c.affinity.redis);
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_FALSE(c.log_format_explicit);
}

TEST(Load, BackendFlagsAloneMakeADeployment) {
  Config c = ok({"-b", "http://127.0.0.1:8080", "--backend", "http://127.0.0.1:8081"});
  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[0].address, (HostPort{"127.0.0.1", 8080}));
  EXPECT_EQ(c.backends[1].address, (HostPort{"127.0.0.1", 8081}));
  EXPECT_EQ(c.backends[1].weight, 100u);
}

TEST(Load, ListFlagsAlsoTakeCommas) {
  Config c = ok({"-b", "http://a:1,http://b:2", "-l", ":8000", "-l", "[::1]:8001"});
  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[1].address, (HostPort{"b", 2}));
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[1].address, (HostPort{"::1", 8001}));
}

TEST(Load, PrecedenceIsFlagThenEnvThenFileThenDefault) {
  TempFile file(R"(
workers: 2
admin: { address: "127.0.0.2:9000" }
backends: ["http://file:1"]
listeners: [":7000"]
log: { level: debug }
balance: p2c
)");
  // Each setting is given at every level down from the one that should win.
  Config c = ok({"-c", file.path(), "--workers", "4", "-l", ":7002"},
                {{"TETHER_WORKERS", "3"},
                 {"TETHER_BACKENDS", " http://env:1 , http://env:2 ,"},
                 {"TETHER_LISTEN", ":7001"},
                 {"TETHER_ADMIN", "127.0.0.3:9000"}});
  EXPECT_EQ(c.source, file.path());
  EXPECT_EQ(c.workers, 4u);           // flag
  ASSERT_EQ(c.listeners.size(), 1u);  // flag list replaces
  EXPECT_EQ(c.listeners[0].address.port, 7002);
  ASSERT_EQ(c.backends.size(), 2u);  // env list replaces the file's
  EXPECT_EQ(c.backends[0].address, (HostPort{"env", 1}));
  EXPECT_EQ(c.admin.address, (HostPort{"127.0.0.3", 9000}));  // env
  EXPECT_EQ(c.log_level, LogLevel::kDebug);                   // file
  EXPECT_EQ(c.balance, Balance::kP2c);                        // file
  EXPECT_EQ(c.timeouts.connect, 5'000);                       // default
}

TEST(Load, ConfigFlagBeatsTetherConfig) {
  TempFile from_env("workers: 2\n");
  TempFile from_flag("workers: 3\n");
  EXPECT_EQ(ok({}, {{"TETHER_CONFIG", from_env.path()}}).workers, 2u);
  Config c = ok({"--config", from_flag.path()}, {{"TETHER_CONFIG", from_env.path()}});
  EXPECT_EQ(c.workers, 3u);
  EXPECT_EQ(c.source, from_flag.path());
}

TEST(Load, EmptyVariablesCountAsUnset) {
  Config c = ok({}, {{"TETHER_BACKENDS", ""}, {"TETHER_WORKERS", ""}, {"TETHER_CONFIG", ""}});
  EXPECT_TRUE(c.backends.empty());
  EXPECT_EQ(c.workers, 1u);
}

TEST(Load, EveryEnvironmentVariable) {
  Config c = ok({}, {{"TETHER_LISTEN", "127.0.0.1:0,[::1]:0"},
                     {"TETHER_BACKENDS", "http://a:1"},
                     {"TETHER_ADMIN", "127.0.0.1:0"},
                     {"TETHER_REDIS_URL", "redis://:pw@redis:6379/1"},
                     {"TETHER_WORKERS", "auto"},
                     {"TETHER_LOG_LEVEL", "warn"},
                     {"TETHER_LOG_FORMAT", "json"}});
  EXPECT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.admin.address.port, 0);
  ASSERT_TRUE(c.affinity.redis);
  EXPECT_EQ(c.affinity.redis->password, "pw");
  EXPECT_EQ(c.affinity.redis->db, 1u);
  EXPECT_GE(c.workers, 1u);
  EXPECT_EQ(c.log_level, LogLevel::kWarn);
  EXPECT_EQ(c.log_format, LogFormat::kJson);
  EXPECT_TRUE(c.log_format_explicit);
}

TEST(Load, BadEnvironmentValueIsAConfigError) {
  LoadResult r = run({}, {{"TETHER_WORKERS", "0"}, {"TETHER_BACKENDS", "http://app"}});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  EXPECT_ERROR(r.errors, "TETHER_WORKERS: \"0\" is not 1..256 or auto");
  EXPECT_ERROR(r.errors, "TETHER_BACKENDS: no port in \"http://app\"");
}

TEST(Load, RedisFlagSetsTheStoreEverywhere) {
  TempFile file(R"(
affinity: { keys: [client_ip], store: "redis://file:6379" }
routes:
  - match: { path_prefix: /ws/ }
    affinity: { keys: [engineio_sid] }
)");
  Config c = ok({"-c", file.path(), "--redis", "redis://flag:6380/3"});
  EXPECT_EQ(c.affinity.store, "redis://flag:6380/3");
  ASSERT_TRUE(c.affinity.redis);
  EXPECT_EQ(c.affinity.redis->address, (HostPort{"flag", 6380}));
  ASSERT_EQ(c.routes.size(), 1u);
  ASSERT_TRUE(c.routes[0].affinity);
  EXPECT_EQ(c.routes[0].affinity->store, "redis://flag:6380/3");
  EXPECT_EQ(c.routes[0].affinity->redis, c.affinity.redis);
}

TEST(Load, RedisTlsOptionsGoWithARedissStore) {
  TempFile file(R"(
affinity:
  store: "rediss://tether:pw@redis.internal:6380/1"
  redis:
    tls: { ca: /etc/tether/redis-ca.pem, cert: /etc/tether/c.pem, key: /etc/tether/c.key,
           server_name: redis.example, verify: false }
    reply_timeout: 3s
)");
  Config c = ok({"-c", file.path()});
  ASSERT_TRUE(c.affinity.redis);
  EXPECT_TRUE(c.affinity.redis->tls);
  EXPECT_EQ(c.affinity.redis->username, "tether");
  EXPECT_EQ(c.affinity.redis->address, (HostPort{"redis.internal", 6380}));
  ASSERT_TRUE(c.affinity.redis_options.tls);
  const ClientTls& t = *c.affinity.redis_options.tls;
  EXPECT_EQ(t.ca, "/etc/tether/redis-ca.pem");
  EXPECT_EQ(t.cert, "/etc/tether/c.pem");
  EXPECT_EQ(t.key, "/etc/tether/c.key");
  EXPECT_EQ(t.server_name, "redis.example");
  EXPECT_FALSE(t.verify);
  EXPECT_EQ(c.affinity.redis_options.reply_timeout, 3000);
  // Without a tls block, rediss:// verifies against the system's CAs.
  Config d = ok({"--redis", "rediss://redis:6380"});
  EXPECT_FALSE(d.affinity.redis_options.tls);
  EXPECT_EQ(d.affinity.redis_options.reply_timeout, 2000);
}

TEST(Load, RedisTlsOptionsAreRefusedWithoutRediss) {
  TempFile file(R"(
affinity:
  store: "redis://:secret@redis:6379"
  redis: { tls: { ca: /ca.pem, cert: /c.pem }, reply_timeout: 0s, ping: 1s }
)");
  LoadResult r = run({"-c", file.path()});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  EXPECT_ERROR(r.errors, "affinity.redis.tls: set, but affinity.store is a redis:// URL, not a rediss:// URL");
  EXPECT_ERROR(r.errors, "affinity.redis.tls.key: missing (cert is set)");
  EXPECT_ERROR(r.errors, "affinity.redis.reply_timeout: must be greater than 0");
  EXPECT_ERROR(r.errors, "affinity.redis.ping: unknown key");
  for (const std::string& e : r.errors) EXPECT_EQ(e.find("secret"), std::string::npos) << e;
  // The flag that makes the store rediss:// makes the file's tls block right.
  EXPECT_EQ(run({"-c", file.path(), "--redis", "rediss://redis:6380"}).errors.size(), 3u);
}

TEST(Load, RedisOptionsOnlyAtTheTopLevel) {
  TempFile file(R"(
routes:
  - match: { path_prefix: /ws/ }
    affinity: { keys: [engineio_sid], redis: { reply_timeout: 1s } }
)");
  LoadResult r = run({"-c", file.path()});
  EXPECT_ERROR(r.errors, "routes[0].affinity.redis: allowed only in the top-level affinity");
}

TEST(Load, SentinelStoreFromTheEnvironment) {
  Config c = ok({}, {{"TETHER_REDIS_URL", "redis+sentinel://:pw@s1,s2:26380,[::1]/mymaster/2"}});
  ASSERT_TRUE(c.affinity.redis);
  EXPECT_EQ(c.affinity.redis->master_name, "mymaster");
  ASSERT_EQ(c.affinity.redis->sentinels.size(), 3u);
  EXPECT_EQ(c.affinity.redis->sentinels[1], (HostPort{"s2", 26380}));
  EXPECT_EQ(c.affinity.redis->db, 2u);
}

TEST(Load, LogFormatExplicitOnlyWhenNamed) {
  EXPECT_FALSE(ok({"--log-level", "debug"}).log_format_explicit);
  Config c = ok({"--log-format", "text"});
  EXPECT_TRUE(c.log_format_explicit);
  EXPECT_EQ(c.log_format, LogFormat::kText);
  TempFile file("log: { format: json, level: error }\n");
  c = ok({"-c", file.path()});
  EXPECT_TRUE(c.log_format_explicit);
  EXPECT_EQ(c.log_format, LogFormat::kJson);
  EXPECT_EQ(c.log_level, LogLevel::kError);
}

TEST(Load, TheSpecExampleParses) {
  TempFile file(R"(
listeners:
  - address: 0.0.0.0:8000
    tls:
      certificates:
        - { cert: /etc/tether/tls/chat.pem, key: /etc/tether/tls/chat.key }
admin:
  address: 127.0.0.1:9901
  token_file: ""
workers: 1
backends:
  - { url: "http://10.0.0.11:8080", weight: 100 }
  - { url: "http://open-webui-headless.chat.svc.cluster.local:8080", resolve_interval: 10s }
balance: least_conn
health:
  path: /health
  interval: 5s
  timeout: 2s
  rise: 2
  fall: 3
  expect_status: "200-299"
  expect_body: ""
passive:
  consecutive_failures: 5
  eject_for: 30s
affinity:
  keys: []
  cookie: { name: tether_affinity, insert: false, max_age: 1h }
  ttl: 1h
  store: memory
  on_target_down: redispatch
routes:
  - match: { path_prefix: /ws/socket.io/ }
    affinity: { keys: [engineio_sid, "jwt:cookie:token:id", "cookie:tether_affinity"] }
timeouts:
  connect: 5s
  request_header: 10s
  downstream_idle: 75s
  upstream_first_byte: 30m
  upstream_idle: 30m
  tunnel_idle: 1h
  shutdown_grace: 30s
limits:
  max_connections: 20000
  max_request_header_bytes: 64KiB
  max_request_body_bytes: 0
  max_connections_per_backend: 0
  queue_timeout: 5s
retries:
  attempts: 2
trusted_proxies: []
access_log: { enabled: true, format: json }
)");
  Config c = ok({"-c", file.path()});
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_TRUE(c.listeners[0].tls);
  ASSERT_EQ(c.listeners[0].certificates.size(), 1u);
  EXPECT_EQ(c.listeners[0].certificates[0].key, "/etc/tether/tls/chat.key");
  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[1].address.host, "open-webui-headless.chat.svc.cluster.local");
  EXPECT_EQ(c.health.expect_status_min, 200);
  EXPECT_EQ(c.health.expect_status_max, 299);
  EXPECT_EQ(c.timeouts.upstream_first_byte, 1'800'000);
  EXPECT_EQ(c.limits.max_request_header_bytes, 65'536u);
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].match.path_prefix, "/ws/socket.io/");
  ASSERT_TRUE(c.routes[0].affinity);
  EXPECT_EQ(
      c.routes[0].affinity->keys,
      (std::vector<std::string>{"engineio_sid", "jwt:cookie:token:id", "cookie:tether_affinity"}));
  EXPECT_FALSE(c.routes[0].balance);
}

TEST(Load, ExtraKeysBeyondTheSpec) {
  TempFile file(R"(
health: { slow_start: 0 }
passive: { eject_max: 10m }
timeouts: { upstream_keepalive: 90s, websocket_close: 2s, websocket_close_spread: 1m }
limits: { max_queue: 10, max_idle_upstream_per_backend: 8 }
affinity: { lookup_timeout: 20ms, memory_max_entries: 5000 }
)");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.health.slow_start, 0);
  EXPECT_EQ(c.health.down_interval, 1'000);  // the default
  EXPECT_EQ(c.passive.eject_max, 600'000);
  EXPECT_EQ(c.timeouts.upstream_keepalive, 90'000);
  EXPECT_EQ(c.timeouts.websocket_close, 2'000);
  EXPECT_EQ(c.timeouts.websocket_close_spread, 60'000);
  EXPECT_EQ(c.limits.max_queue, 10u);
  EXPECT_EQ(c.limits.max_idle_upstream_per_backend, 8u);
  EXPECT_EQ(c.affinity.lookup_timeout, 20);
  EXPECT_EQ(c.affinity.memory_max_entries, 5000u);
}

TEST(Load, EmptyFileMeansDefaults) {
  TempFile file("# nothing yet\n");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.source, file.path());
  EXPECT_EQ(c.listeners.size(), 1u);
}

TEST(Load, RoutesOverrideOnlyWhatTheyName) {
  TempFile file(R"(
balance: round_robin
affinity:
  keys: [client_ip]
  ttl: 10m
  on_target_down: strict
routes:
  - match: { path_prefix: /ws/ }
    affinity: { keys: [engineio_sid, "cookie:sid"], ttl: 1h }
    balance: consistent_hash
  - match: { path_prefix: /api/ }
)");
  Config c = ok({"-c", file.path()});
  ASSERT_EQ(c.routes.size(), 2u);
  const Route& ws = c.routes[0];
  ASSERT_TRUE(ws.affinity);
  EXPECT_EQ(ws.affinity->keys, (std::vector<std::string>{"engineio_sid", "cookie:sid"}));
  EXPECT_EQ(ws.affinity->ttl, 3'600'000);
  EXPECT_EQ(ws.affinity->on_target_down, OnTargetDown::kStrict);  // inherited
  EXPECT_EQ(ws.balance, Balance::kConsistentHash);
  EXPECT_EQ(c.routes[1].match.path_prefix, "/api/");
  EXPECT_FALSE(c.routes[1].affinity);
  EXPECT_FALSE(c.routes[1].balance);
}

TEST(Load, PlainStringBackendsAndListeners) {
  TempFile file(R"(
listeners: ["127.0.0.1:0", "[::1]:0"]
backends: ["http://10.0.0.1:80", { url: "http://10.0.0.2:80", weight: 0 }]
trusted_proxies: [10.0.0.0/8, "fd00::/8", 192.168.1.1]
health: { expect_status: 204 }
)");
  Config c = ok({"-c", file.path()});
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_FALSE(c.listeners[0].tls);
  ASSERT_EQ(c.backends.size(), 2u);
  EXPECT_EQ(c.backends[1].weight, 0u);
  ASSERT_EQ(c.trusted_proxies.size(), 3u);
  EXPECT_EQ(c.trusted_proxies[1].family, 6);
  EXPECT_EQ(c.trusted_proxies[2].prefix, 32);
  EXPECT_EQ(c.health.expect_status_min, 204);
  EXPECT_EQ(c.health.expect_status_max, 204);
}

TEST(Load, ExpandsVariablesInTheFile) {
  TempFile file(R"(
backends: ["http://${APP_HOST}:${APP_PORT:-8080}"]
affinity: { store: "${REDIS_URL:-memory}" }
)");
  Config c = ok({"-c", file.path()}, {{"APP_HOST", "app"}});
  ASSERT_EQ(c.backends.size(), 1u);
  EXPECT_EQ(c.backends[0].address, (HostPort{"app", 8080}));
  EXPECT_EQ(c.affinity.store, "memory");
}

TEST(Load, UnsetVariableInTheFileIsAnError) {
  TempFile file("workers: 1\nbackends: [\"http://${APP_HOST}:80\"]\n");
  LoadResult r = run({"-c", file.path()});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  EXPECT_EQ(r.errors[0], "config: " + file.path() + ": line 2: ${APP_HOST} is not set");
}

TEST(Load, UnknownKeysAreErrorsWithTheirPath) {
  auto errors = fileErrors(R"(
timeouts: { conect: 5s }
helth: { rise: 2 }
backends: [{ url: "http://a:1", wieght: 3 }]
)");
  EXPECT_ERROR(errors, "timeouts.conect: unknown key (did you mean \"connect\"?)");
  EXPECT_ERROR(errors, "helth: unknown key (did you mean \"health\"?)");
  EXPECT_ERROR(errors, "backends[0].wieght: unknown key");
  EXPECT_EQ(errors.size(), 3u) << joined(errors);
}

TEST(Load, EveryErrorIsReportedWithItsPath) {
  auto errors = fileErrors(R"(
listeners: [{ address: "0.0.0.0" }, "[::1]"]
backends:
  - http://a:1
  - { url: "http://b:2", weight: 20000 }
  - http://app
health: { rise: 0, fall: two, interval: 0, timeout: 5, expect_status: "299-200" }
affinity:
  keys: [engineio_sid, foo, "cookie:"]
  store: "redis//x"
  on_target_down: retry
balance: fastest
workers: 0
limits: { max_request_header_bytes: 10 }
trusted_proxies: [10.0.0.0/40]
access_log: { enabled: maybe }
)");
  EXPECT_ERROR(errors, "listeners[0].address: no port in \"0.0.0.0\"");
  EXPECT_ERROR(errors, "listeners[1].address: no port in \"[::1]\"");
  EXPECT_ERROR(errors, "backends[1].weight: must be 0..10000, got 20000");
  EXPECT_ERROR(errors, "backends[2].url: no port in \"http://app\"");
  EXPECT_ERROR(errors, "health.rise: must be at least 1, got 0");
  EXPECT_ERROR(errors, "health.fall: \"two\" is not a whole number");
  EXPECT_ERROR(errors, "health.interval: must be greater than 0");
  EXPECT_ERROR(errors, "health.timeout: \"5\" is not a duration");
  EXPECT_ERROR(errors, "health.expect_status: \"299-200\"");
  EXPECT_ERROR(errors, "affinity.keys[1]: unknown source \"foo\"");
  EXPECT_ERROR(errors, "affinity.keys[2]: \"cookie:\" is not cookie:NAME");
  EXPECT_ERROR(errors, "affinity.store: \"redis//x\" is not \"memory\" or a Redis URL");
  EXPECT_ERROR(errors, "affinity.on_target_down: \"retry\" is not one of redispatch|strict");
  EXPECT_ERROR(errors,
               "balance: \"fastest\" is not one of round_robin|least_conn|p2c|consistent_hash");
  EXPECT_ERROR(errors, "workers: \"0\" is not 1..256 or auto");
  EXPECT_ERROR(errors, "limits.max_request_header_bytes: must be at least 1024 bytes");
  EXPECT_ERROR(errors, "trusted_proxies[0]: \"10.0.0.0/40\" is not an address or a CIDR");
  EXPECT_ERROR(errors, "access_log.enabled: \"maybe\" is not true or false");
  EXPECT_EQ(errors.size(), 18u) << joined(errors);
}

TEST(Load, HealthDownInterval) {
  TempFile file("health: { interval: 30s, down_interval: 250ms }\n");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.health.interval, 30'000);
  EXPECT_EQ(c.health.down_interval, 250);
  TempFile fast("health: { interval: 200ms }\n");
  EXPECT_EQ(ok({"-c", fast.path()}).health.down_interval, 200);  // unset: never slower than interval
  TempFile slower("health: { interval: 200ms, down_interval: 2s }\n");
  EXPECT_EQ(ok({"-c", slower.path()}).health.down_interval, 2'000);  // set: as written
  auto errors = fileErrors("health: { down_interval: 0 }\n");
  EXPECT_ERROR(errors, "health.down_interval: must be greater than 0");
  errors = fileErrors("health: { down_interval: fast, downinterval: 1s }\n");
  EXPECT_ERROR(errors, "health.down_interval: \"fast\" is not a duration");
  EXPECT_ERROR(errors, "health.downinterval: unknown key (did you mean \"down_interval\"?)");
  EXPECT_EQ(errors.size(), 2u) << joined(errors);
}

TEST(Load, AccessLogKeys) {
  Config defaults = ok({});
  EXPECT_TRUE(defaults.access_log.enabled);
  EXPECT_EQ(defaults.access_log.format, LogFormat::kJson);
  EXPECT_EQ(defaults.access_log.path, "");  // stdout
  EXPECT_EQ(defaults.access_log.flush, 1'000);
  EXPECT_EQ(defaults.access_log.buffer, 65'536u);

  TempFile file(R"(
access_log: { format: text, path: /var/log/tether/access.log, flush: 250ms, buffer: 1MiB }
)");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.access_log.format, LogFormat::kText);
  EXPECT_EQ(c.access_log.path, "/var/log/tether/access.log");
  EXPECT_EQ(c.access_log.flush, 250);
  EXPECT_EQ(c.access_log.buffer, 1'048'576u);

  TempFile unbuffered("access_log: { flush: 0, buffer: 1KiB }\n");
  Config u = ok({"-c", unbuffered.path()});
  EXPECT_EQ(u.access_log.flush, 0);  // every line written at once
  EXPECT_EQ(u.access_log.buffer, 1'024u);
}

TEST(Load, AccessLogBadValuesAreReported) {
  auto errors = fileErrors(R"(
access_log:
  enabled: sometimes
  format: csv
  path: /var/log/tether/
  flush: 1000
  buffer: 512
  rotate: daily
)");
  EXPECT_ERROR(errors, "access_log.enabled: \"sometimes\" is not true or false");
  EXPECT_ERROR(errors, "access_log.format: \"csv\" is not one of text|json");
  EXPECT_ERROR(errors,
               "access_log.path: \"/var/log/tether/\" names a directory, not a file");
  EXPECT_ERROR(errors, "access_log.flush: \"1000\" is not a duration");
  EXPECT_ERROR(errors, "access_log.buffer: must be at least 1024 bytes");
  EXPECT_ERROR(errors, "access_log.rotate: unknown key");
  EXPECT_EQ(errors.size(), 6u) << joined(errors);

  errors = fileErrors(R"(
access_log: { flush: -1s, buffer: 1GiB, path: [a, b] }
)");
  EXPECT_ERROR(errors, "access_log.flush: \"-1s\" is not a duration");
  EXPECT_ERROR(errors, "access_log.buffer: must be at most 16777216 bytes (16MiB)");
  EXPECT_ERROR(errors, "access_log.path: expected a single value");
  EXPECT_EQ(errors.size(), 3u) << joined(errors);

  errors = fileErrors("access_log: { buffer: lots, flsh: 1s }\n");
  EXPECT_ERROR(errors, "access_log.buffer: \"lots\" is not a size");
  EXPECT_ERROR(errors, "access_log.flsh: unknown key (did you mean \"flush\"?)");
  EXPECT_EQ(errors.size(), 2u) << joined(errors);

  errors = fileErrors("access_log: true\n");
  EXPECT_ERROR(errors, "access_log: expected a mapping");
}

TEST(Load, WrongShapesAreReported) {
  auto errors = fileErrors(R"(
listeners: { address: ":80" }
health: [1, 2]
backends: [[http://a:1]]
timeouts: { connect: [5s] }
)");
  EXPECT_ERROR(errors, "listeners: expected a list");
  EXPECT_ERROR(errors, "health: expected a mapping");
  EXPECT_ERROR(errors, "backends[0]: expected a URL");
  EXPECT_ERROR(errors, "timeouts.connect: expected a single value");
  EXPECT_EQ(errors.size(), 4u) << joined(errors);
}

TEST(Load, RouteErrorsHaveRoutePaths) {
  auto errors = fileErrors(R"(
routes:
  - match: { path_prefix: ws }
    affinity: { keys: ["jwt:cookie:token"], store: memory }
    balance: random
  - affinity: { keys: [client_ip] }
)");
  EXPECT_ERROR(errors, "routes[0].match.path_prefix: missing or not starting with '/'");
  EXPECT_ERROR(errors,
               "routes[0].affinity.keys[0]: \"jwt:cookie:token\" is not jwt:cookie:NAME:CLAIM");
  EXPECT_ERROR(errors, "routes[0].affinity.store: allowed only in the top-level affinity");
  EXPECT_ERROR(errors, "routes[0].balance: \"random\" is not one of");
  EXPECT_ERROR(errors, "routes[1].match.path_prefix: missing");
  EXPECT_EQ(errors.size(), 5u) << joined(errors);
}

TEST(Load, TlsListenerNeedsCertificates) {
  auto errors = fileErrors(R"(
listeners:
  - address: ":8443"
    tls: { certificates: [] }
  - address: ":8444"
    tls: { certificates: [{ cert: /a.pem }] }
)");
  EXPECT_ERROR(errors,
               "listeners[0].tls.certificates: a TLS listener needs at least one certificate");
  EXPECT_ERROR(errors, "listeners[1].tls.certificates[0].key: missing");
}

TEST(Load, DuplicatesAreRefused) {
  auto errors = fileErrors(R"(
listeners: [":8000", ":8000", ":0", ":0"]
admin: { address: "0.0.0.0:8000" }
backends: ["http://a:1", "https://b:443", "http://a:1/"]
)");
  EXPECT_ERROR(errors, "listeners[1].address: 0.0.0.0:8000 is also listeners[0].address");
  EXPECT_ERROR(errors, "admin.address: 0.0.0.0:8000 is also listeners[0].address");
  EXPECT_ERROR(errors, "backends[2].url: a:1 is also backends[0]");
  EXPECT_FALSE(std::any_of(errors.begin(), errors.end(),
                           [](const std::string& e) { return e.starts_with("backends[1]"); }))
      << joined(errors);
}

TEST(Load, HttpsBackendsTakeTheirOwnTlsOrBackendTls) {
  TempFile file(R"(
backend_tls: { ca: /etc/tether/backend-ca.pem }
backends:
  - "https://b.internal:8443"
  - url: "https://10.0.0.5:8443"
    tls: { ca: /ca.pem, cert: /c.pem, key: /c.key, server_name: app.example, verify: false }
  - "http://plain:80"
)");
  Config c = ok({"-c", file.path()});
  ASSERT_EQ(c.backends.size(), 3u);
  ASSERT_TRUE(c.backends[0].tls);
  EXPECT_FALSE(c.backends[0].tls_own);
  EXPECT_EQ(c.backends[0].tls->ca, "/etc/tether/backend-ca.pem");
  EXPECT_TRUE(c.backends[0].tls->verify);
  ASSERT_TRUE(c.backends[1].tls);
  EXPECT_TRUE(c.backends[1].tls_own);
  EXPECT_EQ(c.backends[1].tls->cert, "/c.pem");
  EXPECT_EQ(c.backends[1].tls->key, "/c.key");
  EXPECT_EQ(c.backends[1].tls->server_name, "app.example");
  EXPECT_FALSE(c.backends[1].tls->verify);
  EXPECT_FALSE(c.backends[2].tls);
  // A flag's https:// backend verifies against the system's CAs.
  Config d = ok({"-b", "https://app:443"});
  ASSERT_TRUE(d.backends[0].tls);
  EXPECT_EQ(d.backends[0].tls->ca, "");
  EXPECT_TRUE(d.backends[0].tls->verify);
}

TEST(Load, BackendTlsMistakesAreRefusedWithTheirPaths) {
  auto errors = fileErrors(R"(
backend_tls: { cert: /c.pem, sni: x }
backends:
  - { url: "http://a:1", tls: { ca: /ca.pem } }
  - { url: "https://b:2", tls: { key: /k.pem } }
  - { url: "https://c:3", tls: [] }
)");
  EXPECT_ERROR(errors, "backend_tls.key: missing (cert is set)");
  EXPECT_ERROR(errors, "backends[0].tls: set, but the url is not https://");
  EXPECT_ERROR(errors, "backends[1].tls.cert: missing (key is set)");
  EXPECT_TRUE(std::any_of(errors.begin(), errors.end(),
                          [](const std::string& e) { return e.starts_with("backend_tls.sni"); }))
      << joined(errors);
  EXPECT_TRUE(std::any_of(errors.begin(), errors.end(),
                          [](const std::string& e) { return e.starts_with("backends[2].tls"); }))
      << joined(errors);
}

TEST(Load, NonLoopbackAdminNeedsAToken) {
  LoadResult r = run({"--admin", "0.0.0.0:9901"});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  EXPECT_EQ(r.errors[0],
            "admin.address: 0.0.0.0:9901 is not loopback and admin.token_file is not set");
  EXPECT_EQ(ok({"--admin", "[::1]:9901"}).admin.address.host, "::1");
  EXPECT_EQ(ok({"--admin", "localhost:0"}).admin.address.port, 0);
}

TEST(Load, TokenFileIsReadAndTrimmed) {
  TempFile token("  s3cret-token\n\n");
  TempFile file("admin: { address: \"0.0.0.0:9901\", token_file: \"" + token.path() + "\" }\n");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.admin.token_file, token.path());
  EXPECT_EQ(c.admin.token, "s3cret-token");
}

TEST(Load, UnreadableOrEmptyTokenFileIsAnError) {
  auto errors = fileErrors("admin: { token_file: /nonexistent/tether-token }\n");
  EXPECT_ERROR(errors, "admin.token_file: cannot read \"/nonexistent/tether-token\": No such file");
  TempFile empty(" \n");
  errors = fileErrors("admin: { token_file: " + empty.path() + " }\n");
  EXPECT_ERROR(errors, "admin.token_file: \"" + empty.path() + "\" is empty");
}

TEST(Load, YamlSyntaxErrorNamesFileLineAndColumn) {
  TempFile file("workers: 1\nbackends: [http://a:1\n");
  LoadResult r = run({"-c", file.path()});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  ASSERT_EQ(r.errors.size(), 1u) << joined(r.errors);
  EXPECT_EQ(r.errors[0].rfind("config: " + file.path() + ":", 0), 0u) << r.errors[0];
}

TEST(Load, ListenersMayNotBeEmpty) {
  auto errors = fileErrors("listeners: []\n");
  EXPECT_ERROR(errors, "listeners: at least one listener is needed");
}

TEST(Load, TopLevelMustBeAMapping) {
  auto errors = fileErrors("- just\n- a list\n");
  EXPECT_ERROR(errors, "config: expected a mapping at the top level");
}

TEST(Load, MissingFileIsAConfigError) {
  LoadResult r = run({"-c", "/nonexistent/tether.yaml"});
  EXPECT_EQ(r.exit_code, ExitCode::kConfigInvalid);
  EXPECT_ERROR(r.errors, "config: cannot read \"/nonexistent/tether.yaml\"");
}

TEST(Load, CheckConfigIsReportedAndStillLoads) {
  LoadResult r = run({"--check-config", "-b", "http://a:1"});
  EXPECT_EQ(r.exit_code, ExitCode::kOk);
  EXPECT_TRUE(r.invocation.check_config);
  ASSERT_TRUE(r.config);
  EXPECT_EQ(r.config->backends.size(), 1u);
  EXPECT_FALSE(run({}).invocation.check_config);
}

TEST(Load, VersionAndHelpReadNothingElse) {
  // Even a broken file does not stop --version.
  LoadResult r = run({"--version"}, {{"TETHER_CONFIG", "/nonexistent/tether.yaml"}});
  EXPECT_EQ(r.exit_code, ExitCode::kOk);
  EXPECT_TRUE(r.invocation.version);
  EXPECT_TRUE(r.errors.empty());
  EXPECT_FALSE(r.config);

  r = run({"-h"});
  EXPECT_EQ(r.exit_code, ExitCode::kOk);
  EXPECT_TRUE(r.invocation.help);
  EXPECT_NE(r.invocation.help_text.find("--listen"), std::string::npos);
  EXPECT_NE(r.invocation.help_text.find("TETHER_BACKENDS"), std::string::npos);
  EXPECT_TRUE(run({"--help"}).invocation.help);
}

TEST(Load, BadCommandLineIsExitCode2) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"--frobnicate"}, {"-l"}, {"stray"}, {"--workers", "1", "--workers", "2"}}) {
    LoadResult r = run(args);
    EXPECT_EQ(r.exit_code, ExitCode::kBadCommandLine) << args[0];
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].rfind("command line: ", 0), 0u) << r.errors[0];
    EXPECT_FALSE(r.config);
  }
}

TEST(Load, BadFlagValuesAreExitCode2WithTheFlagName) {
  LoadResult r = run({"--workers", "0", "-b", "http://app", "--log-level", "loud", "--log-format",
                      "xml", "--redis", "redis:/x", "--admin", "nope", "-l", "::1:80"});
  EXPECT_EQ(r.exit_code, ExitCode::kBadCommandLine);
  EXPECT_ERROR(r.errors, "--workers: \"0\" is not 1..256 or auto");
  EXPECT_ERROR(r.errors, "--backend: no port in \"http://app\"");
  EXPECT_ERROR(r.errors, "--log-level: \"loud\" is not one of trace|debug|info|warn|error");
  EXPECT_ERROR(r.errors, "--log-format: \"xml\" is not one of text|json");
  EXPECT_ERROR(r.errors, "--redis: ");
  EXPECT_ERROR(r.errors, "--admin: no port in \"nope\"");
  EXPECT_ERROR(r.errors, "--listen: an IPv6 address needs brackets");
  EXPECT_EQ(r.errors.size(), 7u) << joined(r.errors);
}

TEST(Load, HardeningKeysHaveTheirDefaults) {
  Config c = ok({});
  EXPECT_EQ(c.timeouts.request_body, 60'000);
  EXPECT_EQ(c.timeouts.upgrade, 10'000);
  EXPECT_EQ(c.limits.headers_with_underscores, UnderscoreHeaders::kDrop);
  EXPECT_EQ(c.limits.max_response_header_bytes, 64u * 1024);
  EXPECT_EQ(c.admin.max_connections, 64u);
  EXPECT_EQ(c.passive.max_ejection_percent, 50u);
  EXPECT_EQ(c.passive.failure_statuses, (std::vector<std::uint16_t>{502, 504}));
}

TEST(Load, HardeningKeysAreRead) {
  TempFile file(R"(
admin: { max_connections: 8 }
timeouts: { request_body: 5s, upgrade: 3s }
limits: { headers_with_underscores: reject, max_response_header_bytes: 128KiB }
passive: { max_ejection_percent: 100, failure_statuses: [500, 503] }
)");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.admin.max_connections, 8u);
  EXPECT_EQ(c.timeouts.request_body, 5'000);
  EXPECT_EQ(c.timeouts.upgrade, 3'000);
  EXPECT_EQ(c.limits.headers_with_underscores, UnderscoreHeaders::kReject);
  EXPECT_EQ(c.limits.max_response_header_bytes, 128u * 1024);
  EXPECT_EQ(c.passive.max_ejection_percent, 100u);
  EXPECT_EQ(c.passive.failure_statuses, (std::vector<std::uint16_t>{500, 503}));
}

TEST(Load, HardeningKeysAcceptTheirEdgeValues) {
  TempFile file(R"(
timeouts: { request_body: 0 }
limits: { headers_with_underscores: allow }
passive: { max_ejection_percent: 0, failure_statuses: [] }
)");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.timeouts.request_body, 0);  // off
  EXPECT_EQ(c.limits.headers_with_underscores, UnderscoreHeaders::kAllow);
  EXPECT_EQ(c.passive.max_ejection_percent, 0u);
  EXPECT_TRUE(c.passive.failure_statuses.empty());
}

TEST(Load, HardeningKeysReportBadValuesWithTheirPath) {
  auto errors = fileErrors(R"(
admin: { max_connections: 0 }
timeouts: { request_body: soon }
limits: { headers_with_underscores: keep, max_response_header_bytes: 100 }
passive: { max_ejection_percent: 101, failure_statuses: [502, 404, x, 502, [1]] }
)");
  EXPECT_ERROR(errors, "admin.max_connections: must be at least 1, got 0");
  EXPECT_ERROR(errors, "timeouts.request_body: \"soon\" is not a duration");
  EXPECT_ERROR(errors,
               "limits.headers_with_underscores: \"keep\" is not one of drop|reject|allow");
  EXPECT_ERROR(errors, "limits.max_response_header_bytes: must be at least 1024 bytes");
  EXPECT_ERROR(errors, "passive.max_ejection_percent: must be 0..100, got 101");
  EXPECT_ERROR(errors, "passive.failure_statuses[1]: \"404\" is not a 5xx status (500..599)");
  EXPECT_ERROR(errors, "passive.failure_statuses[2]: \"x\" is not a 5xx status");
  EXPECT_ERROR(errors, "passive.failure_statuses[3]: 502 is listed twice");
  EXPECT_ERROR(errors, "passive.failure_statuses[4]: expected a single value");
  EXPECT_EQ(errors.size(), 9u) << joined(errors);
}

TEST(Load, FailureStatusesMustBeAList) {
  auto errors = fileErrors("passive: { failure_statuses: 502 }\n");
  EXPECT_ERROR(errors, "passive.failure_statuses: expected a list");
}

TEST(Load, WorkersAutoIsTheCpuCount) {
  Config c = ok({"--workers", "auto"});
  EXPECT_GE(c.workers, 1u);
  EXPECT_LE(c.workers, kMaxWorkers);
}

TEST(Reload, ReadsTheFileAgain) {
  TempFile file("workers: 2\n");
  std::vector<std::string> args{"-c", file.path(), "-b", "http://a:1"};
  auto env = envOf({});
  LoadResult first = reload(args, env);
  ASSERT_TRUE(first.config) << joined(first.errors);
  EXPECT_EQ(first.config->workers, 2u);

  file.write("workers: 3\n");
  LoadResult second = reload(args, env);
  ASSERT_TRUE(second.config) << joined(second.errors);
  EXPECT_EQ(second.config->workers, 3u);
  EXPECT_EQ(second.config->backends.size(), 1u);  // the flags still apply

  file.write("workers: lots\n");
  LoadResult bad = reload(args, env);
  EXPECT_EQ(bad.exit_code, ExitCode::kConfigInvalid);
  EXPECT_ERROR(bad.errors, "workers: \"lots\" is not 1..256 or auto");
}

}  // namespace
}  // namespace tether::conf

namespace tether::conf {
namespace {

TEST(Load, CompressionDefaultsOff) {
  Config c = ok({});
  EXPECT_FALSE(c.compression.enabled);
  EXPECT_EQ(c.compression.algorithms,
            (std::vector<Coding>{Coding::kZstd, Coding::kBrotli, Coding::kGzip}));
  EXPECT_EQ(c.compression.min_length, 1024u);
  EXPECT_EQ(c.compression.content_types, kDefaultCompressibleTypes);
}

TEST(Load, CompressionKeysAndARouteOverride) {
  TempFile file(R"(
compression:
  enabled: true
  algorithms: [gzip, br]
  levels: { zstd: 19, br: 0, gzip: 9 }
  min_length: 2KiB
  content_types: [text/*, application/json, "application/*+xml"]
routes:
  - match: { path_prefix: /api/ }
    compression: { enabled: false }
  - match: { path_prefix: /_app/ }
)");
  Config c = ok({"-c", file.path()});
  EXPECT_TRUE(c.compression.enabled);
  EXPECT_EQ(c.compression.algorithms, (std::vector<Coding>{Coding::kGzip, Coding::kBrotli}));
  EXPECT_EQ(c.compression.zstd_level, 19);
  EXPECT_EQ(c.compression.brotli_level, 0);
  EXPECT_EQ(c.compression.gzip_level, 9);
  EXPECT_EQ(c.compression.min_length, 2048u);
  EXPECT_EQ(c.compression.content_types,
            (std::vector<std::string>{"text/*", "application/json", "application/*+xml"}));
  ASSERT_EQ(c.routes.size(), 2u);
  ASSERT_TRUE(c.routes[0].compression.has_value());
  EXPECT_FALSE(c.routes[0].compression->enabled);
  // The rest of a route's compression is the top level's.
  EXPECT_EQ(c.routes[0].compression->algorithms, c.compression.algorithms);
  EXPECT_EQ(c.routes[0].compression->min_length, 2048u);
  EXPECT_FALSE(c.routes[1].compression.has_value());
}

TEST(Load, CompressionErrorsNameTheirPath) {
  auto errors = fileErrors(R"(
compression:
  enabled: sometimes
  algorithms: [gzip, deflate, gzip]
  levels: { zstd: 22, br: 12, gzip: 0, lz4: 1 }
  min_length: big
  content_types: [text, "application/*json", "image/*", "a/b c"]
  window: 15
routes:
  - match: { path_prefix: / }
    compression: { algorithms: [] }
)");
  EXPECT_ERROR(errors, "compression.enabled: \"sometimes\" is not true or false");
  EXPECT_ERROR(errors, "compression.algorithms[1]: \"deflate\" is not one of zstd|br|gzip");
  EXPECT_ERROR(errors, "compression.algorithms[2]: \"gzip\" is listed twice");
  EXPECT_ERROR(errors, "compression.levels.zstd: must be 1..19, got 22");
  EXPECT_ERROR(errors, "compression.levels.br: must be 0..11, got 12");
  EXPECT_ERROR(errors, "compression.levels.gzip: must be 1..9, got 0");
  EXPECT_ERROR(errors, "compression.levels.lz4: unknown key");
  EXPECT_ERROR(errors, "compression.min_length: \"big\" is not a size");
  EXPECT_ERROR(errors, "compression.content_types[0]: \"text\" is not a media type");
  EXPECT_ERROR(errors, "compression.content_types[1]: \"application/*json\" is not a media type");
  EXPECT_ERROR(errors, "compression.content_types[3]: \"a/b c\" is not a media type");
  EXPECT_ERROR(errors, "compression.window: unknown key");
  EXPECT_ERROR(errors, "routes[0].compression.algorithms: is empty (use enabled: false)");
  EXPECT_EQ(errors.size(), 13u) << joined(errors);
}

}  // namespace
}  // namespace tether::conf

namespace tether::conf {
namespace {

TEST(Load, Http2DefaultsAreTheContracts) {
  Config c = ok({});
  EXPECT_EQ(c.http2.max_concurrent_streams, 100u);
  EXPECT_EQ(c.http2.initial_window, 64u * 1024);
  EXPECT_EQ(c.http2.connection_window, 1024u * 1024);
  EXPECT_EQ(c.http2.max_frame_size, 16384u);
  EXPECT_FALSE(c.http2.websockets);
  EXPECT_EQ(c.http2.max_streams_per_connection, 10000u);
  EXPECT_EQ(c.http2.glitch_budget, 1000u);
  ASSERT_EQ(c.listeners.size(), 1u);
  EXPECT_TRUE(c.listeners[0].h2c);
  EXPECT_EQ(c.listeners[0].alpn, (std::vector<std::string>{"h2", "http/1.1"}));
}

TEST(Load, Http2KeysAndListenerProtocols) {
  TempFile file(R"(
http2:
  max_concurrent_streams: 250
  initial_window: 256KiB
  connection_window: 4MiB
  max_frame_size: 32KiB
  websockets: true
  max_streams_per_connection: 500
  glitch_budget: 64
listeners:
  - { address: 127.0.0.1:0, h2c: false }
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      alpn: [http/1.1]
)");
  Config c = ok({"-c", file.path()});
  EXPECT_EQ(c.http2.max_concurrent_streams, 250u);
  EXPECT_EQ(c.http2.initial_window, 256u * 1024);
  EXPECT_EQ(c.http2.connection_window, 4u * 1024 * 1024);
  EXPECT_EQ(c.http2.max_frame_size, 32u * 1024);
  EXPECT_TRUE(c.http2.websockets);
  EXPECT_EQ(c.http2.max_streams_per_connection, 500u);
  EXPECT_EQ(c.http2.glitch_budget, 64u);
  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_FALSE(c.listeners[0].h2c);
  EXPECT_EQ(c.listeners[1].alpn, (std::vector<std::string>{"http/1.1"}));
}

TEST(Load, Http2ErrorsNameTheirPath) {
  auto errors = fileErrors(R"(
http2:
  max_concurrent_streams: 0
  initial_window: 3GiB
  connection_window: 1KiB
  max_frame_size: 1KiB
  websockets: maybe
  glitch_budget: -1
  push: true
listeners:
  - { address: 127.0.0.1:0, h2c: sometimes }
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      alpn: [h2, spdy/3, h2]
  - address: 127.0.0.1:0
    tls:
      certificates: [{ cert: a.pem, key: a.key }]
      alpn: []
)");
  EXPECT_ERROR(errors, "http2.max_concurrent_streams: must be 1..2147483647");
  EXPECT_ERROR(errors, "http2.initial_window: must be at most 2GiB - 1");
  EXPECT_ERROR(errors, "http2.connection_window: must be at least 65535 bytes");
  EXPECT_ERROR(errors, "http2.max_frame_size: must be at least 16384 bytes");
  EXPECT_ERROR(errors, "http2.websockets: \"maybe\" is not true or false");
  EXPECT_ERROR(errors, "http2.glitch_budget:");
  EXPECT_ERROR(errors, "http2.push:");
  EXPECT_ERROR(errors, "listeners[0].h2c: \"sometimes\" is not true or false");
  EXPECT_ERROR(errors, "listeners[1].tls.alpn[1]: \"spdy/3\" is not a protocol tether speaks");
  EXPECT_ERROR(errors, "listeners[1].tls.alpn[2]: \"h2\" is listed twice");
  EXPECT_ERROR(errors, "listeners[2].tls.alpn: must name at least one protocol");
}

TEST(Load, RouteCacheKeysAndDefaults) {
  TempFile file(R"(
routes:
  - match: { path_prefix: /_app/immutable/ }
    cache: { max_size: 1MiB, max_object: 256KiB, ignore_request_headers: [Cookie, authorization] }
  - match: { path_prefix: /static/ }
    cache: {}
  - match: { path_prefix: /api/ }
  - match: { path_prefix: /small/ }
    cache: { max_size: 1MiB }
)");
  Config c = ok({"-c", file.path()});
  ASSERT_EQ(c.routes.size(), 4u);
  ASSERT_TRUE(c.routes[3].cache.has_value());
  EXPECT_EQ(c.routes[3].cache->max_object, 1024u * 1024);  // the default, down to max_size
  ASSERT_TRUE(c.routes[0].cache.has_value());
  EXPECT_TRUE(c.routes[0].cache->enabled);
  EXPECT_EQ(c.routes[0].cache->max_size, 1024u * 1024);
  EXPECT_EQ(c.routes[0].cache->max_object, 256u * 1024);
  EXPECT_TRUE(c.routes[0].cache->ignore_cookie);
  EXPECT_TRUE(c.routes[0].cache->ignore_authorization);
  ASSERT_TRUE(c.routes[1].cache.has_value());
  EXPECT_EQ(c.routes[1].cache->max_size, 64u * 1024 * 1024);
  EXPECT_EQ(c.routes[1].cache->max_object, 8u * 1024 * 1024);
  EXPECT_FALSE(c.routes[1].cache->ignore_cookie);
  EXPECT_FALSE(c.routes[2].cache.has_value());
}

TEST(Load, RouteCacheErrorsNameTheirPath) {
  auto errors = fileErrors(R"(
routes:
  - match: { path_prefix: / }
    cache: { enabled: maybe, max_size: 1KiB, ignore_request_headers: [cookie, accept], ttl: 5s }
  - match: { path_prefix: /b/ }
    cache: { max_size: 1MiB, max_object: 2MiB }
)");
  EXPECT_ERROR(errors, "routes[0].cache.enabled: \"maybe\" is not true or false");
  EXPECT_ERROR(errors, "routes[0].cache.max_size: must be at least 65536 bytes");
  EXPECT_ERROR(errors, "routes[0].cache.ignore_request_headers[1]: \"accept\" is not one of cookie, authorization");
  EXPECT_ERROR(errors, "routes[0].cache.ttl: unknown key");
  EXPECT_ERROR(errors, "routes[1].cache.max_object: is larger than max_size");
  EXPECT_EQ(errors.size(), 5u) << joined(errors);
}

}  // namespace
}  // namespace tether::conf
