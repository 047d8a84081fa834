// The object pool: every object made afresh, its memory reused, a bound on
// what it keeps.
#include "proxy/io/free_list.h"

#include <gtest/gtest.h>

namespace tether::proxy {
namespace {

struct Counted {
  explicit Counted(int* live, int v) : live(live), value(v) { ++*live; }
  ~Counted() { --*live; }
  int* live;
  int value;
  int untouched = 7;
};

TEST(ObjectPool, MakesEachObjectAfreshInReusedMemory) {
  int live = 0;
  ObjectPool<Counted, 4> pool;
  Counted* a = pool.make(&live, 1);
  EXPECT_EQ(live, 1);
  a->untouched = 99;
  pool.destroy(a);
  EXPECT_EQ(live, 0);
  EXPECT_EQ(pool.size(), 1u);
  Counted* b = pool.make(&live, 2);
  EXPECT_EQ(static_cast<void*>(b), static_cast<void*>(a));
  EXPECT_EQ(b->value, 2);
  EXPECT_EQ(b->untouched, 7);  // constructed, not recycled
  EXPECT_EQ(pool.size(), 0u);
  pool.destroy(b);
}

TEST(ObjectPool, KeepsAtMostItsBoundAfterABurst) {
  int live = 0;
  ObjectPool<Counted, 2> pool;
  Counted* c[5];
  for (Counted*& p : c) p = pool.make(&live, 0);
  EXPECT_EQ(live, 5);
  for (Counted* p : c) pool.destroy(p);
  EXPECT_EQ(live, 0);
  EXPECT_EQ(pool.size(), 2u);
}

}  // namespace
}  // namespace tether::proxy
