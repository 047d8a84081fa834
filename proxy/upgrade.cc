#include "proxy/upgrade.h"

namespace tether::proxy {

namespace {

std::optional<int> parseFd(std::string_view text) {
  // Plain: no sign, no leading zero, so that a list prints back as itself.
  if (text.empty() || text.size() > 7 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
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

}  // namespace tether::proxy
