// Response compression as a filter on heads and body bytes: which coding a
// request accepts, whether a response may be compressed, what its head says
// then, and the streaming encoders (zstd, brotli, gzip). Pure: no sockets, no
// clock; the connection feeds an Encoder the body as it arrives and writes
// what comes out.
//
// The decision has two halves, because a response's eligibility does not
// depend on the client (so `Vary: Accept-Encoding` is set on every eligible
// response, compressed or not), while the coding does:
//   - requestCoding(): from the request alone, the coding to use if the
//     response turns out eligible (kIdentity: the client accepts none, or the
//     request asks for a range);
//   - responseEligible(): from the response head, the request's method and
//     the configuration.
// compressFields() then edits the response head for the chosen coding.
//
// Encoders bound their memory by the window each coding is given (stated in
// kWindowLog and the README): a known Content-Length smaller than the window
// gets a smaller one.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "proxy/http/head.h"

namespace tether::forward {

using Coding = conf::Coding;

// "zstd", "br", "gzip"; "identity".
std::string_view codingToken(Coding c);

// The coding to use among `offered` (in server preference order) for an
// Accept-Encoding field value (RFC 9110 §12.5.3): the highest q-value the
// client gives a coding, "*" standing for those it does not name, x-gzip for
// gzip; among equal q-values the earlier in `offered`. kIdentity when the
// client accepts none of them (q=0, not named, or an empty field). An element
// that is not a token with a valid q-value is ignored.
Coding negotiate(std::string_view accept_encoding, std::span<const Coding> offered);

// The request's part: the coding a compressible response would get (every
// Accept-Encoding field of the request, as one list), or kIdentity when the
// client accepts none or the request carries Range (such a request is
// forwarded as it is and its answer is not compressed).
Coding requestCoding(const http::RequestHead& r, const conf::Compression& c);

// Does `media_type` (a Content-Type value, parameters allowed) match one of
// `patterns`: "type/subtype", "type/*", or "type/*+suffix"? Case-insensitive.
bool contentTypeMatches(std::string_view media_type, std::span<const std::string> patterns);

// The response's part: may this response's body be compressed at all? Not a
// 1xx, 101, 204, 206 or 304; no Content-Encoding other than identity; no
// Cache-Control: no-transform; a Content-Type among c.content_types and not
// text/event-stream; not a Content-Length below c.min_length. A HEAD answer
// is judged as the GET answer would be (its head says what a GET gets).
bool responseEligible(const http::ResponseHead& r, const conf::Compression& c);

// The head of an eligible response as the client sees it. Always: Vary
// names Accept-Encoding (added, or the field replaced by one that also names
// it; "Vary: *" is kept). With coding != kIdentity: Content-Encoding added,
// Content-Length dropped (the body is chunked, or ends with the connection
// for an HTTP/1.0 client), a strong ETag made weak. `scratch` holds built
// values until `extra` is written; it is cleared first.
void compressFields(http::ResponseHead& r, Coding coding, http::ExtraFields& extra,
                    std::string& scratch);

// A streaming encoder. Output is appended to *out. write() may hold input
// back to compress better; flush() makes everything written so far
// decodable by the client (called when the backend pauses, so a slowly
// produced response is not held back); finish() ends the stream. After an
// error (false) the encoder is unusable and the response must be ended by
// closing the connection (a truncated compressed body never looks whole).
class Encoder {
 public:
  virtual ~Encoder() = default;
  virtual bool write(std::string_view in, std::string* out) = 0;
  virtual bool flush(std::string* out) = 0;
  virtual bool finish(std::string* out) = 0;
};

// A response body being compressed for the client: its encoder and what it
// produced that is not yet written. For an HTTP/1.1 client the output goes
// out as chunks (their size line in `size_line`, the last chunk and trailers
// in `tail`); for an HTTP/1.0 client as it is, the connection closing after
// it. A HEAD answer has no encoder (its head only says what a GET gets).
struct CompressedBody {
  std::unique_ptr<Encoder> encoder;
  Coding coding = Coding::kIdentity;
  bool chunked = true;
  bool finished = false;
  std::string out;        // encoder output not yet queued
  std::string tail;       // "0\r\n", trailers, "\r\n" once finished (chunked)
  char size_line[20];     // "<hex>\r\n" of the chunk being written
  bool writing = false;   // out, size_line and tail are referenced by a write
  std::uint64_t in_bytes = 0;  // body bytes fed since the last flush (for the metrics)
};

// Windows: log2 of the bytes of history each coding keeps (and so, with its
// hash tables, the memory of one compressing response).
inline constexpr int kWindowLogZstd = 18;    // 256 KiB
inline constexpr int kWindowLogBrotli = 18;  // 256 KiB
inline constexpr int kWindowLogGzip = 15;    // 32 KiB, deflate's largest

// An encoder for `coding` at `level` (the coding's own scale; checked by the
// configuration loader), with a window no larger than needed for a body of
// `length_hint` bytes (0: unknown). nullptr for kIdentity or when the
// library cannot allocate.
std::unique_ptr<Encoder> makeEncoder(Coding coding, int level, std::uint64_t length_hint);

}  // namespace tether::forward
