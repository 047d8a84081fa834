// Routing: the plan a path falls under and the affinity a request starts with.
#include "proxy/forward/route.h"

#include <gtest/gtest.h>

#include <vector>

namespace tether::forward {
namespace {

balancer::RequestView view(std::string_view path, std::string_view query,
                           const std::vector<balancer::HeaderField>& headers) {
  balancer::RequestView v;
  v.method = "GET";
  v.path = path;
  v.query = query;
  v.headers = headers;
  v.client_ip = "192.0.2.7";
  return v;
}

TEST(AffinityPlans, FirstMatchingRouteElseTheTopLevelElseNone) {
  conf::Config c;
  EXPECT_EQ(AffinityPlans(c).forPath("/"), nullptr);  // no keys, no inserted cookie
  c.affinity.keys = {"header:x-user"};
  conf::Route own;
  own.match.path_prefix = "/socket.io/";
  own.affinity = c.affinity;
  own.affinity->keys = {"engineio_sid"};
  conf::Route inherits;
  inherits.match.path_prefix = "/api/";
  c.routes = {own, inherits};
  AffinityPlans plans(c);
  ASSERT_NE(plans.forPath("/socket.io/x"), nullptr);
  EXPECT_TRUE((*plans.forPath("/socket.io/x"))->engineio);
  ASSERT_NE(plans.forPath("/api/v1"), nullptr);
  EXPECT_EQ(plans.forPath("/api/v1")->get(), plans.forPath("/other")->get());
  EXPECT_FALSE((*plans.forPath("/other"))->engineio);
}

TEST(StartAffinity, TakesTheFirstKeyTheRequestCarries) {
  conf::Config c;
  c.affinity.keys = {"header:x-user", "client_ip"};
  AffinityPlans plans(c);
  std::vector<balancer::HeaderField> h = {{"X-User", "alice"}};
  auto a = startAffinity(*plans.forPath("/"), view("/", "", h), false);
  ASSERT_TRUE(a);
  EXPECT_NE(a->key.find("alice"), std::string::npos);
  EXPECT_FALSE(a->store_key.empty());
  EXPECT_NE(a->hash, 0u);
  EXPECT_TRUE(a->set_cookie.empty());
  EXPECT_FALSE(a->sniffer);
}

TEST(StartAffinity, InsertsACookieWhenNoKeyApplies) {
  conf::Config c;
  c.affinity.keys = {"cookie:sid"};
  c.affinity.cookie.insert = true;
  AffinityPlans plans(c);
  auto a = startAffinity(*plans.forPath("/"), view("/", "", {}), true);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->key.empty());
  EXPECT_NE(a->set_cookie.find("tether_affinity="), std::string::npos);
  EXPECT_NE(a->set_cookie.find("Secure"), std::string::npos);
}

TEST(StartAffinity, AHandshakeWithoutKeyOnlySniffsAndNoneIsNothing) {
  conf::Config c;
  c.affinity.keys = {"engineio_sid"};
  AffinityPlans plans(c);
  auto a = startAffinity(*plans.forPath("/"), view("/socket.io/", "EIO=4&transport=polling", {}), false);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->key.empty());
  EXPECT_TRUE(a->sniffer);
  EXPECT_FALSE(startAffinity(*plans.forPath("/"), view("/", "", {}), false));
}

}  // namespace
}  // namespace tether::forward
