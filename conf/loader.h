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

#include <functional>
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

struct LoadResult {
  std::shared_ptr<Config> config;  // set when errors is empty
  std::vector<std::string> errors;
  ExitCode exit_code = ExitCode::kOk;  // kBadCommandLine or kConfigInvalid on error
  Invocation invocation;
};

// Looks up an environment variable; tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup processEnv();

// Full load: argv (argv[0] ignored) + environment + file named by -c or
// TETHER_CONFIG.
LoadResult load(int argc, const char* const* argv, const EnvLookup& env);

// Re-load for SIGHUP and POST /admin/reload: the same command line and
// environment as at start, the file read again.
LoadResult reload(const std::vector<std::string>& args, const EnvLookup& env);

// Building blocks, exposed for tests and for other modules.
std::optional<Millis> parseDuration(std::string_view s);   // "250ms" "5s" "30m" "1h" "1d"
std::optional<Bytes> parseSize(std::string_view s);        // "64KiB" "100MiB" "1GiB" "512"
// Expands ${VAR} and ${VAR:-default}; an unset VAR without default is an
// error appended to errors ("${VAR} is not set").
std::string expandEnv(std::string_view text, const EnvLookup& env, std::vector<std::string>& errors);
std::optional<HostPort> parseHostPort(std::string_view s, std::string* why);
std::optional<Cidr> parseCidr(std::string_view s);
bool isLoopback(const HostPort& hp);

}  // namespace tether::conf
