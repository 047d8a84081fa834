#include "proxy/upgrade.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tether::proxy {
namespace {

using Kind = InheritedFd::Kind;

std::vector<InheritedFd> parsed(const std::string& text) {
  std::string why;
  auto r = parseUpgradeFds(text, &why);
  EXPECT_TRUE(r.has_value()) << text << ": " << why;
  return r ? *r : std::vector<InheritedFd>{};
}

std::string refused(const std::string& text) {
  std::string why;
  auto r = parseUpgradeFds(text, &why);
  EXPECT_FALSE(r.has_value()) << text;
  EXPECT_FALSE(why.empty()) << text;
  return why;
}

TEST(ParseUpgradeFds, ReadsKindsAddressesAndDescriptors) {
  auto v = parsed("proxy:127.0.0.1:0=4,proxy:[::1]:8000=5,admin:127.0.0.1:9901=6");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].kind, Kind::kProxy);
  EXPECT_EQ(v[0].address, "127.0.0.1:0");
  EXPECT_EQ(v[0].fd, 4);
  EXPECT_EQ(v[1].address, "[::1]:8000");
  EXPECT_EQ(v[1].fd, 5);
  EXPECT_EQ(v[2].kind, Kind::kAdmin);
  EXPECT_EQ(v[2].fd, 6);
}

TEST(ParseUpgradeFds, FormatIsItsInverse) {
  const std::string text = "proxy:0.0.0.0:8000=4,proxy:0.0.0.0:8000=5,admin:localhost:9901=6";
  EXPECT_EQ(formatUpgradeFds(parsed(text)), text);
}

TEST(ParseUpgradeFds, RefusesHostileValues) {
  refused("");
  refused(",");
  refused("proxy:127.0.0.1:80=4,");
  refused("proxy127.0.0.1=4");
  refused("proxy:127.0.0.1:80");
  refused("tunnel:127.0.0.1:80=4");
  refused("proxy:=4");
  refused("proxy:127.0.0.1:80=");
  refused("proxy:127.0.0.1:80=0");   // stdin
  refused("proxy:127.0.0.1:80=2");   // stderr
  refused("proxy:127.0.0.1:80=-4");
  refused("proxy:127.0.0.1:80=+4");
  refused("proxy:127.0.0.1:80= 4");
  refused("proxy:127.0.0.1:80=4x");
  refused("proxy:127.0.0.1:80=0x10");
  refused("proxy:127.0.0.1:80=04");  // printed back, it would be another list
  refused("proxy:127.0.0.1:80=99999999999999999999");
  refused("proxy:127.0.0.1:80=2000000");
  refused("proxy:127.0.0.1:80=4,proxy:127.0.0.1:81=4");  // one descriptor twice
  refused("admin:127.0.0.1:80=4,admin:127.0.0.1:81=5");  // two admin sockets
  refused(std::string("proxy:127.0.0.1:80\n=4"));
  refused(std::string("proxy:127.0.0.1:80\0=4", 21));
  refused("proxy:h\xc3\xa9:80=4");
  refused("proxy:" + std::string(600, 'a') + "=4");
  std::string many;
  for (int i = 0; i <= static_cast<int>(kMaxInheritedFds); ++i)
    many += (i ? "," : "") + std::string("proxy:a:1=") + std::to_string(3 + i);
  EXPECT_NE(refused(many).find("entries"), std::string::npos);
}

TEST(ParseUpgradeFds, AnErrorQuotesTheEntryBounded) {
  std::string why = refused("proxy:127.0.0.1:80=x" + std::string(500, 'y'));
  EXPECT_LT(why.size(), 200u) << why;
  EXPECT_NE(why.find("descriptor"), std::string::npos) << why;
}

TEST(ParseUpgradeReadyFd, TakesAPlainDecimalAboveStderr) {
  std::string why;
  EXPECT_EQ(parseUpgradeReadyFd("3", &why), 3);
  for (const char* bad : {"", "2", "-1", "3 ", "x", "999999999", "0x3", "03"}) {
    EXPECT_FALSE(parseUpgradeReadyFd(bad, &why).has_value()) << bad;
  }
}

InheritedFd sock(Kind kind, const std::string& address, int fd, const std::string& bound,
                 bool reuse_port) {
  return InheritedFd{kind, address, fd, bound, reuse_port};
}

using Takes = std::vector<InheritedTake>;

