// WebSocket (RFC 6455) frame observation for tunnels, and close-frame building.
//
// After a 101 the tunnel is a byte pipe: it forwards every byte unchanged and
// never waits for a whole frame. A FrameObserver watches the same bytes go
// past, in whatever chunks the reads produced (split at any byte), and follows
// the frame headers only: payloads are skipped, never copied, never unmasked
// (except the two status-code bytes of a close frame). One observer per tunnel
// direction; it is pure (no loop, no allocation) and lives inside the tunnel.
//
// What it reports (read after each feed()):
//   - messages():  data messages completed (a text/binary/continuation frame
//                  with FIN ends a message; a fragmented message counts once),
//   - pings(), pongs(): control frames of those kinds,
//   - closeSeen() / closeCode(): the first close frame and its status code,
//   - invalid():   a protocol error was seen (see below); from then on the
//                  observer ignores its input and reports nothing new,
//   - frameBoundary(): between two frames, where tether may inject its own
//                  frame (e.g. a close 1001 on shutdown) without corrupting
//                  one in progress. Between the fragments of a message is a
//                  boundary too: RFC 6455 5.4 allows control frames there.
//
// Counters are 32-bit and wrap: read them as deltas with unsigned subtraction
// (`uint32_t n = obs.messages() - last;`), which is exact as long as the
// tunnel looks at least once per 2^32 messages, i.e. after every feed().
//
// Protocol errors that make the observer invalid:
//   - an opcode other than 0, 1, 2, 8, 9, 10;
//   - an RSV bit not allowed by the constructor (RSV bits are allowed only on
//     the first frame of a text/binary message, where permessage-deflate puts
//     RSV1; never on continuation or control frames);
//   - a control frame with FIN clear, with more than 125 bytes of payload, or
//     a close frame with a 1-byte payload (a status code takes 2);
//   - a 64-bit payload length with its most significant bit set;
//   - a continuation frame outside a fragmented message, or a new text/binary
//     frame inside one;
//   - masking the wrong way round: we are strict and follow RFC 6455 5.1, a
//     client (from_client) frame must be masked and a server frame must not
//     be. The receiving endpoint fails such a connection anyway.
// Invalid never closes anything: the tunnel stays a byte pipe and the peers
// settle their own protocol errors. Not checked: minimal length encoding,
// UTF-8 of text, close-code ranges (the code is reported as sent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tether::forward {

class FrameObserver {
 public:
  // RSV bits as they sit in (first byte >> 4): RSV1 = 4, RSV2 = 2, RSV3 = 1.
  // Pass kRsv1 when the 101 negotiated permessage-deflate.
  static constexpr std::uint8_t kRsv1 = 0x4;
  static constexpr std::uint8_t kRsv2 = 0x2;
  static constexpr std::uint8_t kRsv3 = 0x1;

  // from_client: these bytes go client -> backend, so frames must be masked.
  // allowed_rsv: RSV bits (kRsv1 | ...) tolerated on text/binary frames.
  explicit FrameObserver(bool from_client, std::uint8_t allowed_rsv = 0);

  // Observe the next len bytes of the stream. Any split of the stream into
  // feed() calls gives the same results. Never fails, never reads past len.
  void feed(const char* data, std::size_t len);

  std::uint32_t messages() const { return messages_; }
  std::uint32_t pings() const { return pings_; }
  std::uint32_t pongs() const { return pongs_; }
  // True once a whole close frame went past. Only the first one is recorded.
  bool closeSeen() const { return close_seen_; }
  // The status code of that close frame; 0 when it carried no payload.
  // Meaningless while !closeSeen().
  std::uint16_t closeCode() const { return close_seen_ ? close_ : 0; }
  bool invalid() const { return invalid_; }
  // Between frames (also before the first one). False once invalid: the
  // position in the stream is then unknown.
  bool frameBoundary() const { return !invalid_ && phase_ == kFirstByte; }
  // Feeds the bytes that end the frame in progress and no more: how many it
  // took (0 at a boundary, and once invalid). frameBoundary() then says
  // whether the frame ended within len.
  std::size_t feedToBoundary(const char* data, std::size_t len);

 private:
  enum Phase : std::uint8_t { kFirstByte, kSecondByte, kHeaderRest, kPayload };
  enum Kind : std::uint8_t { kData, kPing, kPong, kClose };

  void endFrame();
  void fail() { invalid_ = 1; }
  bool opcodeByte(std::uint8_t b);
  bool lengthByte(std::uint8_t b);

  // Payload bytes left in the current frame; while reading an extended
  // length, the length accumulated so far. Plain fields, not bit-fields: they
  // are read and written for every frame, and bytes cost less to touch.
  std::uint64_t remaining_ = 0;
  std::uint32_t messages_ = 0;
  std::uint32_t pings_ = 0;
  std::uint32_t pongs_ = 0;
  // For the first close frame: its first two mask bytes while reading the
  // header, then the status code as its bytes arrive; afterwards the code.
  std::uint16_t close_ = 0;
  std::uint8_t kind_ = kData;  // Kind of the current frame
  std::uint8_t phase_ = kFirstByte;
  // kHeaderRest: header bytes still to read (extended length, then mask key).
  // kPayload of a close frame: status-code bytes read so far (0..2).
  std::uint8_t count_ = 0;
  std::uint8_t allowed_rsv_;
  bool in_message_ = false;  // a fragmented data message is open
  bool fin_ = false;
  bool masked_ = false;
  bool invalid_ = false;
  bool close_seen_ = false;
  bool from_client_;
};
// Lives in every tunnel direction: keep it small.
static_assert(sizeof(FrameObserver) <= 32, "FrameObserver grew past 32 bytes");

// Largest frame buildCloseFrame() writes: 2 header bytes, 4 mask bytes,
// 2 status bytes and 123 reason bytes (control payloads are <= 125 bytes).
inline constexpr std::size_t kMaxCloseFrameBytes = 2 + 4 + 2 + 123;
inline constexpr std::size_t kMaxCloseReasonBytes = 123;

// Writes a close frame (FIN, opcode 8) carrying `code` and `reason` into out
// (at least kMaxCloseFrameBytes) and returns its size. code == 0 writes a
// close frame with an empty payload (no status, no reason). A reason longer
// than 123 bytes is cut at the last whole UTF-8 sequence that fits. masked:
// a client-side frame (tether speaking to a backend); the mask key bytes are
// mask_key's bytes, most significant first. A server-side frame (tether
// speaking to a client) passes masked = false and mask_key is ignored.
std::size_t buildCloseFrame(std::uint16_t code, std::string_view reason, bool masked,
                            std::uint32_t mask_key, char* out);

}  // namespace tether::forward
