// The transport of a downstream connection: how the plaintext a connection
// reads and writes crosses its socket, as it is (TcpTransport) or through
// the TLS record layer (TlsTransport).
//
// A transport reads and writes no socket by itself for reads: the owner
// (the connection) reads the socket into readSpace() and says how much came
// (received), and gets back what that means in plaintext (a Result). Writes
// go out through the owner's socketWrite(), so that one write queue and one
// pool of write requests serve both; when a queued socket write completes,
// the owner calls socketWritten(). Plaintext lands at the owner's read
// buffer (plainRoom/plainAdded) with no copy on TCP.
//
// Errors: a transport that fails calls owner.transportFailed() once and
// does nothing more; the owner closes the connection.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "proxy/io/buffer_pool.h"
#include "proxy/io/tls.h"

namespace tether::proxy {

class TransportOwner {
 public:
  // The free end of the owner's read buffer, for plaintext; false when it is full.
  virtual bool plainRoom(char** data, std::size_t* len) = 0;
  // n plaintext bytes were put there.
  virtual void plainAdded(std::size_t n) = 0;
  // Writes to the socket: 0 all written, 1 the rest is queued (socketWritten
  // follows), < 0 a libuv error.
  virtual int socketWrite(uv_buf_t* bufs, unsigned n) = 0;
  // A write() that answered 1 is done (status 0) or failed (a libuv error).
  virtual void plainWritten(int status) = 0;
  // The socket's stream (shutdowns, writes of the owner's own bytes).
  virtual uv_stream_t* socket() = 0;
  // The transport cannot go on (`what` for the log, `why` the library's reason).
  virtual void transportFailed(const char* what, const std::string& why) = 0;

 protected:
  ~TransportOwner() = default;
};

class Transport {
 public:
  // What bytes from the socket (or a resume) brought.
  enum class Fault : std::uint8_t {
    kNone,
    kNotTls,     // plain HTTP on a TLS port: the owner answers in plain text
    kHandshake,  // the TLS handshake failed; its alert is queued
  };
  struct Result {
    bool data = false;       // plaintext was added
    bool eof = false;        // the peer is done sending (after that data)
    bool handshook = false;  // the TLS handshake completed now
    Fault fault = Fault::kNone;
  };

  explicit Transport(TransportOwner& owner) : owner_(owner) {}
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // Reading: room for the socket's next bytes (len 0 when none), then how
  // many came, or the socket's end.
  virtual char* readSpace(std::size_t* len) = 0;
  virtual Result received(std::size_t n) = 0;
  virtual Result eof() = 0;
  // Bytes held that resume() turns into plaintext without the socket.
  virtual bool buffered() const { return false; }
  virtual Result resume() { return {}; }
  // False while the socket must not be read (a full record buffer).
  virtual bool readable() const { return true; }

  // Writes plaintext: 0 written, 1 queued (owner.plainWritten follows),
  // < 0 failed (the owner closes).
  virtual int write(uv_buf_t* bufs, unsigned n) = 0;
  // Bytes of the owner's own (close frames), after everything before them;
  // copied if they cannot go at once.
  virtual void writeOwn(const char* data, std::size_t len) = 0;
  // A queued socket write completed.
  virtual void socketWritten(int status) = 0;
  // Shuts the sending side once everything before is written; `cb` runs as
  // uv_shutdown's would. 0 or a libuv error.
  virtual int shutdown(uv_shutdown_t* req, uv_shutdown_cb cb) = 0;
  // The connection closes: a shutdown still waiting completes with UV_ECANCELED.
  virtual void cancel() {}

  virtual bool handshaking() const { return false; }
  // "TLSv1.3", "TLSv1.2", or "-" (plain, or before the handshake).
  virtual const char* tlsVersion() const { return "-"; }
  // The protocol TLS ALPN selected; empty without TLS or without a choice.
  virtual std::string_view alpn() const { return {}; }
  // Why the last TLS step failed (OpenSSL's reason), for the log.
  virtual std::string error() const { return {}; }

 protected:
  TransportOwner& owner_;
};

// The socket's bytes as they are; reads land in the owner's buffer.
class TcpTransport final : public Transport {
 public:
  using Transport::Transport;
  char* readSpace(std::size_t* len) override;
  Result received(std::size_t n) override;
  Result eof() override { return {false, true, false, Fault::kNone}; }
  int write(uv_buf_t* bufs, unsigned n) override;
  void writeOwn(const char* data, std::size_t len) override;
  void socketWritten(int status) override;
  int shutdown(uv_shutdown_t* req, uv_shutdown_cb cb) override { return uv_shutdown(req, owner_.socket(), cb); }
};

// TLS over the socket (TlsStream: the sans-I/O record layer).
class TlsTransport final : public Transport {
 public:
  TlsTransport(TransportOwner& owner, SSL* ssl, BufferPool& pool, std::shared_ptr<const TlsContext> ctx);
  char* readSpace(std::size_t* len) override { return tls_.readSpace(len); }
  Result received(std::size_t n) override;
  Result eof() override;
  bool buffered() const override { return tls_.buffered(); }
  Result resume() override { return decrypt(); }
  bool readable() const override { return tls_.readable(); }
  int write(uv_buf_t* bufs, unsigned n) override;
  void writeOwn(const char* data, std::size_t len) override;
  void socketWritten(int status) override;
  int shutdown(uv_shutdown_t* req, uv_shutdown_cb cb) override;
  void cancel() override;
  bool handshaking() const override { return tls_.handshaking(); }
  const char* tlsVersion() const override { return tls_.version(); }
  std::string_view alpn() const override { return tls_.alpn(); }
  std::string error() const override { return tls_.error(); }

 private:
  Result decrypt();
  void pump();
  void fail(const char* what);

  TlsStream tls_;
  // Plaintext of the write in progress not yet encrypted, [next_, count_),
  // then bytes of the owner's own (raw_): encrypted in this order.
  uv_buf_t pending_[4];
  std::uint8_t next_ = 0;
  std::uint8_t count_ = 0;
  bool data_write_ = false;   // a write() waits for its bytes to be written
  bool notify_sent_ = false;  // close_notify queued
  bool eof_ = false;          // the peer's FIN came while bytes were still held
  bool failed_ = false;
  std::string raw_;
  uv_shutdown_t* shutdown_ = nullptr;  // waits for everything before it
  uv_shutdown_cb shutdown_cb_ = nullptr;
};

// Writes what `to` takes at once of bufs[0..n) and advances bufs past it:
// 0 all written, < 0 the libuv error, 1 the rest, bufs[*first..n), is for a
// queued uv_write (the caller's).
int writeWhatFits(uv_stream_t* to, uv_buf_t* bufs, unsigned n, unsigned* first);

// Writes `len` bytes to `to` now if the socket takes them, else from a copy
// (for a few bytes of one's own: close frames).
void writeCopied(uv_stream_t* to, const char* data, std::size_t len);

}  // namespace tether::proxy
