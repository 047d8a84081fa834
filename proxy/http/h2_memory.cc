#include "proxy/http/h2_memory.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "proxy/io/sanitizer.h"

namespace tether::http {

namespace {

// Each block starts with a tag: its size class, or for a large block
// kLarge and the size asked for. Eight bytes, as glibc's own chunk header:
// the caller's bytes are 8-aligned, which is all nghttp2's structures need
// (pointers and 64-bit integers).
using Tag = std::uint64_t;
constexpr Tag kLarge = Tag{1} << 63;

// Sizes with the tag included, close enough together that a block wastes
// little more than malloc's rounding would.
constexpr std::size_t kClassBytes[] = {32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 512, 768, 1024};
constexpr std::size_t kClasses = sizeof kClassBytes / sizeof kClassBytes[0];
constexpr std::size_t kMaxSmall = kClassBytes[kClasses - 1] - sizeof(Tag);
constexpr std::size_t kKeptBytes = 256 * 1024;  // kept free per thread, all classes together

// The class of a block of n + sizeof(Tag) bytes, by 16-byte steps.
struct ClassTable {
  std::uint8_t of[kClassBytes[kClasses - 1] / 16 + 1] = {};
  constexpr ClassTable() {
    std::size_t c = 0;
    for (std::size_t i = 0; i < sizeof of; ++i) {
      while (kClassBytes[c] < i * 16) ++c;
      of[i] = static_cast<std::uint8_t>(c);
    }
  }
};
constexpr ClassTable kClassOf;

std::size_t classFor(std::size_t n) { return kClassOf.of[(n + sizeof(Tag) + 15) / 16]; }

struct FreeLists {
  void* head[kClasses] = {};
  std::size_t kept[kClasses] = {};
  std::size_t kept_bytes = 0;
  ~FreeLists() {
    for (std::size_t c = 0; c < kClasses; ++c) {
      while (void* b = head[c]) {
        std::memcpy(&head[c], b, sizeof(void*));
        std::free(b);
      }
      kept[c] = 0;
    }
    kept_bytes = 0;
  }
};
thread_local FreeLists lists;

Tag* tagOf(void* p) { return static_cast<Tag*>(p) - 1; }

void* allocate(std::size_t n, void*) {
  Tag tag;
  void* block;
  if (n > kMaxSmall) {
    if (n > (kLarge - 1) - sizeof(Tag)) return nullptr;
    block = std::malloc(n + sizeof(Tag));
    tag = kLarge | n;
  } else {
    std::size_t c = classFor(n);
    tag = c;
    if ((block = lists.head[c])) {
      std::memcpy(&lists.head[c], block, sizeof(void*));
      --lists.kept[c];
      lists.kept_bytes -= kClassBytes[c];
    } else {
      block = std::malloc(kClassBytes[c]);
    }
  }
  if (!block) return nullptr;
  *static_cast<Tag*>(block) = tag;
  return static_cast<Tag*>(block) + 1;
}

void release(void* p, void*) {
  if (!p) return;
  Tag* block = tagOf(p);
  Tag tag = *block;
  if ((tag & kLarge) || lists.kept_bytes + kClassBytes[tag] > kKeptBytes) {
    std::free(block);
    return;
  }
  std::memcpy(static_cast<void*>(block), &lists.head[tag], sizeof(void*));
  lists.head[tag] = block;
  ++lists.kept[tag];
  lists.kept_bytes += kClassBytes[tag];
}

void* allocateZeroed(std::size_t n, std::size_t size, void* ud) {
  if (size && n > SIZE_MAX / size) return nullptr;
  void* p = allocate(n * size, ud);
  if (p) std::memset(p, 0, n * size);
  return p;
}

void* reallocate(void* p, std::size_t n, void* ud) {
  if (!p) return allocate(n, ud);
  Tag* block = tagOf(p);
  Tag tag = *block;
  if ((tag & kLarge) && n > kMaxSmall) {
    if (n > (kLarge - 1) - sizeof(Tag)) return nullptr;
    void* grown = std::realloc(block, n + sizeof(Tag));
    if (!grown) return nullptr;
    *static_cast<Tag*>(grown) = kLarge | n;
    return static_cast<Tag*>(grown) + 1;
  }
  std::size_t have = (tag & kLarge) ? (tag & ~kLarge) : kClassBytes[tag] - sizeof(Tag);
  if (!(tag & kLarge) && n <= have) return p;
  void* q = allocate(n, ud);
  if (!q) return nullptr;
  std::memcpy(q, p, have < n ? have : n);
  release(p, ud);
  return q;
}

nghttp2_mem memory{nullptr, allocate, release, allocateZeroed, reallocate};

}  // namespace

nghttp2_mem* h2Memory() {
#ifdef TETHER_ASAN
  return nullptr;
#endif
  return &memory;
}

std::size_t h2MemoryKeptBlocks() {
  std::size_t n = 0;
  for (std::size_t c : lists.kept) n += c;
  return n;
}

std::size_t h2MemoryKeptBytes() { return lists.kept_bytes; }

}  // namespace tether::http
