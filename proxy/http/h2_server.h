// The HTTP/2 server codec: one downstream HTTP/2 connection (RFC 9113) on
// nghttp2's session API, sans-I/O. Bytes in (feed), bytes out (output and
// wrote), events out to H2ServerCodec::Callbacks; no sockets, no clock, no
// policy. Each request arrives as the same neutral RequestHead the HTTP/1
// decoder fills (head.h), so the exchange does not know the protocol.
//
// Lifetime and ownership. The codec is owned by its downstream connection and
// lives on that connection's loop; it is not thread-safe. The Callbacks object
// must outlive it. Callbacks fire synchronously, never from a submit call:
// the request events from feed(); onStreamReset from feed() and output() (a
// stream nghttp2 resets for the client's fault closes when its RST_STREAM is
// staged); onStreamWritable from feed() (a WINDOW_UPDATE) and wrote() (a
// stream's queued body went out). A callback may call the submit functions,
// consumed() and released(); it must not call feed() or output() and must not
// destroy the codec (the connection defers its own close to after the call
// returns, checking wantsClose()).
// Pointers handed to callbacks (the head, body bytes, trailers) are valid only
// during the call: body bytes point into the bytes passed to feed().
//
// Flow control is backpressure both ways:
//  - Request bodies: no automatic WINDOW_UPDATE. A stream's (and the
//    connection's) window opens only when the caller says consumed(stream, n),
//    i.e. when the backend has taken those bytes. At most initial_window bytes
//    of one stream's body are ever unconsumed.
//  - Response bodies: sendBody() takes at most writable(stream) bytes (the
//    client's window, less what is queued, capped by per_stream_buffer); the
//    caller keeps the rest in its backend's socket and waits for
//    onStreamWritable. Nothing is held whole.
//
// Bounds, and what happens at them:
//  - output: output() stages (outputInFlight() holds it while a write
//    references the staged bytes); it stages at most output_bound bytes (plus one frame);
//    outputOverBound() is true while the staged bytes reach the bound: the
//    connection stops reading until wrote() brings them down. nghttp2's own
//    queue of PING and SETTINGS acknowledgements is capped (max_outbound_ack,
//    1000): beyond it the connection ends (kFlood).
//  - request head: header list size (name + value + 32 per field, RFC 9113
//    §6.5.2) above max_header_list_bytes is answered 431 on that stream and
//    stored no further (HPACK is still decoded, so the connection survives);
//    CONTINUATION frames are capped by nghttp2 (8 per block: kFlood).
//  - streams: at most max_concurrent_streams at once, a slot held from HEADERS
//    until released(stream) (not merely until the stream closes: a client that
//    resets streams cannot start new upstream work faster than the old work is
//    released); above, REFUSED_STREAM (counted as refused, as are the
//    streams nghttp2 refuses before the client acknowledged the SETTINGS). A
//    client that exceeds the acknowledged limit with streams still open
//    breaks what it agreed to: nghttp2 1.52 ends the connection (GOAWAY
//    PROTOCOL_ERROR), where RFC 9113 §5.1.2 asks for a stream error; no
//    option changes that. After max_streams_per_connection streams, a
//    graceful GOAWAY.
//  - Rapid Reset (CVE-2023-44487): a stream the client resets before its
//    response ended is a "premature reset". Past rapid_reset_min_streams
//    streams, when premature resets are at least half of all streams, or
//    beyond max_premature_resets in all, GOAWAY ENHANCE_YOUR_CALM.
//  - glitches (MadeYouReset, CVE-2025-8671, and floods): each frame that is
//    invalid, makes tether reset a stream, or carries nothing (empty DATA
//    without END_STREAM, a WINDOW_UPDATE or RST_STREAM for a closed stream,
//    any PRIORITY, a
//    PING, a SETTINGS beyond the first) counts one; a stream that completes
//    gives one back. Above glitch_budget, GOAWAY ENHANCE_YOUR_CALM.
//
// Graceful shutdown is two-step (RFC 9113 §6.8): shutdownNotice() sends a
// GOAWAY with the largest stream id; goAway() then sends the final GOAWAY
// with the last stream id processed. goingAway() is true from the first;
// wantsClose() says when the connection should close (a GOAWAY out and no
// stream left, or a connection error) once output() is empty.
//
// How the downstream connection drives it (DESIGN.md's DownstreamConn):
//   read:  feed(bytes); on error or wantsClose() flush output() and close;
//          stop reading while outputOverBound().
//   write: when output() is not empty and no write is in flight, write it and
//          call wrote(n) on completion; then check wantsClose().
//   onRequestHead: create one Exchange per stream with the head; its response
//          goes through submitResponse/sendBody (end = true ends it)/
//          submitTrailers or resetStream; its request body arrives through onRequestBody and is
//          acknowledged with consumed() as the backend takes it; when the
//          exchange is destroyed (its upstream released), released(stream).
//   timer: downstream_idle while streamCount() == 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/http/head.h"

