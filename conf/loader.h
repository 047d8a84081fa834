// Building a Config from defaults, the YAML file, TETHER_* and the command line.
//
// Precedence, SPEC.md: command line > environment > file > defaults. Inside
// the file, ${VAR} and ${VAR:-default} expand from the environment before
// the YAML is parsed. Every error is collected with its dotted path
// ("backends[2].url: no port in \"http://app\""), never only the first one.
//
// Pure: no I/O but reading the files it is told about (config, token_file),
// no logging, no exit(). main() decides what to print and the exit code.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"

namespace tether::conf {

// SPEC.md exit codes.
enum class ExitCode : int { kOk = 0, kConfigInvalid = 1, kBadCommandLine = 2, kCannotStart = 3 };

// What the command line asked for, beyond the configuration itself.
struct Invocation {
  bool check_config = false;
  bool version = false;
  bool help = false;
  std::string help_text;  // filled when help is set
};

// With --version or --help nothing else is read: config stays empty, errors
// too, and main() prints and exits 0. With --check-config the configuration is
// loaded as usual and main() reports instead of starting.
struct LoadResult {
  std::shared_ptr<Config> config;   // set when errors is empty (but see --version/--help)
  std::vector<std::string> errors;  // each "path: what"; all of them, not the first
  // kBadCommandLine when a flag is unknown or a flag's value is bad (nothing
  // else is then read), kConfigInvalid for the file or the environment.
  ExitCode exit_code = ExitCode::kOk;
  Invocation invocation;
};

// Looks up an environment variable; tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup processEnv();

// Full load: argv (argv[0] ignored) + environment + file named by -c or
// TETHER_CONFIG. Never throws. Reads the config file and admin.token_file.
// Errors name where they come from: a dotted path into the file
// ("health.rise: ..."), the variable ("TETHER_BACKENDS: ...") or the flag
// ("--backend: ..."). An empty variable counts as unset.
LoadResult load(int argc, const char* const* argv, const EnvLookup& env);

// Re-load for SIGHUP and POST /admin/reload: the same command line and
// environment as at start, the file read again. args is argv[1..argc), without
// the program name.
LoadResult reload(const std::vector<std::string>& args, const EnvLookup& env);

// Building blocks, exposed for tests and for other modules. Those taking
// `why` set it (when not null) to a message without a path on failure.

// "250ms" "5s" "30m" "1h" "1d", or several in a row ("1h30m"); "0" is the
// only number allowed without a unit.
std::optional<Millis> parseDuration(std::string_view s);
// "512" (bytes), "64KiB" "100MiB" "1GiB" "1TiB" (1024-based), "64KB" "100MB"
// "1GB" "1TB" (1000-based), "512B".
std::optional<Bytes> parseSize(std::string_view s);
// Expands ${VAR} and ${VAR:-default} (default also when VAR is empty, as in
// sh); "$${" is a literal "${". Lines whose first non-blank character is '#'
// (YAML comments) are left alone. An unset VAR without default is an error
// appended to errors ("line 3: ${VAR} is not set"), and expands to "".
std::string expandEnv(std::string_view text, const EnvLookup& env,
                      std::vector<std::string>& errors);
// "0.0.0.0:8000", ":8000" (host 0.0.0.0), "[::1]:9901", "localhost:80";
// port 0..65535 (0: any free port).
std::optional<HostPort> parseHostPort(std::string_view s, std::string* why);
// "10.0.0.0/8", "fd00::/8"; a bare address is /32 or /128. Host bits are cleared.
std::optional<Cidr> parseCidr(std::string_view s);
// localhost, 127.0.0.0/8 and ::1.
bool isLoopback(const HostPort& hp);
// "http://host:port" or "https://host:port" with an optional trailing "/".
// weight and resolve_interval are the defaults; tls is set by the loader.
std::optional<BackendConf> parseBackendUrl(std::string_view url, std::string* why);
// A Redis store URL (config.h RedisUrl): redis://, rediss:// or redis+sentinel://,
// user and password percent-decoded. Errors show the URL with the password masked.
std::optional<RedisUrl> parseRedisUrl(std::string_view url, std::string* why);
// engineio_sid, client_ip, cookie:NAME, header:NAME, query:NAME,
// jwt:cookie:NAME:CLAIM, jwt:header:NAME:CLAIM.
bool checkAffinityKey(std::string_view key, std::string* why);
// "1".."256" or "auto" (the CPU count, at most kMaxWorkers).
std::optional<std::uint32_t> parseWorkers(std::string_view s, std::string* why);

}  // namespace tether::conf
