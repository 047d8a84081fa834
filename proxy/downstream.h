// What a stream (stream.h) asks of the downstream side whose request it
// proxies: the request as decoded, its body as it arrives, and somewhere to
// send the response. An HTTP/1 connection (session.h) is one downstream for
// one request at a time; an HTTP/2 connection has one per stream. The stream
// never sees the client's socket, its protocol or its framing: the
// downstream encodes heads and bodies for its own wire.
//
// The calls come from the stream, on the loop. None of them calls back into
// the stream synchronously (the downstream answers later, through
// Stream::onRequestBody and Stream::onResponseWritten), except finished(),
// which the stream calls as the last thing it does for its request.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/forward/header_policy.h"
#include "proxy/http/head.h"
#include "proxy/io/buffer_pool.h"

namespace tether::proxy {

class Stream;
class UpstreamConn;

// The client as the stream needs it: its address (as text, and as bytes for
// trusted_proxies) and whether it came over TLS.
struct Peer {
  std::string_view ip;
  const std::uint8_t* addr = nullptr;  // 4 or 16 bytes
  std::uint8_t family = 0;             // 4, 6, or 0 when unknown
  bool tls = false;
  std::string_view tls_version;        // for the access log; "-" without TLS
};

class Downstream {
 public:
  // The request head, decoded and with the downstream's own policy applied;
  // valid and unchanged while the stream lives.
  virtual http::RequestHead& request() = 0;
  virtual const Peer& peer() const = 0;
  // "HTTP/1.0", "HTTP/1.1", "HTTP/2" (the access log's protocol).
  virtual std::string_view protocolName() const = 0;

  // Request body bytes ready to go to the backend, framed for HTTP/1.1 as
  // the head the stream sends says (as received for a length, chunked
  // otherwise): at most `max` buffers, unchanged until requestBodyWritten().
  // 0 when nothing is ready.
  virtual unsigned takeRequestBody(uv_buf_t* bufs, unsigned max) = 0;
  // What takeRequestBody gave is written to the backend: the downstream may
  // reuse that memory and read on (it calls Stream::onRequestBody later when
  // more is ready, never from inside this call).
  virtual void requestBodyWritten() = 0;
  // takeRequestBody would give something now.
  virtual bool requestBodyReady() const = 0;
  // The whole request is read, and nothing of it waits in takeRequestBody.
  virtual bool requestSent() const = 0;
  // The whole request is read (some may still wait to be taken).
  virtual bool requestComplete() const = 0;
  // Every body byte can be given again from the first (a retry): false once
  // some were let go.
  virtual bool requestReplayable() const = 0;
  // A retry: takeRequestBody starts over from the first body byte.
  virtual void rewindRequestBody() = 0;
  // Bytes already read (and counted) that belong to the requests after this
  // one (pipelined): not this request's in the metrics.
  virtual std::uint64_t bytesBeyondRequest() const = 0;
  // The client ended its side (EOF): a request can still be answered.
  virtual bool clientEof() const = 0;
  // The time (loop ms) of the client's last request byte, and whether a
  // request body is still incomplete (timeouts.request_body).
  virtual std::int64_t lastRequestByteMs() const = 0;

  // The response. responseFraming() first, once, for the final head: the
  // downstream decides how the body reaches its client (chunked, as it is,
  // ended by closing) and says what the header policy must know.
  // `body_reencoded`: the stream changes the body (compression), so the
  // response's Content-Length no longer applies.
  virtual forward::DownstreamResponse responseFraming(const http::ResponseHead& r, bool body_reencoded) = 0;
  // A head (1xx or final) to send, with the fields policy adds. Held until
  // the next sendBody/flush/sendEnd, so a head and its first body bytes go
  // out together. false: the downstream cannot take it (the stream answers
  // 502 if nothing was sent yet).
  virtual bool sendHead(http::ResponseHead& r, const http::ExtraFields& extra) = 0;
  // Decoded body bytes. At most one sendBody/flush/sendEnd at a time. True
  // while the write is queued: the bytes stay referenced and unchanged
  // until Stream::onResponseWritten. False when it went out at once (or the
  // downstream closed): the stream goes on by itself.
  virtual bool sendBody(const char* data, std::size_t len) = 0;
  // Sends a held head now (an event stream's head before its first event).
  virtual bool flush() = 0;
  // The body ends here, with `trailers` (null: none), after what was sent.
  virtual bool sendEnd(http::HeaderList* trailers) = 0;
  // A write of the response is in flight: Stream::onResponseWritten follows.
  virtual bool writing() const = 0;
  // The stream cannot finish its response: the client must see it cut (an
  // HTTP/1 connection closes, an HTTP/2 stream is reset).
  virtual void abort() = 0;
  // A local answer (502, 503, 504, 408) from tether, when no response head
  // was sent: the downstream writes it and ends the stream. Returns the
  // bytes it sends (for the access log).
  virtual std::size_t localReply(int status, const char* reason) = 0;
  // The stream wants the client read (or not) again: its window or buffers
  // changed.
  virtual void updateReading() = 0;
  // TLS records an upstream connection holds: the stream asks to be resumed
  // from the loop's deferred pass (Stream::resumeUpstream).
  virtual void deferResume() = 0;
  // The response is over (sendEnd written, or a local reply decided): the
  // stream is done. Called last; the downstream may destroy the stream once
  // the call chain that led here has returned (never inside this call).
  virtual void finished(bool answered) = 0;
  // The stream is done and none of its calls is on the stack: the
  // downstream destroys it now if it was finished or upgraded.
  virtual void reap(Stream* s) = 0;
  // A 101 is written and its upstream connection handed over (with the
  // bytes read past the 101, [up_off, up_in.end) of `up_in`): the
  // downstream becomes a tunnel. The stream is done, as after finished().
  virtual void upgraded(UpstreamConn* upstream, IoBuffer& up_in, std::uint32_t up_off) = 0;

 protected:
  ~Downstream() = default;
};

}  // namespace tether::proxy
