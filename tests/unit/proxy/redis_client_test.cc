// RedisConnection (proxy/redis_client.h) on a real loop against a scripted
// Redis on a loopback socket (scripted_redis.h), and parseSwitchMaster.
// Every test ends with every handle closed.
#include "proxy/redis_client.h"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "tests/unit/proxy/scripted_redis.h"

namespace tether::proxy {
namespace {

struct Recorder : RedisConnection::Listener {
  int ready = 0;
  int closed = 0;
  RedisFailure failure;
  RedisConnection* conn = nullptr;
  std::function<void(RedisConnection*)> on_ready;
  void onRedisReady(RedisConnection* c) override {
    ++ready;
    if (on_ready) on_ready(c);
  }
  void onRedisClosed(RedisConnection*, const RedisFailure& f) override {
    ++closed;
    failure = f;
    conn = nullptr;
  }
  std::vector<std::string> pushes;  // "channel payload"
  void onRedisPush(RedisConnection*, redisReply* r) override {
    pushes.push_back(std::string(r->element[1]->str, r->element[1]->len) + " " +
                     std::string(r->element[2]->str, r->element[2]->len));
  }
};

class RedisConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  RedisConnection::Options options(std::uint16_t port) {
    RedisConnection::Options o;
    o.address = conf::HostPort{"127.0.0.1", port};
    o.connect_timeout_ms = 2'000;
    o.reply_timeout_ms = 300;
    return o;
  }

  // Runs the loop until done() or about two seconds.
  void runUntil(const std::function<bool()>& done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (!done() && std::chrono::steady_clock::now() < deadline) uv_run(&loop_, UV_RUN_NOWAIT), usleep(1000);
  }

