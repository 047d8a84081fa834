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

TEST(ObjectPool, KeepsWhatTheBurstUsedUntilTwoTicksLaterThenItsBound) {
  int live = 0;
  ObjectPool<Counted, 2> pool;
  Counted* c[5];
  for (Counted*& p : c) p = pool.make(&live, 0);
  EXPECT_EQ(live, 5);
  for (Counted* p : c) pool.destroy(p);
  EXPECT_EQ(live, 0);
  EXPECT_EQ(pool.size(), 5u);  // the burst may come back: its slots stay
  pool.tick();
  EXPECT_EQ(pool.size(), 5u);  // the last period's peak still counts
  pool.tick();
  EXPECT_EQ(pool.size(), 2u);  // two quiet periods: down to the bound
}

TEST(ObjectPool, NeverKeepsMoreThanThePeakHeldAtOnce) {
  int live = 0;
  ObjectPool<Counted, 1> pool;
  Counted* a = pool.make(&live, 0);
  Counted* b = pool.make(&live, 0);
  pool.destroy(a);
  pool.destroy(b);
  EXPECT_EQ(pool.size(), 2u);
  // Steady use of one at a time after the peak of two: at most 2 slots in all.
  for (int i = 0; i < 10; ++i) pool.destroy(pool.make(&live, 0));
  EXPECT_EQ(pool.size(), 2u);
  pool.tick();
  pool.tick();
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_EQ(live, 0);
}

TEST(FreeList, KeepsWhatTheBurstUsedUntilTwoTicksLaterThenItsBound) {
  struct Node {
    Node* next_free = nullptr;
  };
  FreeList<Node, 1> list;
  Node* n[4];
  for (Node*& p : n) p = list.take();
  for (Node* p : n) list.give(p);
  EXPECT_EQ(list.size(), 4u);
  list.tick();
  list.tick();
  EXPECT_EQ(list.size(), 1u);
}

}  // namespace
}  // namespace tether::proxy
