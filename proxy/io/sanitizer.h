// Whether this build runs under AddressSanitizer: GCC defines
// __SANITIZE_ADDRESS__, clang (the fuzz builds) answers __has_feature. The
// spare lists keep nothing then (BufferPool, the HTTP/2 stream entries), so
// that a pointer kept to freed memory is reported instead of aliasing the
// next user of that memory.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define TETHER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TETHER_ASAN 1
#endif
#endif