TEST(PlanUpgrade, SameWorkersTakeTheirOwnSockets) {
  std::vector<InheritedFd> in = {sock(Kind::kProxy, "0.0.0.0:8000", 4, "0.0.0.0:8000", true),
                                 sock(Kind::kProxy, "0.0.0.0:8000", 5, "0.0.0.0:8000", true),
                                 sock(Kind::kAdmin, "127.0.0.1:9901", 6, "127.0.0.1:9901", false)};
  UpgradePlan p = planUpgrade(in, {"0.0.0.0:8000"}, "127.0.0.1:9901", 2);
  ASSERT_EQ(p.proxy.size(), 1u);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}}));
  EXPECT_EQ(p.proxy[0][1], (Takes{{5, false}}));
  EXPECT_EQ(p.admin, 6);
  EXPECT_TRUE(p.unused.empty());
}

TEST(PlanUpgrade, FewerWorkersKeepEveryQueueOfTheGroup) {
  std::vector<InheritedFd> in;
  for (int fd = 4; fd < 8; ++fd) in.push_back(sock(Kind::kProxy, "0.0.0.0:8000", fd, "0.0.0.0:8000", true));
  UpgradePlan p = planUpgrade(in, {"0.0.0.0:8000"}, "127.0.0.1:9901", 1);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}, {5, false}, {6, false}, {7, false}}));
  p = planUpgrade(in, {"0.0.0.0:8000"}, "127.0.0.1:9901", 3);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}, {7, false}}));
  EXPECT_EQ(p.proxy[0][1], (Takes{{5, false}}));
  EXPECT_EQ(p.proxy[0][2], (Takes{{6, false}}));
  EXPECT_TRUE(p.unused.empty());
  EXPECT_EQ(p.admin, -1);
}

TEST(PlanUpgrade, MoreWorkersJoinAReusePortGroupOrShareASocketWithout) {
  std::vector<InheritedFd> reuse = {sock(Kind::kProxy, "0.0.0.0:8000", 4, "0.0.0.0:8000", true)};
  UpgradePlan p = planUpgrade(reuse, {"0.0.0.0:8000"}, "", 3);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}}));
  EXPECT_TRUE(p.proxy[0][1].empty());  // binds a new SO_REUSEPORT socket
  EXPECT_TRUE(p.proxy[0][2].empty());
  std::vector<InheritedFd> plain = {sock(Kind::kProxy, "0.0.0.0:8000", 4, "0.0.0.0:8000", false)};
  p = planUpgrade(plain, {"0.0.0.0:8000"}, "", 2);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}}));
  EXPECT_EQ(p.proxy[0][1], (Takes{{4, true}}));
}

TEST(PlanUpgrade, PortZeroListenersMatchInOrderByTheirBoundSockets) {
  std::vector<InheritedFd> in = {sock(Kind::kProxy, "127.0.0.1:0", 4, "127.0.0.1:40001", false),
                                 sock(Kind::kProxy, "127.0.0.1:0", 5, "127.0.0.1:40002", false)};
  UpgradePlan p = planUpgrade(in, {"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, "", 1);
  ASSERT_EQ(p.proxy.size(), 3u);
  EXPECT_EQ(p.proxy[0][0], (Takes{{4, false}}));
  EXPECT_EQ(p.proxy[1][0], (Takes{{5, false}}));
  EXPECT_TRUE(p.proxy[2][0].empty());  // a new listener
}

TEST(PlanUpgrade, DroppedListenersAndAMovedAdminAreUnused) {
  std::vector<InheritedFd> in = {sock(Kind::kProxy, "0.0.0.0:8000", 4, "0.0.0.0:8000", false),
                                 sock(Kind::kProxy, "0.0.0.0:8001", 5, "0.0.0.0:8001", false),
                                 sock(Kind::kAdmin, "127.0.0.1:9901", 6, "127.0.0.1:9901", false)};
  UpgradePlan p = planUpgrade(in, {"0.0.0.0:8001", "0.0.0.0:8002"}, "127.0.0.1:9902", 1);
  EXPECT_EQ(p.proxy[0][0], (Takes{{5, false}}));
  EXPECT_TRUE(p.proxy[1][0].empty());
  EXPECT_EQ(p.admin, -1);
  EXPECT_EQ(p.unused, (std::vector<int>{6, 4}));
}

}  // namespace
}  // namespace tether::proxy
