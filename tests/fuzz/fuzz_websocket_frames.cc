// libFuzzer target: the WebSocket frame observer of tunnels
// (proxy/forward/websocket_frame.h) and buildCloseFrame().
//
// Input: byte 0 chooses the direction (bit 0: from_client) and the RSV bits
// allowed (bits 1-3), byte 1 the cuts, the rest is the stream. Checked:
//   - the observer, fed the stream whole, in the fuzzer's cuts and byte by
//     byte, agrees after every feed with a plain reference reading of the
//     header's contract (messages, pings, pongs, closeSeen, closeCode,
//     invalid, frameBoundary at that point of the stream);
//   - feedToBoundary, given every other piece, takes the bytes that end the
//     frame in progress and none past it (checked against the same reference);
//   - a close frame built from input bytes is read back by an observer as
//     that close code, at a frame boundary, within kMaxCloseFrameBytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "proxy/forward/websocket_frame.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using tether::forward::FrameObserver;

// What the observer must report once the first `at` bytes went past.
struct Expected {
  std::uint32_t messages = 0, pings = 0, pongs = 0;
  bool close_seen = false;
  std::uint16_t close_code = 0;
  bool invalid = false;
  bool boundary = true;
};

// The stream read once, frame by frame, straight from RFC 6455 5.2 and the
// rules listed in websocket_frame.h; each fact with the stream offset from
// which it holds.
class Reference {
 public:
  Reference(std::string_view s, bool from_client, std::uint8_t allowed_rsv) {
    read(s, from_client, allowed_rsv);
  }

  Expected at(std::size_t offset) const {
    Expected x;
    if (invalid_at_ && offset >= invalid_at_) {
      x = before(invalid_at_ - 1);
      x.invalid = true;
      x.boundary = false;
      return x;
    }
    return before(offset);
  }

 private:
  void read(std::string_view s, bool from_client, std::uint8_t allowed_rsv) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
    const std::size_t n = s.size();
    std::size_t pos = 0;
    bool in_message = false;
    bool close_seen = false;
    boundaries_.push_back(0);
    while (pos < n) {
      const std::uint8_t b0 = p[pos];
      const bool fin = b0 & 0x80;
      const std::uint8_t rsv = (b0 >> 4) & 7, op = b0 & 0xF;
      enum { kData, kPing, kPong, kClose } kind;
      if (op == 0) {
        if (!in_message || rsv) return fail(pos);
        kind = kData;
      } else if (op == 1 || op == 2) {
        if (in_message || (rsv & ~allowed_rsv & 7)) return fail(pos);
        kind = kData;
      } else if (op == 8 || op == 9 || op == 10) {
        if (!fin || rsv) return fail(pos);
        kind = op == 8 ? kClose : op == 9 ? kPing : kPong;
      } else {
        return fail(pos);
      }
      if (kind == kData) in_message = !fin;
      if (pos + 1 >= n) return;
      const std::uint8_t b1 = p[pos + 1];
      const bool masked = b1 & 0x80;
      const std::uint8_t len7 = b1 & 0x7F;
      if (masked != from_client) return fail(pos + 1);
      if (kind != kData && (len7 > 125 || (kind == kClose && len7 == 1))) return fail(pos + 1);
      std::size_t at = pos + 2;
      std::uint64_t len = len7;
      const unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
      if (ext) {
        len = 0;
        for (unsigned i = 0; i < ext; ++i, ++at) {
          if (at >= n) return;
          if (ext == 8 && i == 0 && (p[at] & 0x80)) return fail(at);
          len = (len << 8) | p[at];
        }
      }
      std::uint8_t key[4] = {0, 0, 0, 0};
      if (masked) {
        for (unsigned i = 0; i < 4; ++i, ++at) {
          if (at >= n) return;
          key[i] = p[at];
        }
      }
      if (len > n - at) return;  // the payload runs past the stream
      const std::size_t end = at + static_cast<std::size_t>(len);
      Event e{end, kind == kData ? (fin ? 0 : -1) : kind == kPing ? 1 : kind == kPong ? 2 : 3, 0};
      if (kind == kClose) {
        if (close_seen) {
          e.kind = -1;
        } else {
          close_seen = true;
          if (len >= 2)
            e.code = static_cast<std::uint16_t>(((p[at] ^ key[0]) << 8) | (p[at + 1] ^ key[1]));
        }
      }
      if (e.kind >= 0) events_.push_back(e);
      pos = end;
      boundaries_.push_back(pos);
    }
  }

  struct Event {
    std::size_t end;
    int kind;  // 0 message, 1 ping, 2 pong, 3 first close; -1 nothing counted
    std::uint16_t code;
  };

  void fail(std::size_t byte) { invalid_at_ = byte + 1; }

  Expected before(std::size_t offset) const {
    Expected x;
    for (const Event& e : events_) {
      if (e.end > offset) break;
      switch (e.kind) {
        case 0:
          ++x.messages;
          break;
        case 1:
          ++x.pings;
          break;
        case 2:
          ++x.pongs;
          break;
        case 3:
          x.close_seen = true;
          x.close_code = e.code;
          break;
      }
    }
    x.boundary = false;
    for (std::size_t b : boundaries_) x.boundary |= b == offset;
    return x;
  }

  std::vector<Event> events_;
  std::vector<std::size_t> boundaries_;
  std::size_t invalid_at_ = 0;  // 1 + the offending byte's offset; 0: valid
};

