#include "proxy/forward/websocket_frame.h"

#include <algorithm>
#include <cstring>

namespace tether::forward {

namespace {

constexpr std::uint8_t kOpContinuation = 0x0;
constexpr std::uint8_t kOpText = 0x1;
constexpr std::uint8_t kOpBinary = 0x2;
constexpr std::uint8_t kOpClose = 0x8;
constexpr std::uint8_t kOpPing = 0x9;
constexpr std::uint8_t kOpPong = 0xA;

constexpr std::uint64_t kMaxControlPayload = 125;

}  // namespace

FrameObserver::FrameObserver(bool from_client, std::uint8_t allowed_rsv)
    : allowed_rsv_(allowed_rsv & 0x7), from_client_(from_client) {}

// The first header byte: FIN, RSV and opcode. False (and invalid) when the
// frame cannot follow what came before.
bool FrameObserver::opcodeByte(std::uint8_t b) {
  std::uint8_t fin = b >> 7;
  std::uint8_t rsv = (b >> 4) & 0x7;
  std::uint8_t op = b & 0xF;
  switch (op) {
    case kOpContinuation:
      if (!in_message_ || rsv != 0) return fail(), false;
      kind_ = kData;
      break;
    case kOpText:
    case kOpBinary:
      if (in_message_ || (rsv & ~allowed_rsv_) != 0) return fail(), false;
      kind_ = kData;
      break;
    case kOpClose:
    case kOpPing:
    case kOpPong:
      if (!fin || rsv != 0) return fail(), false;
      kind_ = op == kOpClose ? kClose : op == kOpPing ? kPing : kPong;
      break;
    default:
      return fail(), false;
  }
  if (kind_ == kData) in_message_ = !fin;
  fin_ = fin;
  return true;
}

// The second header byte: MASK and the 7-bit length. Sets count_ to the
// header bytes that follow (extended length, then mask key).
bool FrameObserver::lengthByte(std::uint8_t b) {
  bool masked = (b & 0x80) != 0;
  std::uint8_t len7 = b & 0x7F;
  if (masked != static_cast<bool>(from_client_)) return fail(), false;
  if (kind_ != kData && (len7 > kMaxControlPayload || (kind_ == kClose && len7 == 1))) {
    return fail(), false;
  }
  masked_ = masked;
  std::uint8_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
  remaining_ = ext ? 0 : len7;
  // An unmasked close frame XORs its code with zeros.
  if (kind_ == kClose && !close_seen_) close_ = 0;
  count_ = ext + (masked ? 4 : 0);
  return true;
}

std::size_t FrameObserver::feedToBoundary(const char* data, std::size_t len) {
  std::size_t took = 0;
  while (took < len && !invalid_ && phase_ != kFirstByte) {
    // Payload the observer skips goes in one step; header bytes and a close
    // frame's status code one at a time, so that nothing past the frame is fed.
    std::size_t n = 1;
    if (phase_ == kPayload && !(kind_ == kClose && !close_seen_ && count_ < 2) && remaining_ > 1) {
      n = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, len - took));
    }
    feed(data + took, n);
    took += n;
  }
  return took;
}

