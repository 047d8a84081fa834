// nghttp2's allocations, from free lists kept per loop thread (nghttp2_mem).
//
// A stream costs nghttp2 about four small allocations and five frees (the
// stream, its outbound items, header buffers), which glibc's malloc and free
// serve in about 110 and 75 instructions each on this path, some 3 % of a
// proxied HTTP/2 request. Blocks of up to 1 KiB come from free lists of
// sixteen sizes instead (rounded no more than malloc rounds), at most 256 KiB
// of them kept free per thread; larger blocks (a session's frame buffer, its
// HPACK tables) are malloc's, as is every block under AddressSanitizer (no
// allocator then), so that a use after free is reported.
//
// A session uses it only on the thread that made it: nghttp2 sessions are
// loop-affine, so a block is freed on the thread that allocated it.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>

namespace tether::http {

// The allocator for sessions made on this thread, or null for nghttp2's own
// (malloc) under AddressSanitizer.
nghttp2_mem* h2Memory();

// Blocks this thread keeps free, and their bytes, for the tests.
std::size_t h2MemoryKeptBlocks();
std::size_t h2MemoryKeptBytes();

}  // namespace tether::http