void expectState(const FrameObserver& o, const Expected& x, std::size_t offset) {
  if (o.messages() == x.messages && o.pings() == x.pings && o.pongs() == x.pongs &&
      o.closeSeen() == x.close_seen && o.closeCode() == x.close_code && o.invalid() == x.invalid &&
      o.frameBoundary() == x.boundary) {
    return;
  }
  std::fprintf(
      stderr,
      "after %zu bytes: observer messages=%u pings=%u pongs=%u close=%d/%u invalid=%d boundary=%d\n"
      "             reference messages=%u pings=%u pongs=%u close=%d/%u invalid=%d boundary=%d\n",
      offset, o.messages(), o.pings(), o.pongs(), o.closeSeen(), o.closeCode(), o.invalid(),
      o.frameBoundary(), x.messages, x.pings, x.pongs, x.close_seen, x.close_code, x.invalid,
      x.boundary);
  __builtin_trap();
}

// Feeds `s` in pieces of the sizes in `cuts` (cyclically; empty = whole),
// checking the observer against the reference after every feed.
void feedAndCheck(std::string_view s, bool from_client, std::uint8_t rsv, const Reference& ref,
                  const std::vector<std::size_t>& cuts) {
  FrameObserver o(from_client, rsv);
  expectState(o, ref.at(0), 0);
  std::size_t at = 0, k = 0;
  while (at < s.size()) {
    std::size_t n = cuts.empty() ? s.size() : cuts[k++ % cuts.size()];
    if (n > s.size() - at) n = s.size() - at;
    // Exactly sized copy: a read past len is a heap overflow under ASan.
    std::unique_ptr<char[]> piece(new char[n]);
    std::copy(s.data() + at, s.data() + at + n, piece.get());
    o.feed(piece.get(), n);
    at += n;
    expectState(o, ref.at(at), at);
  }
  o.feed(nullptr, 0);
  expectState(o, ref.at(at), at);
}

// Walks `s` in the cuts' pieces, every other piece through feedToBoundary
// (what a drain does with the rest of a frame in flight): it takes no byte
// past the frame in progress, stops only at the frame's end, the piece's end
// or a protocol error, and leaves the observer as feeding those bytes would.
void feedToBoundaryAndCheck(std::string_view s, bool from_client, std::uint8_t rsv, const Reference& ref,
                            const std::vector<std::size_t>& cuts) {
  FrameObserver o(from_client, rsv);
  std::size_t at = 0, k = 0;
  while (at < s.size()) {
    std::size_t n = cuts[k++ % cuts.size()];
    if (n > s.size() - at) n = s.size() - at;
    std::unique_ptr<char[]> piece(new char[n]);
    std::copy(s.data() + at, s.data() + at + n, piece.get());
    if (k % 2) {
      o.feed(piece.get(), n);
      at += n;
      expectState(o, ref.at(at), at);
      continue;
    }
    const bool was_boundary = o.frameBoundary(), was_invalid = o.invalid();
    const std::size_t took = o.feedToBoundary(piece.get(), n);
    FUZZ_CHECK(took <= n);
    if (was_boundary || was_invalid) FUZZ_CHECK(took == 0);
    at += took;
    expectState(o, ref.at(at), at);
    // It stopped short of the piece's end only where the frame ended (or
    // the stream broke the protocol): the reference agrees (expectState).
    if (took < n) FUZZ_CHECK(o.frameBoundary() || o.invalid());
    if (took == 0) {  // at a boundary: the piece goes as usual
      o.feed(piece.get(), n);
      at += n;
      expectState(o, ref.at(at), at);
    }
  }
}