  uv_loop_t loop_;
  BufferPool pool_{4};
};

TEST_F(RedisConnectionTest, ReadyOnceTheHelloIsAnsweredThenPipelines) {
  ScriptedRedis redis({{"AUTH", "+OK\r\n"}, {"SELECT", "+OK\r\n"}, {"PING", "+PONG\r\n"}, {"GET", "$3\r\nabc\r\n"}});
  Recorder rec;
  auto o = options(redis.port());
  o.username = "tether";
  o.password = "pw";
  o.db = 2;
  RedisConnection* c = RedisConnection::open(&loop_, o, &rec, pool_);
  std::vector<std::string> got;
  auto cb = [](void* priv, redisReply* r) {
    static_cast<std::vector<std::string>*>(priv)->push_back(r ? std::string(r->str, r->len) : "(null)");
  };
  // Queued before the hello is answered: sent after it.
  ASSERT_TRUE(c->command(cb, &got, "GET %s", "k1"));
  runUntil([&] { return rec.ready == 1; });
  ASSERT_EQ(rec.ready, 1);
  EXPECT_TRUE(c->ready());
  ASSERT_TRUE(c->command(cb, &got, "GET %s", "k2"));
  runUntil([&] { return got.size() == 2; });
  EXPECT_EQ(got, (std::vector<std::string>{"abc", "abc"}));
  EXPECT_EQ(redis.commands(), (std::vector<std::string>{"AUTH", "SELECT", "PING", "GET", "GET"}));
  c->close();
  EXPECT_EQ(rec.closed, 0) << "an owner's close is not reported";
}

TEST_F(RedisConnectionTest, ARefusedPasswordNeverBecomesReady) {
  ScriptedRedis redis({{"AUTH", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"},
                       {"PING", "-NOAUTH Authentication required.\r\n"}});
  Recorder rec;
  auto o = options(redis.port());
  o.password = "hunter2";
  RedisConnection::open(&loop_, o, &rec, pool_);
  runUntil([&] { return rec.closed == 1; });
  ASSERT_EQ(rec.closed, 1);
  EXPECT_EQ(rec.ready, 0);
  EXPECT_EQ(rec.failure.why, "AUTH refused: WRONGPASS invalid username-password pair or user is disabled.");
  EXPECT_EQ(rec.failure.why.find("hunter2"), std::string::npos);
}

TEST_F(RedisConnectionTest, AnOptionalAuthMayBeRefused) {
  ScriptedRedis redis({{"AUTH", "-ERR AUTH <password> called without any password configured\r\n"},
                       {"PING", "+PONG\r\n"}});
  Recorder rec;
  auto o = options(redis.port());
  o.password = "pw";
  o.auth_optional = true;
  RedisConnection* c = RedisConnection::open(&loop_, o, &rec, pool_);
  runUntil([&] { return rec.ready == 1; });
  EXPECT_EQ(rec.ready, 1);
  c->close();
}

TEST_F(RedisConnectionTest, AServerThatDoesNotAnswerIsGivenUp) {
  ScriptedRedis redis(ScriptedRedis::Replies{});  // accepts, reads, never answers (a Redis under SIGSTOP)
  Recorder rec;
  auto start = std::chrono::steady_clock::now();
  RedisConnection::open(&loop_, options(redis.port()), &rec, pool_);
  runUntil([&] { return rec.closed == 1; });
  ASSERT_EQ(rec.closed, 1);
  EXPECT_EQ(rec.ready, 0);
  EXPECT_EQ(rec.failure.why, "no reply within affinity.redis.reply_timeout");
  EXPECT_EQ(rec.failure.timeout_ms, 300);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
}

TEST_F(RedisConnectionTest, ACommandWithoutReplyEndsAReadyConnection) {
  ScriptedRedis redis(ScriptedRedis::Replies{{"PING", "+PONG\r\n"}});  // GET is never answered
  Recorder rec;
  RedisConnection* c = RedisConnection::open(&loop_, options(redis.port()), &rec, pool_);
  runUntil([&] { return rec.ready == 1; });
  ASSERT_EQ(rec.ready, 1);
  int nulls = 0;
  ASSERT_TRUE(c->command([](void* p, redisReply* r) { *static_cast<int*>(p) += r == nullptr; }, &nulls, "GET k"));
  runUntil([&] { return rec.closed == 1; });
  EXPECT_EQ(rec.failure.why, "no reply within affinity.redis.reply_timeout");
  EXPECT_EQ(nulls, 1) << "the command in flight is answered with no reply";
}

TEST_F(RedisConnectionTest, AReplicaIsNotAMaster) {
  ScriptedRedis redis(ScriptedRedis::Replies{{"ROLE", "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n"}});
  Recorder rec;
  auto o = options(redis.port());
  o.expect_master = true;
  RedisConnection::open(&loop_, o, &rec, pool_);
  runUntil([&] { return rec.closed == 1; });
  EXPECT_EQ(rec.failure.why, "not the master (ROLE: slave)");
  EXPECT_EQ(rec.ready, 0);
}

TEST_F(RedisConnectionTest, ARefusedConnectIsReported) {
  std::uint16_t port;
  {
    ScriptedRedis gone(ScriptedRedis::Replies{});
    port = gone.port();
  }  // closed: nothing listens there now
  Recorder rec;
  RedisConnection::open(&loop_, options(port), &rec, pool_);
  runUntil([&] { return rec.closed == 1; });
  EXPECT_EQ(rec.failure.why, "cannot connect: connection refused");
}

TEST_F(RedisConnectionTest, CloseAnswersEveryCommandInFlightAndMayBeCalledFromACallback) {
  ScriptedRedis redis({{"PING", "+PONG\r\n"}, {"GET", "$1\r\nx\r\n"}});
  Recorder rec;
  RedisConnection* c = RedisConnection::open(&loop_, options(redis.port()), &rec, pool_);
  runUntil([&] { return rec.ready == 1; });
  struct State {
    RedisConnection* c;
    std::vector<std::string> got;
  } st{c, {}};
  auto closing = [](void* p, redisReply* r) {
    auto* s = static_cast<State*>(p);
    s->got.push_back(r ? "reply" : "null");
    if (r) s->c->close();  // the other replies in flight get null, now
  };
  ASSERT_TRUE(c->command(closing, &st, "GET a"));
  ASSERT_TRUE(c->command(closing, &st, "GET b"));
  ASSERT_TRUE(c->command(closing, &st, "GET c"));
  runUntil([&] { return st.got.size() == 3; });
  EXPECT_EQ(st.got, (std::vector<std::string>{"reply", "null", "null"}));
  EXPECT_EQ(rec.closed, 0);
}

TEST_F(RedisConnectionTest, CloseWhileResolvingOrConnecting) {
  Recorder rec;
  auto o = options(9);
  o.address.host = "localhost";
  RedisConnection::open(&loop_, o, &rec, pool_)->close();
  RedisConnection::open(&loop_, options(9), &rec, pool_)->close();
  EXPECT_EQ(rec.closed, 0);
}

TEST_F(RedisConnectionTest, SubscribedMessagesGoToTheListenerBetweenReplies) {
  // The confirmation and two messages in one read; then, idle, the PING that
  // Redis answers ["pong", ""] in subscribe mode.
  ScriptedRedis redis({{"PING", "+PONG\r\n"},
                       {"SUBSCRIBE",
                        "*3\r\n$9\r\nsubscribe\r\n$12\r\ntether:admin\r\n:1\r\n"
                        "*3\r\n$7\r\nmessage\r\n$12\r\ntether:admin\r\n$13\r\n10.0.0.1:8080\r\n"
                        "*3\r\n$7\r\nmessage\r\n$12\r\ntether:admin\r\n$0\r\n\r\n"}});
  Recorder rec;
  RedisConnection* c = RedisConnection::open(&loop_, options(redis.port()), &rec, pool_);
  runUntil([&] { return rec.ready == 1; });
  ASSERT_EQ(rec.ready, 1);
  std::vector<std::string> confirmed;
  ASSERT_TRUE(c->subscribe("tether:admin", [](void* p, redisReply* r) {
    static_cast<std::vector<std::string>*>(p)->push_back(r && r->type == REDIS_REPLY_ARRAY
                                                             ? std::string(r->element[0]->str, r->element[0]->len)
                                                             : "?");
  }, &confirmed));
  runUntil([&] { return rec.pushes.size() == 2; });
  EXPECT_EQ(confirmed, (std::vector<std::string>{"subscribe"}));
  EXPECT_EQ(rec.pushes, (std::vector<std::string>{"tether:admin 10.0.0.1:8080", "tether:admin "}));
  EXPECT_EQ(rec.closed, 0);
  c->close();
}

TEST_F(RedisConnectionTest, ACommandGivenWordByWord) {
  ScriptedRedis redis({{"PING", "+PONG\r\n"}, {"HSET", ":2\r\n"}});
  Recorder rec;
  RedisConnection* c = RedisConnection::open(&loop_, options(redis.port()), &rec, pool_);
  long long got = -1;
  ASSERT_TRUE(c->commandArgv([](void* p, redisReply* r) { *static_cast<long long*>(p) = r ? r->integer : -2; }, &got,
                             {"HSET", "k", "drain", std::string("1 2\0 3", 6)}));
  EXPECT_FALSE(c->commandArgv(nullptr, nullptr, {}));
  runUntil([&] { return got != -1; });
  EXPECT_EQ(got, 2);
  EXPECT_EQ(redis.commands(), (std::vector<std::string>{"PING", "HSET"}));
  c->close();
}

TEST(ParseSwitchMaster, TheNewAddressOfOurMaster) {
  EXPECT_EQ(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 6380", "pins"), (conf::HostPort{"10.0.0.2", 6380}));
  EXPECT_EQ(parseSwitchMaster("pins ::1 6379 fd00::2 6380", "pins"), (conf::HostPort{"fd00::2", 6380}));
  EXPECT_FALSE(parseSwitchMaster("other 127.0.0.1 6379 10.0.0.2 6380", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 0", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 65536", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 99999999999", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 63x", "pins"));
  EXPECT_FALSE(parseSwitchMaster("pins 127.0.0.1 6379 10.0.0.2 6380 extra", "pins"));
  EXPECT_FALSE(parseSwitchMaster("", "pins"));
}

}  // namespace
}  // namespace tether::proxy
