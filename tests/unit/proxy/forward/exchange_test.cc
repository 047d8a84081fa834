// One request's exchange: made in a known state, its buffers given back.
#include "proxy/forward/exchange.h"

#include <gtest/gtest.h>

namespace tether::forward {
namespace {

TEST(Exchange, StartsWithNothingDecidedAndCountsBytesAlreadyRead) {
  proxy::BufferPool pool;
  Exchange e(pool, 42);
  EXPECT_EQ(e.bytes_in, 42u);
  EXPECT_EQ(e.method, Exchange::kNoMethod);
  EXPECT_TRUE(e.keep_alive);
  EXPECT_FALSE(e.head_done);
  EXPECT_FALSE(e.aff);
  EXPECT_EQ(e.attempts, 0);
  EXPECT_EQ(e.connect_us, -1);
  EXPECT_EQ(e.first_byte_ms, -1);
}

TEST(Exchange, GivesItsBuffersBackWhenReleasedAndWhenDestroyed) {
  proxy::BufferPool pool;
  {
    Exchange e(pool, 0);
    e.up_head.data = pool.get();
    e.up_head.cap = proxy::BufferPool::kSize;
    e.up_body.data = pool.get();
    e.up_body.cap = proxy::BufferPool::kSize;
    EXPECT_EQ(pool.inUse(), 2u);
    e.releaseBuffers();
    EXPECT_EQ(pool.inUse(), 0u);
    EXPECT_EQ(e.up_head.data, nullptr);
    e.up_body.data = pool.get();
    e.up_body.cap = proxy::BufferPool::kSize;
    EXPECT_EQ(pool.inUse(), 1u);
  }
  EXPECT_EQ(pool.inUse(), 0u);
}

}  // namespace
}  // namespace tether::forward
