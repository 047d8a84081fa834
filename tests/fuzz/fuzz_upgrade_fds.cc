// libFuzzer target: the upgrade's environment (proxy/upgrade.h):
// parseUpgradeFds, parseUpgradeReadyFd, formatUpgradeFds and planUpgrade.
//
// Input: the TETHER_UPGRADE_FDS value up to the first NUL byte; after it, one
// byte of worker count (1..16), one byte of options (bit 0: the sockets have
// SO_REUSEPORT; bits 1..3: how many bound addresses they spread over), then
// the configured listener addresses and, last, the admin address, separated
// by newlines. Checked: a refusal says why; a list parsed prints back as
// itself and parses again the same; its descriptors are 3..kMaxInheritedFd,
// distinct, at most kMaxInheritedFds, one admin at most; the plan opens every
// inherited descriptor exactly once (by one worker, not as a shared one) or
// lists it unused, and shares or names no descriptor it was not given.
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/upgrade.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using tether::proxy::InheritedFd;
using tether::proxy::InheritedTake;
using tether::proxy::UpgradePlan;

std::vector<std::string> lines(std::string_view s) {
  std::vector<std::string> out;
  std::size_t p = 0;
  while (p <= s.size()) {
    std::size_t q = s.find('\n', p);
    if (q == std::string_view::npos) q = s.size();
    out.emplace_back(s.substr(p, q - p));
    p = q + 1;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::size_t nul = in.find('\0');
  std::string_view text = in.substr(0, nul);
  std::string_view rest = nul == std::string_view::npos ? std::string_view() : in.substr(nul + 1);

  std::string why;
  std::optional<int> ready = tether::proxy::parseUpgradeReadyFd(text, &why);
  FUZZ_CHECK(ready ? (*ready >= 3 && *ready <= tether::proxy::kMaxInheritedFd) : !why.empty());

  why.clear();
  std::optional<std::vector<InheritedFd>> fds = tether::proxy::parseUpgradeFds(text, &why);
  if (!fds) {
    FUZZ_CHECK(!why.empty());
    FUZZ_CHECK(why.size() < 400);  // quotes the entry bounded
    return 0;
  }
  FUZZ_CHECK(!fds->empty() && fds->size() <= tether::proxy::kMaxInheritedFds);
  std::set<int> seen;
  int admins = 0;
  for (const InheritedFd& f : *fds) {
    FUZZ_CHECK(f.fd >= 3 && f.fd <= tether::proxy::kMaxInheritedFd);
    FUZZ_CHECK(seen.insert(f.fd).second);
    FUZZ_CHECK(!f.address.empty());
    if (f.kind == InheritedFd::Kind::kAdmin) ++admins;
  }
  FUZZ_CHECK(admins <= 1);
  const std::string printed = tether::proxy::formatUpgradeFds(*fds);
  FUZZ_CHECK(printed == text);
  std::optional<std::vector<InheritedFd>> again = tether::proxy::parseUpgradeFds(printed, &why);
  FUZZ_CHECK(again && again->size() == fds->size());

  std::uint32_t workers = rest.empty() ? 1 : 1 + static_cast<std::uint8_t>(rest[0]) % 16;
  std::uint8_t options = rest.size() > 1 ? static_cast<std::uint8_t>(rest[1]) : 0;
  std::vector<std::string> config = lines(rest.size() > 2 ? rest.substr(2) : std::string_view());
  std::string admin = config.back();
  config.pop_back();
  std::size_t spread = 1 + ((options >> 1) & 7);
  for (std::size_t i = 0; i < fds->size(); ++i) {
    (*fds)[i].reuse_port = options & 1;
    (*fds)[i].bound = "127.0.0.1:" + std::to_string(40000 + i % spread);
  }

  UpgradePlan plan = tether::proxy::planUpgrade(*fds, config, admin, workers);
  FUZZ_CHECK(plan.proxy.size() == config.size());
  std::map<int, int> opened;  // descriptor -> times opened as its own (not shared)
  std::set<int> shared;
  for (const auto& per_worker : plan.proxy) {
    FUZZ_CHECK(per_worker.size() == workers);
    for (const std::vector<InheritedTake>& takes : per_worker) {
      for (const InheritedTake& t : takes) {
        FUZZ_CHECK(seen.count(t.fd) == 1);
        if (t.shared) {
          shared.insert(t.fd);
        } else {
          ++opened[t.fd];
        }
      }
    }
  }
  for (int fd : shared) FUZZ_CHECK(opened[fd] == 1);  // shared: a duplicate of one opened
  std::set<int> unused(plan.unused.begin(), plan.unused.end());
  FUZZ_CHECK(unused.size() == plan.unused.size());
  if (plan.admin >= 0) FUZZ_CHECK(seen.count(plan.admin) == 1 && !unused.count(plan.admin));
  for (int fd : seen) {
    int uses = (opened.count(fd) ? opened[fd] : 0) + static_cast<int>(unused.count(fd)) +
               (fd == plan.admin ? 1 : 0);
    FUZZ_CHECK(uses == 1);
  }
  return 0;
}
