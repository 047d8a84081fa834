// libFuzzer target: balancer::EngineIoSidSniffer (balancer/affinity_key.h),
// which reads the sid out of an Engine.IO handshake response body as the
// body arrives.
//
// Input: byte 0 chooses the cuts, the rest is the body. Checked: the body
// whole, in the fuzzer's cuts and byte by byte ends in the same state with
// the same sid; only the first kMaxBytes bytes count; a sid found is not
// empty and within kMaxKeyValueBytes; nothing changes after a decision.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "balancer/affinity_key.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using tether::balancer::EngineIoSidSniffer;

struct Result {
  EngineIoSidSniffer::State state;
  std::string sid;
  bool operator==(const Result&) const = default;
};

// cuts: piece sizes, cyclically; empty = the body at once.
Result sniff(std::string_view body, const std::vector<std::size_t>& cuts) {
  EngineIoSidSniffer s;
  std::size_t at = 0, k = 0;
  while (at < body.size()) {
    std::size_t n = cuts.empty() ? body.size() : cuts[k++ % cuts.size()];
    if (n > body.size() - at) n = body.size() - at;
    if (n == 0) {
      s.feed({});  // an empty read: nothing changes
      n = 1;
    }
    // Exactly sized: a read past the chunk is a heap overflow under ASan.
    std::unique_ptr<char[]> piece(new char[n]);
    std::copy(body.data() + at, body.data() + at + n, piece.get());
    const EngineIoSidSniffer::State before = s.state();
    const std::string sid_before(s.sid());
    s.feed(std::string_view(piece.get(), n));
    if (before != EngineIoSidSniffer::kNeedMore) {
      // "Once the state is not kNeedMore, further chunks are ignored."
      FUZZ_CHECK(s.state() == before);
      FUZZ_CHECK(s.sid() == sid_before);
    }
    at += n;
  }
  s.feed({});
  s.finish();
  FUZZ_CHECK(s.state() != EngineIoSidSniffer::kNeedMore);
  Result r{s.state(), std::string(s.sid())};
  if (r.state == EngineIoSidSniffer::kFound) {
    FUZZ_CHECK(!r.sid.empty());
    FUZZ_CHECK(r.sid.size() <= tether::balancer::kMaxKeyValueBytes);
  } else {
    r.sid.clear();  // meaningless unless found
  }
  return r;
}

std::vector<std::size_t> cutsFrom(std::uint8_t seed, std::size_t len) {
  if (seed == 0) return {1};
  std::mt19937 rng(seed);
  std::vector<std::size_t> cuts;
  const std::size_t most = 1 + seed % 40;
  for (std::size_t total = 0; total < len;) {
    std::size_t n = rng() % (most + 1);  // empty chunks too
    cuts.push_back(n);
    total += n ? n : 1;
  }
  return cuts;
}

void report(const Result& a, const Result& b, const char* what) {
  if (a == b) return;
  std::fprintf(stderr, "%s: state %d sid \"%s\" against whole: state %d sid \"%s\"\n", what,
               b.state, b.sid.c_str(), a.state, a.sid.c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  const Result whole = sniff(body, {});
  report(whole, sniff(body, cutsFrom(data[0], body.size())), "fuzzer's cuts");
  if (data[0] != 0) report(whole, sniff(body, {1}), "byte by byte");
  // Only the first kMaxBytes bytes are looked at.
  if (body.size() > EngineIoSidSniffer::kMaxBytes) {
    report(whole, sniff(body.substr(0, EngineIoSidSniffer::kMaxBytes), {}),
           "first kMaxBytes bytes");
  }
  return 0;
}