struct nghttp2_session;

namespace tether::http {

class H2ServerCodec {
 public:
  struct Settings {
    std::uint32_t max_concurrent_streams = 100;
    std::uint32_t initial_window = 64 * 1024;            // per stream, SETTINGS_INITIAL_WINDOW_SIZE
    std::uint32_t connection_window = 1024 * 1024;       // the connection's receive window
    std::uint32_t max_frame_size = 16384;                // SETTINGS_MAX_FRAME_SIZE
    std::uint32_t max_header_list_bytes = 64 * 1024;     // limits.max_request_header_bytes
    std::uint64_t max_request_body_bytes = 0;            // a Content-Length above: 413; 0 = unlimited
    bool enable_connect_protocol = false;                // http2.websockets (RFC 8441)
    std::size_t output_bound = 64 * 1024;                // staged output bytes
    std::size_t per_stream_buffer = 64 * 1024;           // queued response body per stream
    std::uint32_t max_streams_per_connection = 10000;    // then a graceful GOAWAY
    std::uint32_t rapid_reset_min_streams = 100;         // the ratio rule applies past this
    std::uint32_t max_premature_resets = 1000;           // in all, whatever the ratio
    std::uint32_t glitch_budget = 1000;
  };

  // Why a connection ended or a stream was refused: the counters the
  // connection exports as metrics (plain fields, read on the loop).
  struct Counters {
    std::uint64_t goaway_graceful = 0;       // shutdown or the stream cap
    std::uint64_t goaway_rapid_reset = 0;    // ENHANCE_YOUR_CALM: premature resets
    std::uint64_t goaway_glitches = 0;       // ENHANCE_YOUR_CALM: glitch budget
    std::uint64_t goaway_protocol = 0;       // a connection error (nghttp2 answered it)
    std::uint64_t goaway_flood = 0;          // acknowledgements or CONTINUATION beyond nghttp2's caps
    std::uint64_t streams_refused = 0;       // REFUSED_STREAM: no concurrency slot
    std::uint64_t stream_protocol_errors = 0;  // malformed requests reset (RFC 9113 §8.1.1)
    std::uint64_t headers_too_large = 0;     // answered 431
    std::uint64_t premature_resets = 0;
    std::uint64_t glitches = 0;              // counted, before refunds
  };

  enum class Error : std::uint8_t {
    kNone,
    kProtocol,     // the client broke RFC 9113 (nghttp2 sent GOAWAY)
    kFlood,        // too many acknowledgements queued, or a CONTINUATION flood
    kRapidReset,   // GOAWAY ENHANCE_YOUR_CALM sent
    kGlitches,     // GOAWAY ENHANCE_YOUR_CALM sent
    kInternal,     // nghttp2 failed otherwise (out of memory)
  };

  class Callbacks {
   public:
    virtual ~Callbacks() = default;
    // A request head is complete (end_stream: no body follows). The head is
    // the callee's to take: it may swap the pointer for one to a cleared head
    // of its own, whose storage the codec then reuses for a later stream. The
    // codec does not read the stream's head again.
    virtual void onRequestHead(std::int32_t stream, std::unique_ptr<RequestHead>& head, bool end_stream) = 0;
    virtual void onRequestBody(std::int32_t stream, const char* data, std::size_t len) = 0;
    // The request ended; `trailers` is null without a trailer section.
    virtual void onRequestEnd(std::int32_t stream, const HeaderList* trailers) = 0;
    // The client reset the stream (RST_STREAM with `code`), or the stream was
    // closed otherwise before both sides ended. Nothing more is submitted
    // for it; released() is still due.
    virtual void onStreamReset(std::int32_t stream, std::uint32_t code) = 0;
    // writable(stream) grew from 0 (after sendBody took less than offered).
    virtual void onStreamWritable(std::int32_t stream) = 0;
  };

