// AdminSync (proxy/admin_sync.h) on a real loop against a scripted Redis
// (scripted_redis.h): what it reads at the start, what it ignores, how a
// change is written, and a change made while Redis is away. The merge rule
// itself is balancer/admin_state.h's (tests/unit/balancer/admin_state_test.cc);
// the behaviour with a real redis-server is tests/e2e/test_admin_shared.py's.
// Every test ends with every handle closed.
#include "proxy/admin_sync.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tests/unit/proxy/scripted_redis.h"

namespace tether::proxy {
namespace {

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }

std::string hash(const std::vector<std::string>& fields_and_values) {
  std::string out = "*" + std::to_string(fields_and_values.size()) + "\r\n";
  for (const std::string& f : fields_and_values) out += bulk(f);
  return out;
}

const std::string kSubscribed = "*3\r\n" + bulk("subscribe") + bulk("tether:admin") + ":1\r\n";

struct Applied : AdminSync::Target {
  std::vector<std::pair<std::string, balancer::AdminState>> calls;
  void applySharedAdmin(balancer::Backend* b, const balancer::AdminState& now, const balancer::AdminState&) override {
    calls.emplace_back(b->name, now);
  }
};

class AdminSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    for (const char* name : {"10.0.0.1:80", "10.0.0.2:80"}) {
      auto b = std::make_unique<balancer::Backend>();
      b->name = name;
      backends_.add(std::move(b));
    }
  }
  void TearDown() override {
    if (sync_) sync_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  void start(std::uint16_t port) {
    AdminSync::Options o;
    o.connect_timeout_ms = 2'000;
    o.reply_timeout_ms = 500;
    o.by = "test 127.0.0.1:9901";
    sync_ = std::make_unique<AdminSync>(
        &loop_, o, [port] { return std::optional<conf::HostPort>(conf::HostPort{"127.0.0.1", port}); }, backends_,
        &applied_);
  }

  void runUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
  }

  uv_loop_t loop_;
  balancer::BackendTable backends_;
  Applied applied_;
  std::unique_ptr<AdminSync> sync_;
};

TEST_F(AdminSyncTest, AppliesWhatRedisHoldsOnceSubscribedAndSettles) {
  ScriptedRedis redis({{"PING", "+PONG\r\n"},
                       {"SUBSCRIBE", kSubscribed},
                       {"HGETALL", hash({"drain", "1 5 900", "version", "3", "by", "other 10.1.1.1:9901"})}});
  start(redis.port());
  runUntil([&] { return applied_.calls.size() == 2 && sync_->settled(); });
  ASSERT_EQ(applied_.calls.size(), 2u);
  EXPECT_TRUE(sync_->up());
  EXPECT_TRUE(sync_->settled());
  for (const auto& [name, st] : applied_.calls) {
    EXPECT_TRUE(st.has_drain && st.drain) << name;
    EXPECT_EQ(st.deadline_ms, 900);
    EXPECT_EQ(st.by, "other 10.1.1.1:9901");
  }
  const balancer::KnownAdminState* k = sync_->known("10.0.0.2:80");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->state.version, 3u);
  EXPECT_FALSE(k->drain_pending);
}

TEST_F(AdminSyncTest, WhatIsNoHashIsIgnored) {
  ScriptedRedis redis({{"PING", "+PONG\r\n"},
                       {"SUBSCRIBE", kSubscribed},
                       {"HGETALL", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"}});
  start(redis.port());
  runUntil([&] { return sync_->settled() && sync_->up(); });
  ASSERT_TRUE(sync_->settled());
  EXPECT_TRUE(applied_.calls.empty());
  EXPECT_EQ(sync_->known("10.0.0.1:80"), nullptr);
}

TEST_F(AdminSyncTest, AChangeIsOneTransactionThenReadBack) {
  ScriptedRedis redis({{"PING", "+PONG\r\n"},
                       {"SUBSCRIBE", kSubscribed},
                       {"HGETALL", "*0\r\n"},
                       {"MULTI", "+OK\r\n"},
                       {"HSET", "+QUEUED\r\n"},
                       {"HINCRBY", "+QUEUED\r\n"},
                       {"PUBLISH", "+QUEUED\r\n"},
                       {"EXEC", "*3\r\n:1\r\n:7\r\n:1\r\n"}});
  start(redis.port());
  runUntil([&] { return sync_->settled() && sync_->up(); });
  ASSERT_TRUE(sync_->up());
  balancer::AdminState st;
  st.has_drain = st.drain = true;
  st.drain_ms = 5;
  EXPECT_TRUE(sync_->changed(backends_.at(0), st, true, false));
  EXPECT_TRUE(sync_->known("10.0.0.1:80")->drain_pending);
  auto tail = [&] {
    std::vector<std::string> c = redis.commands();
    std::vector<std::string> out;
    bool after = false;
    for (const std::string& name : c) {
      if (name == "MULTI") after = true;
      if (after) out.push_back(name);
    }
    return out;
  };
  runUntil([&] { return tail().size() >= 6; });
  // HGETALL after EXEC: the change is pending until a read shows it.
  std::vector<std::string> got = tail();
  got.resize(std::min<std::size_t>(got.size(), 6));
  EXPECT_EQ(got, (std::vector<std::string>{"MULTI", "HSET", "HINCRBY", "PUBLISH", "EXEC", "HGETALL"}));
  EXPECT_EQ(sync_->known("10.0.0.1:80")->state.version, 7u);
  EXPECT_TRUE(applied_.calls.empty()) << "a change made here is not applied again";
}

TEST_F(AdminSyncTest, AChangeWhileRedisIsAwayIsPendingAndStartIsSettled) {
  std::uint16_t port;
  {
    ScriptedRedis gone(ScriptedRedis::Replies{});
    port = gone.port();
  }  // nothing listens there now
  start(port);
  runUntil([&] { return sync_->settled(); });
  EXPECT_TRUE(sync_->settled()) << "a refused connect settles the start";
  balancer::AdminState st;
  st.has_weight = true;
  st.weight = 4;
  st.weight_ms = 9;
  EXPECT_FALSE(sync_->changed(backends_.at(1), st, false, true));
  const balancer::KnownAdminState* k = sync_->known("10.0.0.2:80");
  ASSERT_NE(k, nullptr);
  EXPECT_TRUE(k->weight_pending);
  EXPECT_EQ(k->state.weight, 4u);
  EXPECT_EQ(k->state.by, "test 127.0.0.1:9901");
}

}  // namespace
}  // namespace tether::proxy
