#include "balancer/memory_store.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <list>
#include <map>
#include <string>

namespace tether::balancer {
namespace {

TEST(MemoryPinStore, MissThenHit) {
  MemoryPinStore s(10);
  EXPECT_EQ(s.get("k", 0), std::nullopt);
  s.set("k", "10.0.0.1:8080", 1000);
  EXPECT_EQ(s.get("k", 0), "10.0.0.1:8080");
  EXPECT_EQ(s.get("k", 999), "10.0.0.1:8080");
  EXPECT_EQ(s.size(), 1u);
}

TEST(MemoryPinStore, ExpiredEntriesAreMissesAndRemoved) {
  MemoryPinStore s(10);
  s.set("k", "a", 1000);
  s.set("other", "b", 5000);
  EXPECT_EQ(s.get("k", 1000), std::nullopt);  // expiring at now is expired
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.get("k", 0), std::nullopt);  // gone, even for an earlier clock
  EXPECT_EQ(s.get("other", 1000), "b");
}

TEST(MemoryPinStore, SetReplacesBackendAndExpiry) {
  MemoryPinStore s(10);
  s.set("k", "a", 1000);
  s.set("k", "b", 3000);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.get("k", 2000), "b");
}

TEST(MemoryPinStore, RefreshSlidesTheExpiry) {
  MemoryPinStore s(10);
  s.set("k", "a", 1000);
  s.refresh("k", 2000);
  EXPECT_EQ(s.get("k", 1500), "a");
  s.refresh("absent", 9000);  // no entry: nothing happens
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.get("absent", 0), std::nullopt);
}

TEST(MemoryPinStore, Erase) {
  MemoryPinStore s(10);
  s.set("k", "a", 1000);
  s.erase("k");
  s.erase("k");
  s.erase("never");
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.get("k", 0), std::nullopt);
}

TEST(MemoryPinStore, EvictsTheLeastRecentlyUsed) {
  MemoryPinStore s(3);
  s.set("a", "1", 100);
  s.set("b", "2", 100);
  s.set("c", "3", 100);
  EXPECT_EQ(s.get("a", 0), "1");  // a is now the most recent; b the least
  s.set("d", "4", 100);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(s.get("b", 0), std::nullopt);
  EXPECT_EQ(s.get("a", 0), "1");
  EXPECT_EQ(s.get("c", 0), "3");
  EXPECT_EQ(s.get("d", 0), "4");
  s.refresh("a", 100);    // order now: a, d, c -> c goes next
  s.set("c", "3b", 100);  // setting an existing key counts as use: d goes next
  s.set("e", "5", 100);
  EXPECT_EQ(s.get("d", 0), std::nullopt);
  EXPECT_EQ(s.get("a", 0), "1");
  EXPECT_EQ(s.get("c", 0), "3b");
  EXPECT_EQ(s.get("e", 0), "5");
}

TEST(MemoryPinStore, ZeroCapacityKeepsOne) {
  MemoryPinStore s(0);
  EXPECT_EQ(s.maxEntries(), 1u);
  s.set("a", "1", 100);
  s.set("b", "2", 100);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.get("a", 0), std::nullopt);
  EXPECT_EQ(s.get("b", 0), "2");
}

TEST(MemoryPinStore, EvictExpiredIsBoundedAndFromTheColdEnd) {
  MemoryPinStore s(100);
  for (int i = 0; i < 10; ++i) s.set("k" + std::to_string(i), "b", i < 5 ? 100 : 1000);
  // LRU end is k0: k0..k4 are expired at 500.
  EXPECT_EQ(s.evictExpired(500, 3), 3u);
  EXPECT_EQ(s.size(), 7u);
  EXPECT_EQ(s.evictExpired(500, 100), 2u);
  EXPECT_EQ(s.size(), 5u);
  EXPECT_EQ(s.evictExpired(500, 100), 0u);
  EXPECT_EQ(s.evictExpired(5000, 0), 0u);
  EXPECT_EQ(s.evictExpired(5000, 100), 5u);
  EXPECT_EQ(s.size(), 0u);
  s.set("again", "b", 6000);  // the list is sound after emptying
  EXPECT_EQ(s.get("again", 0), "b");
}

TEST(MemoryPinStore, KeysAreBytesNotCStrings) {
  MemoryPinStore s(10);
  s.set(std::string_view("a\0b", 3), "1", 100);
  s.set(std::string_view("a\0c", 3), "2", 100);
  EXPECT_EQ(s.get(std::string_view("a\0b", 3), 0), "1");
  EXPECT_EQ(s.get(std::string_view("a\0c", 3), 0), "2");
  EXPECT_EQ(s.get("a", 0), std::nullopt);
}

// Random operations against a plain reference model (a list in LRU order),
// through many rehashes of the map.
TEST(MemoryPinStore, MatchesAReferenceModel) {
  constexpr std::size_t kMax = 64;
  MemoryPinStore s(kMax);
  struct Ref {
    std::string key, backend;
    std::int64_t expires;
  };
  std::list<Ref> model;  // front = most recently used
  auto find = [&](const std::string& k) {
    for (auto it = model.begin(); it != model.end(); ++it) {
      if (it->key == k) return it;
    }
    return model.end();
  };
  std::uint32_t x = 7;
  auto rnd = [&] {
    x = x * 1664525 + 1013904223;
    return x >> 8;
  };
  std::int64_t now = 0;
  for (int step = 0; step < 200000; ++step) {
    now += rnd() % 3;
    std::string key = "key" + std::to_string(rnd() % 200);
    switch (rnd() % 5) {
      case 0:
      case 1: {
        auto it = find(key);
        std::optional<std::string> want;
        if (it != model.end()) {
          if (it->expires <= now) {
            model.erase(it);
          } else {
            want = it->backend;
            model.splice(model.begin(), model, it);
          }
        }
        ASSERT_EQ(s.get(key, now), want) << "step " << step;
        break;
      }
      case 2: {
        std::string backend = "b" + std::to_string(rnd() % 5);
        std::int64_t exp = now + static_cast<std::int64_t>(rnd() % 200);
        auto it = find(key);
        if (it != model.end())
          model.erase(it);
        else if (model.size() >= kMax)
          model.pop_back();
        model.push_front({key, backend, exp});
        s.set(key, backend, exp);
        break;
      }
      case 3: {
        std::int64_t exp = now + static_cast<std::int64_t>(rnd() % 200);
        auto it = find(key);
        if (it != model.end()) {
          it->expires = exp;
          model.splice(model.begin(), model, it);
        }
        s.refresh(key, exp);
        break;
      }
      case 4: {
        auto it = find(key);
        if (it != model.end()) model.erase(it);
        s.erase(key);
        break;
      }
    }
    ASSERT_EQ(s.size(), model.size()) << "step " << step;
    ASSERT_LE(s.size(), kMax);
  }
}

}  // namespace
}  // namespace tether::balancer
