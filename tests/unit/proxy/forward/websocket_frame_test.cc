#include "proxy/forward/websocket_frame.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace tether::forward {
namespace {

constexpr std::uint8_t kText = 0x1;
constexpr std::uint8_t kBinary = 0x2;
constexpr std::uint8_t kCont = 0x0;
constexpr std::uint8_t kClose = 0x8;
constexpr std::uint8_t kPing = 0x9;
constexpr std::uint8_t kPong = 0xA;
constexpr std::uint32_t kKey = 0x37FA213D;  // the mask key of RFC 6455 5.7

// Frame header only: first byte, length in its shortest form, mask key.
std::string header(bool fin, std::uint8_t opcode, std::uint64_t len, bool masked,
                   std::uint32_t key = kKey, std::uint8_t rsv = 0) {
  std::string h;
  h.push_back(static_cast<char>((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  std::uint8_t m = masked ? 0x80 : 0;
  if (len <= 125) {
    h.push_back(static_cast<char>(m | len));
  } else if (len <= 0xFFFF) {
    h.push_back(static_cast<char>(m | 126));
    h.push_back(static_cast<char>(len >> 8));
    h.push_back(static_cast<char>(len));
  } else {
    h.push_back(static_cast<char>(m | 127));
    for (int i = 7; i >= 0; --i) h.push_back(static_cast<char>(len >> (8 * i)));
  }
  if (masked) {
    for (int i = 3; i >= 0; --i) h.push_back(static_cast<char>(key >> (8 * i)));
  }
  return h;
}

// A whole frame; the payload is masked when masked.
std::string frame(bool fin, std::uint8_t opcode, std::string_view payload, bool masked,
                  std::uint32_t key = kKey, std::uint8_t rsv = 0) {
  std::string f = header(fin, opcode, payload.size(), masked, key, rsv);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    char c = payload[i];
    if (masked) c = static_cast<char>(c ^ static_cast<char>(key >> (8 * (3 - (i & 3)))));
    f.push_back(c);
  }
  return f;
}

std::string closePayload(std::uint16_t code, std::string_view reason = {}) {
  std::string p;
  p.push_back(static_cast<char>(code >> 8));
  p.push_back(static_cast<char>(code));
  p.append(reason);
  return p;
}

struct Snapshot {
  std::uint32_t messages, pings, pongs;
  bool close_seen;
  std::uint16_t close_code;
  bool invalid, boundary;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snap(const FrameObserver& o) {
  return {o.messages(),  o.pings(),   o.pongs(),        o.closeSeen(),
          o.closeCode(), o.invalid(), o.frameBoundary()};
}

std::ostream& operator<<(std::ostream& os, const Snapshot& s) {
  return os << "{messages=" << s.messages << " pings=" << s.pings << " pongs=" << s.pongs
            << " close_seen=" << s.close_seen << " code=" << s.close_code
            << " invalid=" << s.invalid << " boundary=" << s.boundary << "}";
}

void feed(FrameObserver& o, std::string_view s) { o.feed(s.data(), s.size()); }

// Feeds len zero bytes of payload in 1 MiB steps.
void feedZeros(FrameObserver& o, std::uint64_t len) {
  static const std::vector<char> zeros(1 << 20, 0);
  while (len > 0) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, zeros.size()));
    o.feed(zeros.data(), n);
    len -= n;
  }
}

TEST(FrameObserver, StartsAtABoundaryWithNothingSeen) {
  FrameObserver o(true);
  EXPECT_EQ(snap(o), (Snapshot{0, 0, 0, false, 0, false, true}));
  o.feed(nullptr, 0);
  EXPECT_EQ(snap(o), (Snapshot{0, 0, 0, false, 0, false, true}));
}

TEST(FrameObserver, EveryLengthFormMaskedAndUnmasked) {
  const std::uint64_t lengths[] = {0, 1, 125, 126, 127, 65535, 65536, 16u << 20};
  for (bool masked : {true, false}) {
    for (std::uint64_t len : lengths) {
      SCOPED_TRACE(testing::Message() << "len=" << len << " masked=" << masked);
      std::string h = header(true, kBinary, len, masked);
      std::size_t expect_header = 2 + (len <= 125 ? 0 : len <= 0xFFFF ? 2 : 8) + (masked ? 4 : 0);
      ASSERT_EQ(h.size(), expect_header);
      FrameObserver o(masked);
      feed(o, h);
      if (len > 0) {
        EXPECT_FALSE(o.frameBoundary());
        feedZeros(o, len - 1);
        EXPECT_FALSE(o.frameBoundary());
        EXPECT_EQ(o.messages(), 0u);
        feedZeros(o, 1);
      }
      EXPECT_TRUE(o.frameBoundary());
      EXPECT_EQ(o.messages(), 1u);
      EXPECT_FALSE(o.invalid());
      // A second frame right behind it still parses.
      feed(o, frame(true, kText, "hi", masked));
      EXPECT_EQ(o.messages(), 2u);
    }
  }
}

TEST(FrameObserver, HugeSixtyFourBitLengthIsSkippedNotBuffered) {
  FrameObserver o(false);
  std::uint64_t len = (std::uint64_t{1} << 62) + 5;
  feed(o, header(true, kBinary, len, false));
  EXPECT_FALSE(o.invalid());
  EXPECT_FALSE(o.frameBoundary());
  feedZeros(o, 3 << 20);
  EXPECT_FALSE(o.frameBoundary());
  EXPECT_EQ(o.messages(), 0u);
}

TEST(FrameObserver, SixtyFourBitLengthWithMsbSetIsInvalid) {
  FrameObserver o(false);
  std::string h = header(true, kBinary, 1 << 20, false);
  h[2] = static_cast<char>(0x80);
  feed(o, h);
  EXPECT_TRUE(o.invalid());
  EXPECT_FALSE(o.frameBoundary());
}

// A conversation with every kind of frame, for the split tests.
std::string conversation(bool masked) {
  std::string s;
  s += frame(true, kText, "hello", masked, 0x01020304);
  s += frame(false, kText, "frag-one ", masked, 0xA1B2C3D4);
  s += frame(true, kPing, "are you there", masked, 0x0);
  s += frame(false, kCont, std::string(200, 'x'), masked, 0xFFFFFFFF);
  s += frame(true, kPong, "", masked, 0x11223344);
  s += frame(true, kCont, "end", masked, 0x55667788);
  s += frame(true, kBinary, std::string(70000, 'b'), masked, 0x99AABBCC);
  s += frame(true, kBinary, "", masked, 0xDEADBEEF);
  s += frame(true, kPong, "p", masked, 0x12345678);
  s += frame(true, kClose, closePayload(4001, "bye"), masked, 0xCAFEBABE);
  return s;
}

const Snapshot kConversationEnd{4, 1, 2, true, 4001, false, true};

TEST(FrameObserver, WholeConversationInOneFeed) {
  for (bool masked : {true, false}) {
    FrameObserver o(masked);
    feed(o, conversation(masked));
    EXPECT_EQ(snap(o), kConversationEnd) << "masked=" << masked;
  }
}

TEST(FrameObserver, ByteByByteGivesTheSameResult) {
  for (bool masked : {true, false}) {
    std::string s = conversation(masked);
    FrameObserver o(masked);
    for (char c : s) o.feed(&c, 1);
    EXPECT_EQ(snap(o), kConversationEnd) << "masked=" << masked;
  }
}

TEST(FrameObserver, EverySplitPointOfTwoChunksGivesTheSameResult) {
  for (bool masked : {true, false}) {
    // Skip the 70000-byte frame here: every split point of it is the same
    // code path, and the test stays quick.
    std::string s;
    s += frame(true, kText, "hello", masked, 0x01020304);
    s += frame(false, kText, "frag-one ", masked, 0xA1B2C3D4);
    s += frame(true, kPing, "are you there", masked, 0x0);
    s += frame(false, kCont, std::string(300, 'x'), masked, 0xFFFFFFFF);
    s += frame(true, kPong, "", masked, 0x11223344);
    s += frame(true, kCont, "end", masked, 0x55667788);
    s += frame(true, kBinary, "", masked, 0xDEADBEEF);
    s += frame(true, kClose, closePayload(1001, "going away"), masked, 0xCAFEBABE);
    const Snapshot expect{3, 1, 1, true, 1001, false, true};
    FrameObserver whole(masked);
    feed(whole, s);
    ASSERT_EQ(snap(whole), expect);
    for (std::size_t split = 0; split <= s.size(); ++split) {
      FrameObserver o(masked);
      o.feed(s.data(), split);
      o.feed(s.data() + split, s.size() - split);
      ASSERT_EQ(snap(o), expect) << "split=" << split << " masked=" << masked;
    }
  }
}

TEST(FrameObserver, BoundaryIsTrueExactlyBetweenFrames) {
  std::string a = frame(true, kText, "abc", true);
  std::string b = frame(true, kPing, "", true);
  std::string s = a + b;
  FrameObserver o(true);
  for (std::size_t i = 0; i < s.size(); ++i) {
    o.feed(&s[i], 1);
    bool at_end_of_frame = i + 1 == a.size() || i + 1 == s.size();
    EXPECT_EQ(o.frameBoundary(), at_end_of_frame) << "after byte " << i;
  }
}

TEST(FrameObserver, FragmentedMessageCountsOnce) {
  FrameObserver o(false);
  feed(o, frame(false, kText, "a", false));
  EXPECT_EQ(o.messages(), 0u);
  EXPECT_TRUE(o.frameBoundary());  // control frames may be injected here
  feed(o, frame(false, kCont, "b", false));
  feed(o, frame(false, kCont, "", false));
  EXPECT_EQ(o.messages(), 0u);
  feed(o, frame(true, kCont, "c", false));
  EXPECT_EQ(o.messages(), 1u);
  // And a new message may start afterwards.
  feed(o, frame(true, kBinary, "d", false));
  EXPECT_EQ(o.messages(), 2u);
  EXPECT_FALSE(o.invalid());
}

TEST(FrameObserver, PingAndPongInsideAFragmentedMessage) {
  FrameObserver o(true);
  feed(o, frame(false, kBinary, "part1", true));
  feed(o, frame(true, kPing, "x", true));
  feed(o, frame(false, kCont, "part2", true));
  feed(o, frame(true, kPong, "y", true));
  feed(o, frame(true, kCont, "part3", true));
  EXPECT_EQ(snap(o), (Snapshot{1, 1, 1, false, 0, false, true}));
}

TEST(FrameObserver, CloseCodes) {
  for (bool masked : {true, false}) {
    for (std::uint16_t code : {1000, 1001, 1011, 3000, 4999, 0x0102, 0xFFFF}) {
      FrameObserver o(masked);
      feed(o, frame(true, kClose, closePayload(code), masked, 0x8F7F6F5F));
      EXPECT_TRUE(o.closeSeen());
      EXPECT_EQ(o.closeCode(), code) << "masked=" << masked;
    }
    FrameObserver with_reason(masked);
    feed(with_reason, frame(true, kClose, closePayload(1008, std::string(123, 'r')), masked));
    EXPECT_EQ(with_reason.closeCode(), 1008);
    EXPECT_FALSE(with_reason.invalid());
  }
}

TEST(FrameObserver, CloseWithoutPayloadHasCodeZero) {
  for (bool masked : {true, false}) {
    FrameObserver o(masked);
    feed(o, frame(true, kClose, "", masked, 0xFFFFFFFF));
    EXPECT_TRUE(o.closeSeen());
    EXPECT_EQ(o.closeCode(), 0);
  }
}

TEST(FrameObserver, CloseIsSeenOnlyWhenTheWholeFrameWentPast) {
  std::string f = frame(true, kClose, closePayload(1000, "done"), true);
  FrameObserver o(true);
  o.feed(f.data(), f.size() - 1);
  EXPECT_FALSE(o.closeSeen());
  EXPECT_EQ(o.closeCode(), 0);
  o.feed(f.data() + f.size() - 1, 1);
  EXPECT_TRUE(o.closeSeen());
  EXPECT_EQ(o.closeCode(), 1000);
}

TEST(FrameObserver, OnlyTheFirstCloseIsRecorded) {
  FrameObserver o(false);
  feed(o, frame(true, kClose, closePayload(1000), false));
  feed(o, frame(true, kClose, closePayload(1002), false));
  feed(o, frame(true, kText, "late", false));
  EXPECT_EQ(o.closeCode(), 1000);
  EXPECT_EQ(o.messages(), 1u);
  EXPECT_FALSE(o.invalid());
}

struct BadCase {
  const char* name;
  std::string bytes;
  bool from_client;
};

TEST(FrameObserver, ProtocolErrorsMakeItInvalidAndItStaysQuiet) {
  std::vector<BadCase> cases = {
      {"reserved opcode 3", frame(true, 0x3, "x", false), false},
      {"reserved opcode 0xB", frame(true, 0xB, "", true), true},
      {"reserved opcode 7", frame(true, 0x7, "", false), false},
      {"ping with 126 length", header(true, kPing, 126, false) + std::string(126, 'p'), false},
      {"close with 64-bit length", header(true, kClose, 70000, true), true},
      {"fragmented ping", frame(false, kPing, "", false), false},
      {"fragmented close", frame(false, kClose, closePayload(1000), true), true},
      {"close with 1-byte payload", frame(true, kClose, "x", false), false},
      {"RSV1 not negotiated", frame(true, kText, "x", false, kKey, 0x4), false},
      {"RSV2", frame(true, kText, "x", true, kKey, 0x2), true},
      {"RSV3", frame(true, kBinary, "x", false, kKey, 0x1), false},
      {"RSV on ping", frame(true, kPing, "", false, kKey, 0x4), false},
      {"unmasked client frame", frame(true, kText, "x", false), true},
      {"masked server frame", frame(true, kText, "x", true), false},
      {"continuation without a message", frame(true, kCont, "x", false), false},
      {"text inside a fragmented message",
       frame(false, kText, "a", false) + frame(true, kText, "b", false), false},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    FrameObserver o(c.from_client);
    feed(o, c.bytes);
    EXPECT_TRUE(o.invalid());
    EXPECT_FALSE(o.frameBoundary());
    Snapshot before = snap(o);
    // Valid frames afterwards change nothing: the observer has stopped.
    feed(o, frame(true, kText, "ok", c.from_client));
    feed(o, frame(true, kPing, "", c.from_client));
    feed(o, frame(true, kClose, closePayload(1000), c.from_client));
    EXPECT_EQ(snap(o), before);
  }
}

TEST(FrameObserver, Rsv1AllowedOnlyOnFirstDataFrameWhenNegotiated) {
  {
    FrameObserver o(true, FrameObserver::kRsv1);
    feed(o, frame(true, kText, "compressed", true, kKey, 0x4));
    feed(o, frame(false, kBinary, "c1", true, kKey, 0x4));
    feed(o, frame(true, kCont, "c2", true));
    EXPECT_EQ(o.messages(), 2u);
    EXPECT_FALSE(o.invalid());
  }
  {
    FrameObserver o(true, FrameObserver::kRsv1);
    feed(o, frame(false, kText, "c1", true, kKey, 0x4));
    feed(o, frame(true, kCont, "c2", true, kKey, 0x4));
    EXPECT_TRUE(o.invalid());
  }
  {
    FrameObserver o(true, FrameObserver::kRsv1);
    feed(o, frame(true, kPong, "", true, kKey, 0x4));
    EXPECT_TRUE(o.invalid());
  }
  {
    FrameObserver o(false, FrameObserver::kRsv1);
    feed(o, frame(true, kText, "x", false, kKey, 0x2));
    EXPECT_TRUE(o.invalid());
  }
}

TEST(FrameObserver, GarbageNeverCrashes) {
  // Pseudo-random bytes: whatever happens, no crash and a consistent state.
  std::uint32_t x = 12345;
  std::string junk;
  for (int i = 0; i < 1 << 16; ++i) {
    x = x * 1103515245 + 12345;
    junk.push_back(static_cast<char>(x >> 16));
  }
  for (bool from_client : {true, false}) {
    FrameObserver o(from_client, FrameObserver::kRsv1);
    for (std::size_t i = 0; i < junk.size(); i += 7) {
      o.feed(junk.data() + i, std::min<std::size_t>(7, junk.size() - i));
    }
    if (o.invalid()) {
      EXPECT_FALSE(o.frameBoundary());
    }
  }
}

// Headers read whole and headers read byte by byte must agree, on valid and
// invalid streams alike, whatever the chunking.
TEST(FrameObserver, AnyChunkingOfRandomStreamsGivesTheSameState) {
  std::uint32_t x = 987654321;
  auto next = [&x] { return x = x * 1103515245 + 12345, x >> 8; };
  for (int round = 0; round < 300; ++round) {
    bool from_client = round % 2 == 0;
    std::string stream;
    int frames = 1 + static_cast<int>(next() % 12);
    for (int f = 0; f < frames; ++f) {
      const std::uint8_t ops[] = {kText, kBinary, kCont, kPing, kPong, kClose, 0x3};
      std::uint8_t op = ops[next() % 7];
      std::size_t len = next() % 4 == 0 ? 126 + next() % 70000 : next() % 126;
      if (op == kClose || op == kPing || op == kPong) len %= 126;
      std::string payload(len, 'x');
      if (op == kClose && len >= 2) payload.replace(0, 2, closePayload(static_cast<std::uint16_t>(1000 + next() % 4000)));
      bool fin = op == kCont ? next() % 2 : next() % 4 != 0;
      bool masked = next() % 16 == 0 ? !from_client : from_client;  // now and then a wrong mask bit
      stream += frame(fin, op, payload, masked, next(), next() % 8 == 0 ? 4 : 0);
    }
    FrameObserver whole(from_client, FrameObserver::kRsv1), bytes(from_client, FrameObserver::kRsv1),
        chunks(from_client, FrameObserver::kRsv1);
    whole.feed(stream.data(), stream.size());
    for (char c : stream) bytes.feed(&c, 1);
    for (std::size_t i = 0; i < stream.size();) {
      std::size_t n = std::min<std::size_t>(1 + next() % 9, stream.size() - i);
      chunks.feed(stream.data() + i, n);
      i += n;
    }
    for (const FrameObserver* o : {&bytes, &chunks}) {
      ASSERT_EQ(o->invalid(), whole.invalid()) << "round " << round;
      ASSERT_EQ(o->messages(), whole.messages()) << "round " << round;
      ASSERT_EQ(o->pings(), whole.pings()) << "round " << round;
      ASSERT_EQ(o->pongs(), whole.pongs()) << "round " << round;
      ASSERT_EQ(o->closeSeen(), whole.closeSeen()) << "round " << round;
      ASSERT_EQ(o->closeCode(), whole.closeCode()) << "round " << round;
      ASSERT_EQ(o->frameBoundary(), whole.frameBoundary()) << "round " << round;
    }
  }
}

TEST(BuildCloseFrame, RoundTripsThroughTheObserver) {
  for (bool masked : {true, false}) {
    for (std::uint16_t code : {1000, 1001, 1011, 4000}) {
      char buf[kMaxCloseFrameBytes];
      std::size_t n = buildCloseFrame(code, "tether shutting down", masked, 0x0BADF00D, buf);
      EXPECT_EQ(n, 2 + (masked ? 4 : 0) + 2 + 20u);
      FrameObserver o(masked);
      o.feed(buf, n);
      EXPECT_FALSE(o.invalid());
      EXPECT_TRUE(o.frameBoundary());
      EXPECT_TRUE(o.closeSeen());
      EXPECT_EQ(o.closeCode(), code);
    }
  }
}

TEST(BuildCloseFrame, MatchesAHandBuiltFrame) {
  char buf[kMaxCloseFrameBytes];
  std::size_t n = buildCloseFrame(1001, "bye", true, kKey, buf);
  EXPECT_EQ(std::string(buf, n), frame(true, kClose, closePayload(1001, "bye"), true, kKey));
  n = buildCloseFrame(1000, "", false, 0, buf);
  EXPECT_EQ(std::string(buf, n), std::string("\x88\x02\x03\xE8", 4));
}

TEST(BuildCloseFrame, CodeZeroWritesAnEmptyClose) {
  char buf[kMaxCloseFrameBytes];
  std::size_t n = buildCloseFrame(0, "ignored", false, 0, buf);
  EXPECT_EQ(std::string(buf, n), std::string("\x88\x00", 2));
  n = buildCloseFrame(0, "ignored", true, kKey, buf);
  EXPECT_EQ(n, 6u);
  FrameObserver o(true);
  o.feed(buf, n);
  EXPECT_TRUE(o.closeSeen());
  EXPECT_EQ(o.closeCode(), 0);
}

TEST(BuildCloseFrame, LongReasonIsCutTo123BytesOnAUtf8Boundary) {
  char buf[kMaxCloseFrameBytes];
  std::size_t n = buildCloseFrame(1000, std::string(500, 'a'), true, kKey, buf);
  EXPECT_EQ(n, kMaxCloseFrameBytes);
  EXPECT_EQ(static_cast<unsigned char>(buf[1]), 0x80u | 125u);
  FrameObserver o(true);
  o.feed(buf, n);
  EXPECT_EQ(o.closeCode(), 1000);
  EXPECT_FALSE(o.invalid());

  // 122 ASCII bytes then a 3-byte character: it does not fit whole.
  std::string reason = std::string(122, 'a') + "\xE2\x82\xAC" + "tail";
  n = buildCloseFrame(1000, reason, false, 0, buf);
  EXPECT_EQ(n, 2 + 2 + 122u);
  // 120 ASCII bytes and the 3-byte character: exactly 123.
  reason = std::string(120, 'a') + "\xE2\x82\xAC";
  n = buildCloseFrame(1000, reason, false, 0, buf);
  EXPECT_EQ(n, 2 + 2 + 123u);
  EXPECT_EQ(std::string(buf + 4, 123), reason);
}

// feedToBoundary takes the bytes that end the frame in progress and none of
// the next, from every position of a stream of every kind of frame, and
// leaves the observer as feeding those bytes would.
TEST(FrameObserver, FeedToBoundaryStopsWhereTheFrameInProgressEnds) {
  for (bool masked : {true, false}) {
    std::string stream;
    std::vector<std::size_t> ends;  // where each frame ends
    auto add = [&](const std::string& f) {
      stream += f;
      ends.push_back(stream.size());
    };
    add(frame(true, kText, "hello", masked));
    add(frame(false, kBinary, std::string(300, 'b'), masked));
    add(frame(true, kPing, "p", masked));
    add(frame(true, kCont, std::string(70000, 'c'), masked));
    add(frame(true, kPong, "", masked));
    add(frame(true, kBinary, "", masked));
    add(frame(true, kClose, closePayload(1001, "bye"), masked));
    add(frame(true, kText, "after", masked));
    for (std::size_t at = 0; at < stream.size(); at += (at < 400 || at > stream.size() - 400) ? 1 : 997) {
      SCOPED_TRACE(testing::Message() << "masked=" << masked << " at=" << at);
      FrameObserver a(masked), b(masked);
      a.feed(stream.data(), at);
      b.feed(stream.data(), at);
      std::size_t next = *std::upper_bound(ends.begin(), ends.end(), at);
      bool at_boundary = std::find(ends.begin(), ends.end(), at) != ends.end() || at == 0;
      std::size_t took = a.feedToBoundary(stream.data() + at, stream.size() - at);
      ASSERT_EQ(took, at_boundary ? 0 : next - at);
      EXPECT_TRUE(a.frameBoundary());
      b.feed(stream.data() + at, took);
      EXPECT_EQ(snap(a), snap(b));
      // In pieces: never past the frame, the same end.
      FrameObserver c(masked);
      c.feed(stream.data(), at);
      std::size_t pos = at;
      while (!c.frameBoundary() && pos < stream.size()) pos += c.feedToBoundary(stream.data() + pos, std::min<std::size_t>(7, stream.size() - pos));
      EXPECT_EQ(pos, at + took);
    }
  }
  FrameObserver bad(true);
  feed(bad, std::string("\x83\x80", 2));  // opcode 3: invalid
  EXPECT_EQ(bad.feedToBoundary("\x81\x80" "abcd", 6), 0u);
}

}  // namespace
}  // namespace tether::forward
