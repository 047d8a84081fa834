#include "proxy/forward/route.h"

#include <optional>

#include "balancer/picker.h"

namespace tether::forward {
namespace {

std::shared_ptr<const AffinityPlan> makePlan(const conf::Affinity& a) {
  auto p = std::make_shared<AffinityPlan>();
  p->cfg = a;
  for (const std::string& k : a.keys) {
    std::string why;
    std::optional<balancer::KeySpec> spec = balancer::parseKeySpec(k, &why);
    if (!spec) continue;  // the loader has validated them
    if (spec->source == balancer::KeySpec::Source::kEngineIoSid) p->engineio = true;
    p->keys.push_back(*spec);
  }
  if (p->keys.empty() && !a.cookie.insert) return nullptr;
  return p;
}

}  // namespace

AffinityPlans::AffinityPlans(const conf::Config& config) : top_(makePlan(config.affinity)) {
  for (const conf::Route& r : config.routes) {
    routes_.emplace_back(r.match.path_prefix, r.affinity ? makePlan(*r.affinity) : top_);
  }
}

const std::shared_ptr<const AffinityPlan>* AffinityPlans::forPath(std::string_view path) const {
  for (const auto& [prefix, plan] : routes_) {
    if (path.substr(0, prefix.size()) == prefix) return plan ? &plan : nullptr;
  }
  return top_ ? &top_ : nullptr;
}

std::unique_ptr<AffinityState> startAffinity(const std::shared_ptr<const AffinityPlan>& plan,
                                             const balancer::RequestView& view, bool tls) {
  auto aff = std::make_unique<AffinityState>();
  aff->plan = plan;
  for (const balancer::KeySpec& spec : plan->keys) {
    if (balancer::extractKey(spec, view, &aff->key)) break;
    aff->key.clear();
  }
  if (plan->engineio && balancer::isEngineIoHandshake(view)) {
    aff->sniffer = std::make_unique<balancer::EngineIoSidSniffer>();
  }
  if (aff->key.empty() && plan->cfg.cookie.insert) {
    std::string value = balancer::makeAffinityCookieValue();
    balancer::KeySpec spec{balancer::KeySpec::Source::kCookie, plan->cfg.cookie.name, ""};
    aff->key = balancer::makeKey(spec, value);
    aff->set_cookie = balancer::setCookieHeader(plan->cfg.cookie.name, value, plan->cfg.cookie.max_age, tls);
  }
  if (aff->key.empty()) {
    if (!aff->sniffer) return nullptr;
    return aff;
  }
  aff->store_key = balancer::pinStoreKey(aff->key);
  aff->hash = balancer::hashKey(aff->key);
  return aff;
}

}  // namespace tether::forward
