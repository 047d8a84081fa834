#include "proxy/io/deadline_heap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace tether::proxy {
namespace {

TEST(DeadlineHeap, PopsOnlyWhatIsDueEarliestFirst) {
  DeadlineHeap h;
  DeadlineEntry a, b, c;
  h.schedule(&a, 30);
  h.schedule(&b, 10);
  h.schedule(&c, 20);
  EXPECT_EQ(h.earliest(), &b);
  EXPECT_EQ(h.popDue(5), nullptr);  // nothing due yet
  EXPECT_EQ(h.popDue(25), &b);
  EXPECT_EQ(h.popDue(25), &c);
  EXPECT_EQ(h.popDue(25), nullptr);
  EXPECT_FALSE(b.scheduled());
  EXPECT_TRUE(a.scheduled());
  EXPECT_EQ(h.size(), 1u);
}

TEST(DeadlineHeap, MovingAndCancellingKeepTheOrder) {
  DeadlineHeap h;
  DeadlineEntry a, b, c;
  h.schedule(&a, 10);
  h.schedule(&b, 20);
  h.schedule(&c, 30);
  h.schedule(&a, 40);  // later: sinks
  EXPECT_EQ(h.earliest(), &b);
  h.schedule(&c, 5);   // earlier: rises
  EXPECT_EQ(h.earliest(), &c);
  h.cancel(&c);
  h.cancel(&c);  // twice: a no-op
  EXPECT_EQ(h.earliest(), &b);
  DeadlineEntry never;
  h.cancel(&never);  // never scheduled: a no-op
  EXPECT_EQ(h.size(), 2u);
  EXPECT_EQ(h.popDue(100), &b);
  EXPECT_EQ(h.popDue(100), &a);
  EXPECT_EQ(h.earliest(), nullptr);
}

TEST(DeadlineHeap, AgreesWithASortedListUnderRandomOperations) {
  std::mt19937 rng(7);
  std::vector<DeadlineEntry> e(200);
  DeadlineHeap h;
  for (int step = 0; step < 20000; ++step) {
    DeadlineEntry& x = e[rng() % e.size()];
    switch (rng() % 3) {
      case 0:
      case 1: h.schedule(&x, static_cast<std::int64_t>(rng() % 1000)); break;
      default: h.cancel(&x); break;
    }
    if (step % 97 == 0) {
      std::int64_t want = -1;
      std::size_t n = 0;
      for (const DeadlineEntry& y : e) {
        if (!y.scheduled()) continue;
        ++n;
        if (want < 0 || y.deadline_at < want) want = y.deadline_at;
      }
      ASSERT_EQ(h.size(), n);
      if (n) {
        ASSERT_EQ(h.earliest()->deadline_at, want);
      }
    }
  }
  std::int64_t last = -1;
  while (DeadlineEntry* x = h.popDue(1000)) {
    ASSERT_GE(x->deadline_at, last);
    last = x->deadline_at;
  }
  for (const DeadlineEntry& y : e) EXPECT_FALSE(y.scheduled());
}

}  // namespace
}  // namespace tether::proxy