  H2ServerCodec(Callbacks& callbacks, const Settings& settings);
  ~H2ServerCodec();
  H2ServerCodec(const H2ServerCodec&) = delete;
  H2ServerCodec& operator=(const H2ServerCodec&) = delete;

  // Bytes from the client. kNone, or why the connection ends (its last
  // frames, a GOAWAY, are in output()).
  Error feed(const char* data, std::size_t len);

  // Output staged for the socket: write it, then say wrote(n). The view is
  // valid until the next call on the codec.
  std::string_view output();
  void wrote(std::size_t n);
  // The view output() gave is being written (a socket write was queued):
  // nothing more is staged, so the view stays valid, until wrote(). A
  // connection error nghttp2 answers itself then shows on the output()
  // after wrote() (check error()).
  void outputInFlight() { in_flight_ = true; }
  bool outputOverBound() const { return out_.size() - out_off_ >= settings_.output_bound; }

  // A response head for `stream`: a 1xx (then another head follows) or the
  // final one. end_stream: no body follows. A final head to HEAD, or with
  // 204 or 304, ends the stream whatever end_stream says, and later body
  // bytes are dropped. Hop-by-hop fields are not sent. false if the stream
  // is gone (reset) or the head is refused (a second final head).
  bool submitResponse(std::int32_t stream, const ResponseHead& head, bool end_stream,
                      const ExtraFields* extra = nullptr);
  // How many body bytes sendBody() takes now.
  std::size_t writable(std::int32_t stream) const;
  // Queues up to writable() bytes; returns how many it took. end: the body
  // ends with these (all of them taken).
  std::size_t sendBody(std::int32_t stream, const char* data, std::size_t len, bool end);
  // The response ends with these trailers (after the queued body).
  bool submitTrailers(std::int32_t stream, const HeaderList& trailers);
  // The response ends before the request did (an early answer, a local
  // one): once its END_STREAM is out, RST_STREAM(NO_ERROR) stops the rest of
  // the request body (RFC 9113 §8.1; a reset queued earlier would go out
  // before the answer).
  void stopRequestBody(std::int32_t stream);
  // Resets one stream (a backend that died mid-response: INTERNAL_ERROR = 2).
  void resetStream(std::int32_t stream, std::uint32_t code = 2);
  // The backend took `n` request body bytes of `stream`: the windows reopen.
  void consumed(std::int32_t stream, std::size_t n);
  // The stream's upstream work is released: its concurrency slot frees.
  void released(std::int32_t stream);

  void shutdownNotice();
  void goAway();
  bool goingAway() const { return going_away_; }
  bool wantsClose() const;
  // Streams whose slot is held (open, or closed and not yet released).
  std::size_t streamCount() const { return streams_.size(); }

  const Counters& counters() const { return counters_; }
  const Settings& settings() const { return settings_; }
  Error error() const { return error_; }

 private:
  struct Stream;
  using StreamMap = std::unordered_map<std::int32_t, std::unique_ptr<Stream>>;
  friend struct H2Callbacks;

  Stream* find(std::int32_t id) const;
  bool glitch();  // false once the budget is spent (the connection is failing)
  void refund();
  void fail(Error e, std::uint32_t goaway_code);
  void checkResets();
  void onHeadersDone(Stream& s, bool end_stream);
  void answerLocally(Stream& s, std::uint16_t status);
  void open(std::int32_t id);
  void drop(std::int32_t id);
  void resume(Stream& s);
  void noteWritable();

  Callbacks& cb_;
  Settings settings_;
  nghttp2_session* session_ = nullptr;
  StreamMap streams_;
  // Closed streams' entries (map node and Stream), per worker thread, for
  // any connection of that worker to open its next stream with (a codec
  // lives on one loop): open() and drop().
  static thread_local std::vector<StreamMap::node_type> spare_streams_;
  mutable std::int32_t last_id_ = 0;  // find()'s last answer
  mutable Stream* last_ = nullptr;
  std::string out_;
  std::size_t out_off_ = 0;
  Counters counters_;
  Error error_ = Error::kNone;
  std::uint32_t streams_seen_ = 0;
  std::uint64_t glitch_level_ = 0;
  std::uint64_t settings_seen_ = 0;
  bool going_away_ = false;
  bool final_goaway_ = false;
  bool in_feed_ = false;
  bool in_flight_ = false;
  bool goaway_received_ = false;
  std::int32_t last_stream_ = 0;  // the stream that reached max_streams_per_connection
};

}  // namespace tether::http
