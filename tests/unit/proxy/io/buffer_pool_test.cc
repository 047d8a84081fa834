// The buffer pool: reuse newest first, a bound on what it keeps, counts.
#include "proxy/io/buffer_pool.h"
#include "proxy/io/sanitizer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

namespace tether::proxy {
namespace {

#ifndef TETHER_ASAN  // under ASan every buffer is a heap block
TEST(BufferPool, ReusesTheNewestFreeBufferFirst) {
  BufferPool pool(4);
  char* a = pool.get();
  char* b = pool.get();
  EXPECT_EQ(pool.inUse(), 2u);
  pool.put(a);
  pool.put(b);
  EXPECT_EQ(pool.warmCount(), 2u);
  EXPECT_EQ(pool.get(), b);
  EXPECT_EQ(pool.get(), a);
  EXPECT_EQ(pool.warmCount(), 0u);
  pool.put(a);
  pool.put(b);
}

TEST(BufferPool, BuffersBeyondTheWarmBoundGiveTheirPagesBackAndAreReused) {
  BufferPool pool(1);
  char* a = pool.get();
  char* b = pool.get();
  std::memset(a, 'a', BufferPool::kSize);
  std::memset(b, 'b', BufferPool::kSize);
  pool.put(a);
  pool.put(b);  // both warm: the peak used two
  pool.tick();
  pool.tick();  // two quiet periods: beyond max_warm 1, b's pages are dropped
  EXPECT_EQ(pool.warmCount(), 1u);
  EXPECT_EQ(pool.coldCount(), 1u);
  EXPECT_EQ(pool.get(), a);
  char* c = pool.get();
  EXPECT_EQ(c, b);
  EXPECT_EQ(c[0], 0);  // fresh zero pages: nothing of the old contents
  EXPECT_EQ(c[BufferPool::kSize - 1], 0);
  pool.put(a);
  pool.put(c);
}

TEST(BufferPool, CarvesSlabAfterSlab) {
  BufferPool pool(0);
  std::vector<char*> bufs;
  std::size_t per_slab = BufferPool::kSlab / BufferPool::kSize;
  for (std::size_t i = 0; i < per_slab * 2 + 1; ++i) bufs.push_back(pool.get());
  EXPECT_EQ(std::set<char*>(bufs.begin(), bufs.end()).size(), bufs.size());
  for (char* b : bufs) b[BufferPool::kSize - 1] = 1;  // every byte is ours
  for (char* b : bufs) pool.put(b);
  EXPECT_EQ(pool.inUse(), 0u);
  pool.tick();
  pool.tick();
  EXPECT_EQ(pool.coldCount(), bufs.size());
}

TEST(BufferPool, KeepsWhatTheLastPeakUsedWarmAndLetsItGoTwoTicksAfter) {
  BufferPool pool(2);
  std::vector<char*> bufs;
  for (int i = 0; i < 10; ++i) bufs.push_back(pool.get());
  for (char* b : bufs) pool.put(b);
  EXPECT_EQ(pool.warmCount(), 10u);  // the peak used 10: all stay warm
  EXPECT_EQ(pool.coldCount(), 0u);
  // Busy again with 6: 4 warm, 6 in use, still within the demand.
  std::vector<char*> again;
  for (int i = 0; i < 6; ++i) again.push_back(pool.get());
  EXPECT_EQ(pool.coldCount(), 0u);
  pool.tick();  // this period's peak (10) is now the last one: nothing goes
  EXPECT_EQ(pool.warmCount(), 4u);
  pool.tick();  // the demand is now the 6 in use: 4 warm + 6 > 6, keep max_warm 2
  EXPECT_EQ(pool.warmCount(), 2u);
  EXPECT_EQ(pool.coldCount(), 2u);
  for (char* b : again) pool.put(b);
  // The 6 come back to a pool whose warm set and users already fill the
  // demand (2 warm + 6 in use > 6): they go cold.
  EXPECT_EQ(pool.warmCount() + pool.coldCount(), 10u);
  pool.tick();
  pool.tick();  // idle for two periods: only max_warm stays
  EXPECT_EQ(pool.warmCount(), 2u);
  EXPECT_EQ(pool.coldCount(), 8u);
  EXPECT_EQ(pool.inUse(), 0u);
}
#endif

TEST(BufferPool, KeepsAtMostMaxFreeAndEveryBufferIsWholeAndDistinct) {
  BufferPool pool(3);
  std::vector<char*> bufs;
  for (int i = 0; i < 10; ++i) {
    char* b = pool.get();
    std::memset(b, i, BufferPool::kSize);  // the whole buffer is ours to write
    bufs.push_back(b);
  }
  EXPECT_EQ(std::set<char*>(bufs.begin(), bufs.end()).size(), 10u);
  for (char* b : bufs) pool.put(b);
  EXPECT_EQ(pool.inUse(), 0u);
  std::set<char*> again;
  for (int i = 0; i < 5; ++i) again.insert(pool.get());
  EXPECT_EQ(again.size(), 5u);
  EXPECT_EQ(pool.inUse(), 5u);
  for (char* b : again) pool.put(b);
}

}  // namespace
}  // namespace tether::proxy
