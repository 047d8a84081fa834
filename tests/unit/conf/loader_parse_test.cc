// The building blocks of loader.h: durations, sizes, ${VAR}, addresses, URLs.
#include <gtest/gtest.h>

#include <map>

#include "conf/loader.h"

namespace tether::conf {
namespace {

EnvLookup envOf(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(ParseDuration, AcceptsEveryUnit) {
  EXPECT_EQ(parseDuration("250ms"), 250);
  EXPECT_EQ(parseDuration("5s"), 5'000);
  EXPECT_EQ(parseDuration("30m"), 1'800'000);
  EXPECT_EQ(parseDuration("1h"), 3'600'000);
  EXPECT_EQ(parseDuration("1d"), 86'400'000);
  EXPECT_EQ(parseDuration("0"), 0);
  EXPECT_EQ(parseDuration("0s"), 0);
  EXPECT_EQ(parseDuration("1h30m"), 5'400'000);
  EXPECT_EQ(parseDuration("1s500ms"), 1'500);
  EXPECT_EQ(parseDuration(" 5s "), 5'000);
}

TEST(ParseDuration, RejectsMissingUnitAndJunk) {
  for (const char* bad : {"", "5", "5000", "-5s", "5x", "s", "1.5s", "5 s", "5S", "ms",
                          "99999999999999999999d", "9999999999999d", "5s-"}) {
    EXPECT_FALSE(parseDuration(bad)) << bad;
  }
}

TEST(ParseSize, AcceptsEveryUnit) {
  EXPECT_EQ(parseSize("512"), 512u);
  EXPECT_EQ(parseSize("0"), 0u);
  EXPECT_EQ(parseSize("512B"), 512u);
  EXPECT_EQ(parseSize("64KiB"), 65'536u);
  EXPECT_EQ(parseSize("100MiB"), 104'857'600u);
  EXPECT_EQ(parseSize("1GiB"), 1'073'741'824u);
  EXPECT_EQ(parseSize("1TiB"), 1'099'511'627'776u);
  EXPECT_EQ(parseSize("64KB"), 64'000u);
  EXPECT_EQ(parseSize("100MB"), 100'000'000u);
  EXPECT_EQ(parseSize("1GB"), 1'000'000'000u);
  EXPECT_EQ(parseSize("2TB"), 2'000'000'000'000u);
}

TEST(ParseSize, RejectsJunk) {
  for (const char* bad : {"", "KiB", "-1", "1.5MiB", "64kib", "64 KiB", "64K", "64XB",
                          "99999999999TiB", "99999999999999999999"}) {
    EXPECT_FALSE(parseSize(bad)) << bad;
  }
}

TEST(ExpandEnv, ReplacesSetVariables) {
  std::vector<std::string> errors;
  auto env = envOf({{"HOST", "10.0.0.1"}, {"PORT", "8080"}});
  EXPECT_EQ(expandEnv("url: http://${HOST}:${PORT}\n", env, errors), "url: http://10.0.0.1:8080\n");
  EXPECT_TRUE(errors.empty());
}

TEST(ExpandEnv, DefaultAppliesWhenUnsetOrEmpty) {
  std::vector<std::string> errors;
  auto env = envOf({{"SET", "yes"}, {"EMPTY", ""}});
  EXPECT_EQ(expandEnv("${SET:-no} ${UNSET:-fallback} ${EMPTY:-dflt} ${UNSET:-}", env, errors),
            "yes fallback dflt ");
  EXPECT_TRUE(errors.empty());
}

TEST(ExpandEnv, SetButEmptyWithoutDefaultIsEmpty) {
  std::vector<std::string> errors;
  EXPECT_EQ(expandEnv("a${EMPTY}b", envOf({{"EMPTY", ""}}), errors), "ab");
  EXPECT_TRUE(errors.empty());
}

TEST(ExpandEnv, UnsetWithoutDefaultIsAnErrorWithLine) {
  std::vector<std::string> errors;
  expandEnv("workers: 1\nstore: ${REDIS_URL}\nx: ${ALSO_MISSING}\n", envOf({}), errors);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "line 2: ${REDIS_URL} is not set");
  EXPECT_EQ(errors[1], "line 3: ${ALSO_MISSING} is not set");
}

TEST(ExpandEnv, LeavesCommentLinesAndEscapes) {
  std::vector<std::string> errors;
  EXPECT_EQ(expandEnv("  # store: ${UNSET}\nbody: \"$${literal}\"\ncost: $5\n", envOf({}), errors),
            "  # store: ${UNSET}\nbody: \"${literal}\"\ncost: $5\n");
  EXPECT_TRUE(errors.empty());
}

TEST(ExpandEnv, ReportsMalformedReferences) {
  std::vector<std::string> errors;
  expandEnv("a: ${OPEN\nb: ${}\nc: ${1X}\n", envOf({}), errors);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0], "line 1: unterminated \"${\"");
  EXPECT_NE(errors[1].find("line 2: \"${}\""), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("line 3: \"${1X}\""), std::string::npos) << errors[2];
}

TEST(ParseHostPort, AcceptsTheUsualForms) {
  EXPECT_EQ(parseHostPort("0.0.0.0:8000", nullptr), (HostPort{"0.0.0.0", 8000}));
  EXPECT_EQ(parseHostPort(":8000", nullptr), (HostPort{"0.0.0.0", 8000}));
  EXPECT_EQ(parseHostPort("[::1]:9901", nullptr), (HostPort{"::1", 9901}));
  EXPECT_EQ(parseHostPort("[::]:0", nullptr), (HostPort{"::", 0}));
  EXPECT_EQ(parseHostPort("localhost:80", nullptr), (HostPort{"localhost", 80}));
  EXPECT_EQ(parseHostPort("127.0.0.1:0", nullptr), (HostPort{"127.0.0.1", 0}));
  EXPECT_EQ(parseHostPort("app-1.svc.cluster.local:65535", nullptr),
            (HostPort{"app-1.svc.cluster.local", 65535}));
}

TEST(ParseHostPort, ExplainsFailures) {
  std::string why;
  EXPECT_FALSE(parseHostPort("localhost", &why));
  EXPECT_EQ(why, "no port in \"localhost\"");
  EXPECT_FALSE(parseHostPort("::1:80", &why));
  EXPECT_NE(why.find("needs brackets"), std::string::npos) << why;
  EXPECT_FALSE(parseHostPort("host:65536", &why));
  EXPECT_EQ(why, "bad port \"65536\" in \"host:65536\"");
  for (const char* bad :
       {"host:", "[::1]", "[::1]80", "[nope]:80", "a b:80", "300.1.1.1:80", "host:-1", "host:8o"}) {
    EXPECT_FALSE(parseHostPort(bad, nullptr)) << bad;
  }
}

TEST(IsLoopback, KnowsLocalhostAndLoopbackNetworks) {
  EXPECT_TRUE(isLoopback({"127.0.0.1", 1}));
  EXPECT_TRUE(isLoopback({"127.8.9.10", 1}));
  EXPECT_TRUE(isLoopback({"localhost", 1}));
  EXPECT_TRUE(isLoopback({"::1", 1}));
  EXPECT_TRUE(isLoopback({"::ffff:127.0.0.1", 1}));
  EXPECT_FALSE(isLoopback({"0.0.0.0", 1}));
  EXPECT_FALSE(isLoopback({"::", 1}));
  EXPECT_FALSE(isLoopback({"10.0.0.1", 1}));
  EXPECT_FALSE(isLoopback({"admin.internal", 1}));
}

TEST(ParseBackendUrl, SplitsSchemeAndAddress) {
  auto b = parseBackendUrl("http://10.0.0.11:8080", nullptr);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->scheme, "http");
  EXPECT_EQ(b->address, (HostPort{"10.0.0.11", 8080}));
  EXPECT_EQ(b->url, "http://10.0.0.11:8080");
  EXPECT_EQ(b->weight, 100u);
  EXPECT_EQ(parseBackendUrl("http://[::1]:8080/", nullptr)->address, (HostPort{"::1", 8080}));
  EXPECT_EQ(parseBackendUrl("https://app:443", nullptr)->scheme, "https");
}

TEST(ParseBackendUrl, ExplainsFailures) {
  std::string why;
  EXPECT_FALSE(parseBackendUrl("http://app", &why));
  EXPECT_EQ(why, "no port in \"http://app\"");
  EXPECT_FALSE(parseBackendUrl("http://[::1]", &why));
  EXPECT_EQ(why, "no port in \"http://[::1]\"");
  EXPECT_FALSE(parseBackendUrl("10.0.0.1:8080", &why));
  EXPECT_NE(why.find("no scheme"), std::string::npos) << why;
  EXPECT_FALSE(parseBackendUrl("ftp://app:21", &why));
  EXPECT_NE(why.find("unsupported scheme"), std::string::npos) << why;
  EXPECT_FALSE(parseBackendUrl("http://app:8080/api", &why));
  EXPECT_NE(why.find("path"), std::string::npos) << why;
  for (const char* bad :
       {"http://", "http://:8080", "http://u:p@app:80", "http://app:0", "http://app:99999"}) {
    EXPECT_FALSE(parseBackendUrl(bad, nullptr)) << bad;
  }
}

TEST(ParseRedisUrl, AcceptsTheDocumentedForm) {
  auto r = parseRedisUrl("redis://10.0.0.5:6380/2", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->address, (HostPort{"10.0.0.5", 6380}));
  EXPECT_EQ(r->db, 2u);
  EXPECT_EQ(r->password, "");
  r = parseRedisUrl("redis://:s3cr%40t@redis:6379", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->password, "s3cr@t");
  EXPECT_EQ(r->username, "");
  EXPECT_EQ(r->db, 0u);
  r = parseRedisUrl("redis://tether:pw@[::1]/", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->username, "tether");
  EXPECT_EQ(r->address, (HostPort{"::1", 6379}));
  EXPECT_EQ(parseRedisUrl("redis://redis", nullptr)->address, (HostPort{"redis", 6379}));
}

TEST(ParseRedisUrl, AcceptsAnAclUser) {
  auto r = parseRedisUrl("redis://tether:p%3Ass%2Fw@10.0.0.5:6380/3", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->username, "tether");
  EXPECT_EQ(r->password, "p:ss/w");
  EXPECT_EQ(r->address, (HostPort{"10.0.0.5", 6380}));
  EXPECT_EQ(r->db, 3u);
  EXPECT_FALSE(r->tls);
  EXPECT_TRUE(r->sentinels.empty());
}

TEST(ParseRedisUrl, RedissIsTheSameOverTls) {
  auto r = parseRedisUrl("rediss://default:pw@redis.example:6380/1", nullptr);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->tls);
  EXPECT_EQ(r->address, (HostPort{"redis.example", 6380}));
  EXPECT_EQ(r->username, "default");
  EXPECT_EQ(r->db, 1u);
  EXPECT_EQ(parseRedisUrl("rediss://redis", nullptr)->address, (HostPort{"redis", 6379}));
}

TEST(ParseRedisUrl, SentinelsListAndMasterName) {
  auto r = parseRedisUrl("redis+sentinel://u:pw@s1:26380,s2,[::1]:5000/mymaster/4", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->master_name, "mymaster");
  ASSERT_EQ(r->sentinels.size(), 3u);
  EXPECT_EQ(r->sentinels[0], (HostPort{"s1", 26380}));
  EXPECT_EQ(r->sentinels[1], (HostPort{"s2", 26379}));  // the sentinels' default port
  EXPECT_EQ(r->sentinels[2], (HostPort{"::1", 5000}));
  EXPECT_EQ(r->username, "u");
  EXPECT_EQ(r->password, "pw");
  EXPECT_EQ(r->db, 4u);
  EXPECT_FALSE(r->tls);
  r = parseRedisUrl("redis+sentinel://sentinel/mymaster", nullptr);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->db, 0u);
  EXPECT_EQ(r->sentinels, (std::vector<HostPort>{{"sentinel", 26379}}));
  EXPECT_EQ(parseRedisUrl("redis+sentinel://s/m%2Fx/", nullptr)->master_name, "m/x");
}

TEST(ParseRedisUrl, RejectsOtherForms) {
  for (const char* bad : {"memory", "redis://", "redis://:6379", "http://redis:6379", "rediss://",
                          "redis://redis:6379/x", "redis://pw@redis:6379", "redis://redis:6379?timeout=1",
                          "redis://redis:0", "redis://:%zz@r:1", "redis://a:1,b:2/0",
                          "redis+sentinel://s1", "redis+sentinel://s1/", "redis+sentinel:///m",
                          "redis+sentinel://s1,,s2/m", "redis+sentinel://s1,/m", "redis+sentinel://s1:0/m",
                          "redis+sentinel://s1/m/x", "redis+sentinel://s1/m/1/2", "rediss+sentinel://s1/m",
                          "redis+sentinel://s1:99999/m", "redis+sentinel://::1/m"}) {
    EXPECT_FALSE(parseRedisUrl(bad, nullptr)) << bad;
  }
}

TEST(ParseRedisUrl, ExplainsFailuresWithoutThePassword) {
  std::string why;
  EXPECT_FALSE(parseRedisUrl("redis+sentinel://:hunter2@s1:26379", &why));
  EXPECT_EQ(why.rfind("no master name in \"redis+sentinel://:***@s1:26379\"", 0), 0u) << why;
  EXPECT_FALSE(parseRedisUrl("redis://:hunter2@redis:6379/zero", &why));
  EXPECT_EQ(why.rfind("bad database number \"zero\" in \"redis://:***@redis:6379/zero\"", 0), 0u) << why;
  EXPECT_FALSE(parseRedisUrl("redis://hunter2@redis:6379", &why));
  EXPECT_EQ(why.rfind("no ':' before the password in \"redis://***@redis:6379\"", 0), 0u) << why;
  EXPECT_FALSE(parseRedisUrl("redis://a:1,b:2", &why));
  EXPECT_NE(why.find("only redis+sentinel:// takes a list"), std::string::npos) << why;
  EXPECT_FALSE(parseRedisUrl("redis+sentinel://s1,,s2/m", &why));
  EXPECT_EQ(why.rfind("no host in \"redis+sentinel://s1,,s2/m\"", 0), 0u) << why;
  EXPECT_FALSE(parseRedisUrl("rediss+sentinel://s1/m", &why));
  EXPECT_NE(why.find("not supported"), std::string::npos) << why;
  EXPECT_FALSE(parseRedisUrl("valkey://v:6379", &why));
  EXPECT_EQ(why.rfind("\"valkey://v:6379\" is not \"memory\" or a Redis URL (expected redis://", 0), 0u) << why;
  EXPECT_FALSE(parseRedisUrl("redis+sentinel://u:hunter2@s1:0/m", &why));
  EXPECT_EQ(why, "port 0 in \"redis+sentinel://u:***@s1:0/m\"") << why;
}

TEST(CheckAffinityKey, AcceptsEverySource) {
  for (const char* good : {"engineio_sid", "client_ip", "cookie:tether_affinity", "header:X-User",
                           "query:sid", "jwt:cookie:token:id", "jwt:header:Authorization:sub"}) {
    std::string why;
    EXPECT_TRUE(checkAffinityKey(good, &why)) << good << ": " << why;
  }
}

TEST(CheckAffinityKey, ExplainsBadKeys) {
  std::string why;
  EXPECT_FALSE(checkAffinityKey("foo", &why));
  EXPECT_EQ(why.rfind("unknown source \"foo\"", 0), 0u) << why;
  for (const char* bad : {"", "cookie", "cookie:", "cookie:a:b", "header", "engineio_sid:x",
                          "client_ip:x", "jwt:cookie:token", "jwt:query:a:b", "jwt:cookie::id",
                          "Cookie:a", "header:G\x06", "cookie:a b", "query:a=b"}) {
    EXPECT_FALSE(checkAffinityKey(bad, nullptr)) << bad;
  }
  // A claim may hold ':' (the rest of the spec), as the workers read it.
  EXPECT_TRUE(checkAffinityKey("jwt:cookie:token:id:x", nullptr));
}

TEST(ParseWorkers, NumbersAndAuto) {
  EXPECT_EQ(parseWorkers("1", nullptr), 1u);
  EXPECT_EQ(parseWorkers("256", nullptr), 256u);
  auto cpus = parseWorkers("auto", nullptr);
  ASSERT_TRUE(cpus);
  EXPECT_GE(*cpus, 1u);
  EXPECT_LE(*cpus, kMaxWorkers);
  std::string why;
  EXPECT_FALSE(parseWorkers("0", &why));
  EXPECT_EQ(why, "\"0\" is not 1..256 or auto");
  EXPECT_FALSE(parseWorkers("257", nullptr));
  EXPECT_FALSE(parseWorkers("many", nullptr));
}

}  // namespace
}  // namespace tether::conf
