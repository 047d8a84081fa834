// The HTTP/1.x decoder: tether's one llhttp wrapper, for requests (the
// downstream side, the admin listener) and responses (upstream connections,
// health checks). Bytes in, events out; no sockets, no clock, no policy.
//
// The decoder enforces RFC 9112's message syntax and framing, and decides
// framing once: a message it accepts has exactly one reading. Everything it
// refuses is an error with the status tether answers (400, 405, 413, 431,
// 505 for requests; 502 for responses), after which it is dead.
//
//   execute(bytes) ──▶ kHead ──▶ (body bytes to the sink) ──▶ kComplete ──▶ nextMessage()
//                 └─▶ kNeedMore (all consumed)     └─▶ kError (error())
//
// execute() stops after each head (kHead), so that the caller can act on it
// before any body byte is read, and at each message's end (kComplete), so
// that pipelined bytes stay unread. `consumed` says how far it got; the
// caller passes the rest again. A head and the trailers are valid until the
// next message begins (the execute() after nextMessage(), or, for an
// informational response, the execute() after its kHead).
//
// Decoded body bytes (chunk framing removed) go to the body sink,
// synchronously from execute(); the pointers are into the caller's bytes and
// valid only during the call. A Content-Length or close-delimited body is
// exactly the consumed bytes after the head, so a caller may forward those
// bytes as they are (no copy); a chunked body must be re-encoded.
//
// Loop-affine, no allocation per message once its storage has grown; the
// storage is kept across messages (shrink() gives it back).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/http/head.h"

namespace tether::http {

class H1Decoder {
 public:
  enum class Type : std::uint8_t { kRequest, kResponse };

  struct Limits {
    std::uint64_t max_head_bytes = 64 * 1024;     // request line/status line and fields
    std::uint64_t max_trailer_bytes = 64 * 1024;  // the trailer section, apart from the head
    std::uint64_t max_body_bytes = 0;             // requests only; 0 = unlimited (413 above)
    std::uint32_t max_chunk_line = 4096;          // chunk size and extensions
  };

  enum class Event : std::uint8_t {
    kNeedMore,  // every byte passed was consumed
    kHead,      // request() / response() holds a complete head
    kComplete,  // the message ended; trailers() holds its trailer fields
    kError,     // errorStatus() / errorReason(); nothing more is parsed
  };

  using BodySink = void (*)(void* ctx, const char* data, std::size_t len);

  H1Decoder(Type type, const Limits& limits);
  ~H1Decoder();
  H1Decoder(const H1Decoder&) = delete;
  H1Decoder& operator=(const H1Decoder&) = delete;

  void setLimits(const Limits& limits) { limits_ = limits; }
  void setBodySink(BodySink sink, void* ctx) {
    sink_ = sink;
    sink_ctx_ = ctx;
  }

  // Responses: what the request was. A HEAD answer has no body whatever its
  // fields say; a 101 is accepted only when an upgrade was asked for. Set
  // before each response's first byte.
  void expectResponseTo(std::uint8_t method, bool upgrade_requested) {
    request_method_ = method;
    upgrade_requested_ = upgrade_requested;
  }

  Event execute(const char* data, std::size_t len, std::size_t* consumed);
  // The peer closed its side. kComplete for a close-delimited body that ends
  // here; kNeedMore between messages (a clean close); kError mid-message.
  Event finish();
  // After kComplete: ready for the next message on the same connection.
  void nextMessage();

  RequestHead& request() { return request_; }
  ResponseHead& response() { return response_; }
  HeaderList& trailers() { return trailers_; }

  // Head complete and the message not yet: body bytes are being read.
  bool inBody() const { return state_ == State::kBody; }
  // Some byte of a message has been consumed and the message is not complete.
  bool midMessage() const;
  // Decoded body bytes of the current message so far.
  std::uint64_t bodyBytes() const { return body_bytes_; }
  // The message's body is complete (for a request: the upgrade request ended
  // too; what follows belongs to the tunnel).
  bool complete() const { return state_ == State::kComplete; }

  int errorStatus() const { return error_status_; }
  std::string_view errorReason() const { return error_reason_; }
  // The llhttp error name, for logs ("HPE_INVALID_HEADER_TOKEN").
  const char* errorName() const;

  // Gives the heads' storage back (pooled decoders after large heads).
  void shrink();
  // shrink() when the heads hold more than `keep` bytes: a pooled decoder
  // that is reset() before its next use.
  void trimStorage(std::size_t keep = 4096);
  // As new: the start of a connection (a pooled decoder lent again, or the
  // response decoder for the next exchange). Storage above `keep` bytes is
  // given back.
  void reset(std::size_t keep = 4096);

 private:
  enum class State : std::uint8_t { kIdle, kHead, kBody, kComplete, kError };
  struct Parser;  // llhttp_t, kept out of this header
  friend struct Callbacks;

  Event fail(int status, const char* reason);
  std::uint64_t offsetOf(const char* p) const { return base_offset_ + static_cast<std::uint64_t>(p - data_); }
  bool foldAt(const char* at) const;
  HeaderList& heads() { return type_ == Type::kRequest ? request_.headers : response_.headers; }
  void mirrorTo(const char* upto);
  const char* sealHead(const char* p);  // why the head is refused, or nullptr
  int onHeadersComplete();
  int requestHeadersComplete();
  int responseHeadersComplete();

  Type type_;
  Limits limits_;
  std::unique_ptr<Parser> parser_;
  State state_ = State::kIdle;
  BodySink sink_ = nullptr;
  void* sink_ctx_ = nullptr;
  std::uint8_t request_method_ = 1;  // GET
  bool upgrade_requested_ = false;

  RequestHead request_;
  ResponseHead response_;
  HeaderList trailers_;
  char version_[16];     // the version text as it arrived, for 400 against 505
  std::uint8_t version_len_ = 0;

  // Where execute() stands: data_ is the current input, base_offset_ the
  // stream offset of data_[0] (bytes consumed by earlier calls).
  const char* data_ = nullptr;
  std::uint64_t base_offset_ = 0;
  std::uint64_t message_start_ = 0;  // stream offset where the current message began
  std::uint64_t line_start_ = 0;     // stream offset where the current chunk line began
  std::uint64_t line_mark_ = 0;      // request line: where the last method/target piece ended
  std::uint64_t size_end_ = 0;       // chunk line: where its first extension began, if any
  std::uint64_t mirror_upto_ = 0;    // the head's bytes before this stream offset are in heads()
  const char* last_end_ = nullptr;   // end of the last value piece of a head in the current input
  const char* cb_at_ = nullptr;      // the piece the last data callback was handed
  std::uint64_t body_bytes_ = 0;
  std::uint64_t trailer_start_ = 0;  // stream offset where the trailer section began (after the last chunk)
  char prev_last_ = '\n';  // last non-blank byte of the previous input (obs-fold check)
  // A trailer field by pieces (a head's fields are noted in its copy).
  bool in_name_ = false;   // a field name is being received
  bool field_open_ = false;  // a field has begun and not been closed
  bool name_done_ = false;   // the open field's name is complete (a value piece came)
  std::uint64_t name_end_ = 0;  // stream offset where the last name piece ended
  bool in_trailers_ = false;
  bool last_chunk_ = false;
  bool head_pending_ = false;      // a head completed inside the current llhttp call
  bool complete_pending_ = false;  // the message completed right behind its head
  int error_status_ = 0;
  const char* error_reason_ = "";
  int llhttp_error_ = 0;
};

}  // namespace tether::http
