// libFuzzer target: the configuration loader (conf/loader.h) on the input as
// the text of the YAML file, with an environment and command-line flags the
// input may add.
//
// Input: the YAML file's text; after the first NUL byte (if any), one entry
// a line: NAME=VALUE sets an environment variable (TETHER_* or one the file
// expands with ${NAME}), a line starting with '-' is a command-line argument.
// Checked: load() never throws (loader.h: "Never throws"), its result is
// consistent (a config exactly when there is no error and no --help or
// --version; every error says where), and the parsing building blocks take
// every line of the input without a crash, an exception or undefined
// behaviour.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/loader.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace c = tether::conf;

std::vector<std::string_view> lines(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t at = 0; at < s.size();) {
    std::size_t nl = s.find('\n', at);
    if (nl == std::string_view::npos) nl = s.size();
    out.push_back(s.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

// The loader reads the files it is told about (the config, admin.token_file):
// keep it off device files that never end, and on the file given here.
bool harmless(std::string_view s) {
  for (std::string_view bad : {"/dev", "/proc", "/sys", "/run", "fifo"})
    if (s.find(bad) != std::string_view::npos) return false;
  return true;
}

void buildingBlocks(std::string_view line) {
  // Both the whole line and what follows "key: ", as a file would hold it.
  std::string_view values[2] = {line, line};
  std::size_t colon = line.find(": ");
  if (colon != std::string_view::npos) values[1] = line.substr(colon + 2);
  std::string why;
  for (std::string_view v : values) {
    if (std::optional<c::Millis> ms = c::parseDuration(v)) FUZZ_CHECK(*ms >= 0);
    (void)c::parseSize(v);
    if (auto hp = c::parseHostPort(v, &why)) {
      FUZZ_CHECK(!hp->host.empty());
      (void)c::isLoopback(*hp);
      (void)hp->str();
    }
    (void)c::parseCidr(v);
    if (auto bc = c::parseBackendUrl(v, &why)) FUZZ_CHECK(!bc->address.host.empty());
    (void)c::parseRedisUrl(v, &why);
    (void)c::checkAffinityKey(v, &why);
    if (auto w = c::parseWorkers(v, &why)) FUZZ_CHECK(*w >= 1 && *w <= c::kMaxWorkers);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  if (!harmless(in)) return 0;
  std::size_t nul = in.find('\0');
  std::string_view yaml = in.substr(0, nul);
  std::map<std::string, std::string, std::less<>> env;
  std::vector<std::string> flags;
  if (nul != std::string_view::npos) {
    for (std::string_view l : lines(in.substr(nul + 1))) {
      if (l.empty()) continue;
      if (l[0] == '-') {
        // Not another config file: the one below is the input.
        if (l.starts_with("-c") || l.starts_with("--c")) continue;
        flags.emplace_back(l);
        continue;
      }
      std::size_t eq = l.find('=');
      if (eq == std::string_view::npos || l.substr(0, eq) == "TETHER_CONFIG") continue;
      env[std::string(l.substr(0, eq))] = std::string(l.substr(eq + 1));
    }
  }

  for (std::string_view l : lines(in)) buildingBlocks(l);
  std::vector<std::string> expand_errors;
  c::EnvLookup lookup = [&env](std::string_view name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
  (void)c::expandEnv(yaml, lookup, expand_errors);

  // The file, in memory; the loader opens it by name.
  int fd = memfd_create("tether-fuzz-config", MFD_CLOEXEC);
  if (fd < 0) return 0;
  for (std::size_t done = 0; done < yaml.size();) {
    ssize_t n = write(fd, yaml.data() + done, yaml.size() - done);
    if (n <= 0) {
      close(fd);
      return 0;
    }
    done += static_cast<std::size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::vector<const char*> argv = {"tether", "-c", path.c_str()};
  for (const std::string& f : flags) argv.push_back(f.c_str());

  c::LoadResult r;
  try {
    r = c::load(static_cast<int>(argv.size()), argv.data(), lookup);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "conf::load threw: %s\n", e.what());
    __builtin_trap();
  } catch (...) {
    std::fprintf(stderr, "conf::load threw something\n");
    __builtin_trap();
  }
  close(fd);

  const bool asked = r.invocation.help || r.invocation.version;
  if (asked) {
    // --help or --version: no configuration is read; only a bad command line
    // (an unknown flag beside it) is reported, and exits 2.
    FUZZ_CHECK(!r.config);
    FUZZ_CHECK(r.errors.empty() || r.exit_code == c::ExitCode::kBadCommandLine);
  } else if (r.errors.empty()) {
    FUZZ_CHECK(r.config != nullptr);
    FUZZ_CHECK(r.exit_code == c::ExitCode::kOk);
    const c::Config& cfg = *r.config;
    FUZZ_CHECK(cfg.workers >= 1 && cfg.workers <= c::kMaxWorkers);
    FUZZ_CHECK(!cfg.listeners.empty());
    for (const c::BackendConf& b : cfg.backends) FUZZ_CHECK(b.weight <= c::kMaxWeight);
  } else {
    FUZZ_CHECK(r.config == nullptr);
    FUZZ_CHECK(r.exit_code == c::ExitCode::kConfigInvalid ||
               r.exit_code == c::ExitCode::kBadCommandLine);
    for (const std::string& e : r.errors) FUZZ_CHECK(e.find(": ") != std::string::npos);
  }
  return 0;
}
