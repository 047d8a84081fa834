// TLS on the listeners: the certificates of a listener (TlsContext) and the
// record layer of one client connection (TlsStream).
//
// TlsStream does no I/O of its own. Ciphertext read from the socket is handed
// to it in a pool buffer; ciphertext to send collects in another pool buffer
// that the session writes out. Both buffers go back to the pool when empty,
// and OpenSSL keeps no record buffers between calls (SSL_MODE_RELEASE_BUFFERS),
// so an idle TLS connection holds only its SSL object.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "proxy/io/buffer_pool.h"

namespace tether::proxy {

// The certificates of one TLS listener: the first is the default, the others
// are chosen by the client's SNI against their DNS names (subjectAltName, or
// the common name when a certificate has none). Immutable once loaded and
// shared by every worker; a reload loads a new one.
// The TLS 1.2 suites every listener offers, preferred first (the server's
// order wins): ECDHE key exchange with AES-GCM or ChaCha20-Poly1305, no CBC,
// no RSA key exchange, no SHA-1 MAC. TLS 1.3 keeps OpenSSL's default suites.
extern const char kTls12Ciphers[];

class TlsContext {
 public:
  // Loads every certificate of `listener`. Each error names its dotted path
  // under `path` ("listeners[0].tls.certificates[1].cert: FILE: reason").
  static std::shared_ptr<const TlsContext> load(const conf::Listener& listener, const std::string& path,
                                                std::vector<std::string>* errors);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // A server-side SSL for one connection; nullptr when out of memory.
  SSL* newSsl() const;

 private:
  struct Cert {
    SSL_CTX* ctx = nullptr;
    std::vector<std::string> names;  // as written; "*.example.com" for wildcards
  };
  TlsContext() = default;
  const Cert* pick(std::string_view host) const;
  static int onServerName(SSL* ssl, int* alert, void* arg);

  std::vector<Cert> certs_;
  std::string alpn_wire_;  // tls.alpn in ALPN's wire form (length-prefixed names)
};

// The certificates of every listener of `config`, by listener index (nullptr
// for a plain one). Errors name their dotted paths.
std::vector<std::shared_ptr<const TlsContext>> loadListenerTls(const conf::Config& config,
                                                               std::vector<std::string>* errors);

// True when certificate name `pattern` ("a.example.com" or "*.example.com")
// covers `host`: case-insensitive, a wildcard stands for exactly one label.
bool tlsNameMatches(std::string_view pattern, std::string_view host);

// The TLS state of one client connection.
class TlsStream {
 public:
  enum : long { kWantMore = 0, kEof = -1, kError = -2 };

  TlsStream(SSL* ssl, BufferPool& pool, std::shared_ptr<const TlsContext> ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Ciphertext in: room for the next socket read, then how much arrived.
  char* readSpace(std::size_t* len);
  void received(std::size_t n);
  // False while the ciphertext buffer is full: decrypt before reading more.
  bool readable() const { return !in_.data || in_pos_ > 0 || in_end_ < in_.cap; }
  // The first byte the client sent, or -1 before any.
  int firstByte() const { return first_byte_; }

  bool handshaking() const { return !handshake_done_; }
  // The negotiated protocol ("TLSv1.3", "TLSv1.2"), or "-" before the handshake is done.
  const char* version() const;
  // The protocol ALPN selected ("h2", "http/1.1"), empty when none.
  std::string_view alpn() const;
  // Advances the handshake: 1 done, kWantMore, or kError.
  long handshake();

  // Decrypts into [out, out + cap): bytes (> 0), kWantMore (every ciphertext
  // byte held is used up), kEof (the client's close_notify) or kError.
  long read(char* out, std::size_t cap);
  // Bytes held that read() can make progress on without more from the
  // socket (false after it asked for more, until received()).
  bool buffered() const;

  // Encrypts a prefix of [data, data + len) into the outgoing ciphertext, as
  // much as fits in its buffer: bytes taken (> 0), kWantMore (write out what
  // is there first) or kError.
  long write(const char* data, std::size_t len);
  // Queues close_notify.
  void shutdown();

  // Outgoing ciphertext: [outData(), outData() + outLen()) is not yet handed
  // to the socket. sent(n): n of them were written at once; inFlight(n): n of
  // them are in a queued write, which must complete (written()) before the
  // next one is queued.
  const char* outData() const { return out_.data + out_sent_; }
  std::size_t outLen() const { return out_end_ - out_sent_; }
  void sent(std::size_t n);
  void inFlight(std::size_t n);
  void written();
  bool outInFlight() const { return out_inflight_ != 0; }

  // Why the last call failed (OpenSSL's reason), for the log.
  std::string error() const;

 private:
  struct Buf {
    char* data = nullptr;
    std::uint32_t cap = 0;
  };
  static int bioWrite(BIO* b, const char* data, int len);
  static int bioRead(BIO* b, char* out, int len);
  static long bioCtrl(BIO* b, int cmd, long num, void* ptr);
  static BIO_METHOD* bioMethod();
  bool reserveOut(std::size_t n);
  // The bytes of the write in flight sit in out_ (not in a retired buffer):
  // out_ must not move.
  bool inFlightInOut() const { return out_inflight_ && !out_retired_.data; }
  void freeBuf(Buf& b);
  void releaseIfIdle();

  SSL* ssl_;
  BufferPool& pool_;
  std::shared_ptr<const TlsContext> ctx_;  // until the handshake picks a certificate
  Buf in_;
  std::uint32_t in_pos_ = 0;
  std::uint32_t in_end_ = 0;
  Buf out_;
  std::uint32_t out_end_ = 0;
  std::uint32_t out_sent_ = 0;      // handed to the socket up to here
  std::uint32_t out_inflight_ = 0;  // handed over, not yet written
  Buf out_retired_;                 // a buffer outgrown while a write from it was in flight
  unsigned long error_ = 0;
  int first_byte_ = -1;
  bool handshake_done_ = false;
  bool stalled_ = false;  // the last read or handshake step wanted more ciphertext
};

}  // namespace tether::proxy
