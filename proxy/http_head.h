// Parsed HTTP heads as offsets into the buffer they were read into.
//
// Offsets, not pointers: a request head may outgrow its first buffer and be
// moved into a larger one while it is still arriving.
#pragma once

#include <cstdint>
#include <string_view>

namespace tether::proxy {

struct Span {
  std::uint32_t off = 0;
  std::uint32_t len = 0;
  std::string_view in(const char* base) const { return {base + off, len}; }
};

struct HeaderRef {
  Span name;
  Span value;
};

// Scratch for one head being parsed. Borrowed from the worker for the time of
// one parse (and, for requests, until the upstream head is built).
struct HeadScratch {
  static constexpr int kMaxHeaders = 128;
  HeaderRef headers[kMaxHeaders];
  std::uint32_t count = 0;
  Span url;      // request target
  Span status;   // reason phrase
  bool too_many = false;
  bool in_value = false;
  HeadScratch* next_free = nullptr;
  void reset() {
    count = 0;
    url = {};
    status = {};
    too_many = false;
    in_value = false;
  }
};

// ASCII case-insensitive comparison for header names.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

// Does the comma-separated token list `list` contain `token` (case-insensitive)?
inline bool hasToken(std::string_view list, std::string_view token) {
  std::size_t i = 0;
  while (i < list.size()) {
    std::size_t j = list.find(',', i);
    if (j == std::string_view::npos) j = list.size();
    std::string_view t = list.substr(i, j - i);
    while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
    if (iequals(t, token)) return true;
    i = j + 1;
  }
  return false;
}

}  // namespace tether::proxy