void FrameObserver::feed(const char* data, std::size_t len) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(data);
  const std::uint8_t* const end = p + len;
  while (p < end && !invalid_) {
    switch (phase_) {
      case kPayload: {
        // Only the status code of the first close frame is looked at; all
        // other payload bytes are skipped in one step.
        if (kind_ == kClose && !close_seen_ && count_ < 2 && remaining_ > 0) {
          std::uint8_t b = *p++;
          remaining_ = remaining_ - 1;
          if (count_ == 0) {
            close_ = static_cast<std::uint16_t>(((b ^ (close_ >> 8)) << 8) | (close_ & 0xFF));
          } else {
            close_ = static_cast<std::uint16_t>((close_ & 0xFF00) | (b ^ (close_ & 0xFF)));
          }
          count_ = count_ + 1;
        } else {
          std::uint64_t n =
              std::min<std::uint64_t>(remaining_, static_cast<std::uint64_t>(end - p));
          p += n;
          remaining_ = remaining_ - n;
        }
        if (remaining_ == 0) endFrame();
        break;
      }
      case kFirstByte: {
        // The usual case: the whole header of a data or ping/pong frame is in
        // view; read it at once. Close frames and split headers go bytewise.
        if (end - p >= 2 && (p[0] & 0xF) != kOpClose) {
          std::uint8_t len7 = p[1] & 0x7F;
          unsigned ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
          unsigned header = 2 + ext + ((p[1] & 0x80) ? 4 : 0);
          if (static_cast<std::size_t>(end - p) >= header) {
            if (!opcodeByte(p[0]) || !lengthByte(p[1])) return;
            if (ext == 8 && (p[2] & 0x80)) return fail();  // RFC 6455 5.2: top bit clear
            std::uint64_t n = ext ? 0 : len7;
            for (unsigned i = 0; i < ext; ++i) n = (n << 8) | p[2 + i];
            remaining_ = n;
            count_ = 0;
            p += header;
            phase_ = kPayload;
            if (remaining_ == 0) endFrame();
            break;
          }
        }
        if (!opcodeByte(*p++)) return;
        phase_ = kSecondByte;
        break;
      }
      case kSecondByte: {
        if (!lengthByte(*p++)) return;
        if (count_ > 0) {
          phase_ = kHeaderRest;
        } else {
          phase_ = kPayload;
          if (remaining_ == 0) endFrame();
        }
        break;
      }
      case kHeaderRest: {
        std::uint8_t b = *p++;
        unsigned mask_bytes = masked_ ? 4 : 0;
        if (count_ > mask_bytes) {
          // Extended length, network order. First byte of the 64-bit form:
          // its top bit must be clear (RFC 6455 5.2).
          if (count_ == 8 + mask_bytes && (b & 0x80)) return fail();
          remaining_ = (static_cast<std::uint64_t>(remaining_) << 8) | b;
        } else if (kind_ == kClose && !close_seen_) {
          // Mask byte (4 - count_); only bytes 0 and 1 touch the status code.
          if (count_ == 4) close_ = static_cast<std::uint16_t>((close_ & 0x00FF) | (b << 8));
          if (count_ == 3) close_ = static_cast<std::uint16_t>((close_ & 0xFF00) | b);
        }
        count_ = count_ - 1;
        if (count_ == 0) {
          phase_ = kPayload;
          if (remaining_ == 0) endFrame();
        }
        break;
      }
    }
  }
}

void FrameObserver::endFrame() {
  switch (kind_) {
    case kData:
      if (fin_) ++messages_;
      break;
    case kPing:
      ++pings_;
      break;
    case kPong:
      ++pongs_;
      break;
    case kClose:
      if (!close_seen_) {
        if (count_ < 2) close_ = 0;  // no status code in the payload
        close_seen_ = true;
      }
      break;
  }
  count_ = 0;
  phase_ = kFirstByte;
}

namespace {

// Length of the longest prefix of s, at most max bytes, that does not end in
// the middle of a UTF-8 sequence. Invalid UTF-8 is cut bytewise.
std::size_t utf8Prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s.size();
  std::size_t n = max;
  // Back up over continuation bytes (10xxxxxx) to the lead byte at s[n].
  std::size_t back = 0;
  while (n > 0 && back < 3 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
    ++back;
  }
  if ((static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) return max;  // not UTF-8
  return n;
}

}  // namespace

std::size_t buildCloseFrame(std::uint16_t code, std::string_view reason, bool masked,
                            std::uint32_t mask_key, char* out) {
  auto* o = reinterpret_cast<std::uint8_t*>(out);
  std::uint8_t payload[2 + kMaxCloseReasonBytes];
  std::size_t plen = 0;
  if (code != 0) {
    payload[0] = static_cast<std::uint8_t>(code >> 8);
    payload[1] = static_cast<std::uint8_t>(code & 0xFF);
    std::size_t rlen = utf8Prefix(reason, kMaxCloseReasonBytes);
    std::memcpy(payload + 2, reason.data(), rlen);
    plen = 2 + rlen;
  }
  std::size_t n = 0;
  o[n++] = 0x80 | kOpClose;
  o[n++] = static_cast<std::uint8_t>((masked ? 0x80 : 0) | plen);
  std::uint8_t key[4] = {
      static_cast<std::uint8_t>(mask_key >> 24), static_cast<std::uint8_t>(mask_key >> 16),
      static_cast<std::uint8_t>(mask_key >> 8), static_cast<std::uint8_t>(mask_key)};
  if (masked) {
    std::memcpy(o + n, key, 4);
    n += 4;
  }
  for (std::size_t i = 0; i < plen; ++i) {
    o[n++] = masked ? static_cast<std::uint8_t>(payload[i] ^ key[i & 3]) : payload[i];
  }
  return n;
}

}  // namespace tether::forward
