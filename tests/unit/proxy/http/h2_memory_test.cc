// nghttp2's allocator: every size and call nghttp2 makes gives usable,
// aligned memory with its bytes kept across realloc, calloc zeroes a block
// that was used before, freed blocks are reused, and what a thread keeps is
// bounded.
#include "proxy/http/h2_memory.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "proxy/io/sanitizer.h"

namespace tether::http {
namespace {

nghttp2_mem& mem() {
  static nghttp2_mem fallback{nullptr,
                              [](std::size_t n, void*) { return std::malloc(n); },
                              [](void* p, void*) { std::free(p); },
                              [](std::size_t n, std::size_t s, void*) { return std::calloc(n, s); },
                              [](void* p, std::size_t n, void*) { return std::realloc(p, n); }};
  nghttp2_mem* m = h2Memory();
  return m ? *m : fallback;
}

void fill(void* p, std::size_t n, unsigned char seed) {
  auto* b = static_cast<unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<unsigned char>(seed + i * 7);
}

bool holds(const void* p, std::size_t n, unsigned char seed) {
  auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i)
    if (b[i] != static_cast<unsigned char>(seed + i * 7)) return false;
  return true;
}

TEST(H2Memory, EverySizeIsUsableAndAligned) {
  nghttp2_mem& m = mem();
  std::vector<std::pair<void*, std::size_t>> blocks;
  for (std::size_t n : {0u, 1u, 15u, 16u, 47u, 48u, 49u, 111u, 112u, 113u, 240u, 496u, 1007u, 1008u, 1009u, 1016u, 1017u, 4096u, 16384u,
                        100000u}) {
    void* p = m.malloc(n, m.mem_user_data);
    ASSERT_NE(p, nullptr) << n;
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(std::uint64_t), 0u) << n;
    fill(p, n, static_cast<unsigned char>(n));
    blocks.emplace_back(p, n);
  }
  for (auto [p, n] : blocks) {
    EXPECT_TRUE(holds(p, n, static_cast<unsigned char>(n))) << n;  // no block overlaps another
    m.free(p, m.mem_user_data);
  }
  m.free(nullptr, m.mem_user_data);
}

TEST(H2Memory, ReallocKeepsTheBytesAcrossEverySizeClass) {
  nghttp2_mem& m = mem();
  std::size_t sizes[] = {10, 40, 100, 200, 500, 1000, 3000, 20000, 900, 60, 5, 70000, 30};
  void* p = m.realloc(nullptr, 1, m.mem_user_data);
  ASSERT_NE(p, nullptr);
  fill(p, 1, 3);
  std::size_t have = 1;
  for (std::size_t n : sizes) {
    p = m.realloc(p, n, m.mem_user_data);
    ASSERT_NE(p, nullptr) << n;
    std::size_t kept = have < n ? have : n;
    EXPECT_TRUE(holds(p, kept, 3)) << have << " -> " << n;
    fill(p, n, 3);
    have = n;
  }
  m.free(p, m.mem_user_data);
}

TEST(H2Memory, CallocZeroesABlockThatWasUsedBefore) {
  nghttp2_mem& m = mem();
  for (std::size_t n : {24u, 100u, 300u, 700u, 2000u}) {
    void* p = m.malloc(n, m.mem_user_data);
    std::memset(p, 0xab, n);
    m.free(p, m.mem_user_data);
    auto* z = static_cast<unsigned char*>(m.calloc(1, n, m.mem_user_data));
    ASSERT_NE(z, nullptr);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(z[i], 0) << n << " at " << i;
    m.free(z, m.mem_user_data);
  }
  if (h2Memory()) {  // ours (ASan's own calloc aborts on these)
    EXPECT_EQ(m.calloc(SIZE_MAX / 2, 4, m.mem_user_data), nullptr);  // the product overflows
    EXPECT_EQ(m.malloc(SIZE_MAX - 4, m.mem_user_data), nullptr);
    for (std::size_t n : {100u, 2000u}) {  // a failed realloc leaves the block the caller's
      void* p = m.malloc(n, nullptr);
      fill(p, n, 9);
      EXPECT_EQ(m.realloc(p, SIZE_MAX - 4, nullptr), nullptr);
      EXPECT_TRUE(holds(p, n, 9));
      m.free(p, nullptr);
    }
  }
}

#ifndef TETHER_ASAN  // under ASan nghttp2 allocates with malloc
TEST(H2Memory, AFreedBlockIsReusedAndWhatAThreadKeepsIsBounded) {
  nghttp2_mem& m = *h2Memory();
  void* a = m.malloc(100, nullptr);
  m.free(a, nullptr);
  EXPECT_EQ(m.malloc(90, nullptr), a);  // the same size class, newest first
  m.free(a, nullptr);

  std::vector<void*> many;
  for (int i = 0; i < 10000; ++i) many.push_back(m.malloc(40, nullptr));
  for (void* p : many) m.free(p, nullptr);
  EXPECT_LE(h2MemoryKeptBytes(), 256u * 1024);
  EXPECT_GE(h2MemoryKeptBytes(), 256u * 1024 - 1024);  // kept up to the bound
  void* big = m.malloc(8000, nullptr);
  std::size_t kept = h2MemoryKeptBlocks();
  m.free(big, nullptr);
  EXPECT_EQ(h2MemoryKeptBlocks(), kept);  // a large block goes back to malloc
}
#endif

// A session on the allocator: a request, a response with a body, the
// session's end: nothing leaks (ASan/LSan builds check it with malloc, the
// others count the blocks kept).
TEST(H2Memory, ASessionRunsOnIt) {
  nghttp2_session_callbacks* cbs = nullptr;
  ASSERT_EQ(nghttp2_session_callbacks_new(&cbs), 0);
  nghttp2_session* client = nullptr;
  ASSERT_EQ(nghttp2_session_client_new3(&client, cbs, nullptr, nullptr, h2Memory()), 0);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_nv nv[] = {{(uint8_t*)":method", (uint8_t*)"GET", 7, 3, 0},
                     {(uint8_t*)":path", (uint8_t*)"/", 5, 1, 0},
                     {(uint8_t*)":scheme", (uint8_t*)"https", 7, 5, 0},
                     {(uint8_t*)":authority", (uint8_t*)"a", 10, 1, 0},
                     {(uint8_t*)"x-long", (uint8_t*)"0123456789012345678901234567890123456789", 6, 40, 0}};
  for (int i = 0; i < 50; ++i) EXPECT_GT(nghttp2_submit_request(client, nullptr, nv, 5, nullptr, nullptr), 0);
  std::size_t out = 0;
  const std::uint8_t* data = nullptr;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(client, &data)) > 0) out += static_cast<std::size_t>(n);
  EXPECT_GT(out, 100u);
  nghttp2_session_del(client);
}

}  // namespace
}  // namespace tether::http