void closeFrameRoundTrip(std::string_view s, bool from_client) {
  if (s.size() < 6) return;
  const auto* p = reinterpret_cast<const std::uint8_t*>(s.data());
  const std::uint16_t code = static_cast<std::uint16_t>(p[0] << 8 | p[1]);
  const std::uint32_t key = static_cast<std::uint32_t>(p[2]) << 24 | p[3] << 16 | p[4] << 8 | p[5];
  std::string_view reason = s.substr(6);
  std::unique_ptr<char[]> out(new char[tether::forward::kMaxCloseFrameBytes]);
  // A frame tether sends the way these bytes go: masked towards a backend.
  const std::size_t n = tether::forward::buildCloseFrame(code, reason, from_client, key, out.get());
  FUZZ_CHECK(n >= 2 && n <= tether::forward::kMaxCloseFrameBytes);
  const std::size_t header = 2 + (from_client ? 4 : 0);
  const std::size_t payload = static_cast<std::uint8_t>(out[1]) & 0x7F;
  FUZZ_CHECK(n == header + payload);
  if (code == 0) {
    FUZZ_CHECK(payload == 0);
  } else {
    FUZZ_CHECK(payload >= 2 && payload - 2 <= tether::forward::kMaxCloseReasonBytes);
    FUZZ_CHECK(payload - 2 <= reason.size());
    if (reason.size() <= tether::forward::kMaxCloseReasonBytes)
      FUZZ_CHECK(payload - 2 == reason.size());
    // The reason sent is a prefix of the one asked for (unmasked).
    for (std::size_t i = 0; i < payload - 2; ++i) {
      std::uint8_t m = from_client ? static_cast<std::uint8_t>(out[2 + (i + 2) % 4]) : 0;
      FUZZ_CHECK(static_cast<char>(static_cast<std::uint8_t>(out[header + 2 + i]) ^ m) ==
                 reason[i]);
    }
  }
  FrameObserver o(from_client, 0);
  o.feed(out.get(), n);
  FUZZ_CHECK(!o.invalid());
  FUZZ_CHECK(o.closeSeen());
  FUZZ_CHECK(o.closeCode() == code);
  FUZZ_CHECK(o.frameBoundary());
}

std::vector<std::size_t> cutsFrom(std::uint8_t seed, std::size_t len) {
  if (seed == 0) return {1};
  std::mt19937 rng(seed);
  std::vector<std::size_t> cuts;
  const std::size_t most = 1 + seed % 24;
  for (std::size_t total = 0; total < len;) {
    std::size_t n = 1 + rng() % most;
    cuts.push_back(n);
    total += n;
  }
  return cuts;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const bool from_client = data[0] & 1;
  const std::uint8_t rsv = (data[0] >> 1) & 7;
  std::string_view s(reinterpret_cast<const char*>(data + 2), size - 2);
  Reference ref(s, from_client, rsv);
  feedAndCheck(s, from_client, rsv, ref, {});
  feedAndCheck(s, from_client, rsv, ref, cutsFrom(data[1], s.size()));
  if (s.size() <= 1024 && data[1] != 0) feedAndCheck(s, from_client, rsv, ref, {1});
  if (s.size() <= 4096) feedToBoundaryAndCheck(s, from_client, rsv, ref, cutsFrom(data[1], s.size()));
  closeFrameRoundTrip(s, from_client);
  return 0;
}
