// The client side of TLS: what tether trusts and what it presents when it
// dials a TLS server (Redis: rediss:// with affinity.redis.tls; https://
// backends: backends[].tls or backend_tls).
//
// Only the context lives here. The record layer of a client connection is
// TlsStream (tls.h), driven exactly as on the listeners: an SSL from
// newSsl() is handed to a TlsStream, whose first handshake() step writes the
// ClientHello into its outgoing ciphertext.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "conf/config.h"

namespace tether::proxy {

class TlsClientContext;

// The session to offer on the next connection to one server: the latest one
// the server gave (TLS 1.3 NewSessionTicket, or a TLS 1.2 session), so that
// a reconnect is an abbreviated handshake. One per backend per loop (not
// thread-safe); it must outlive every SSL made with it (newSsl). A session
// from another context (a reload changed the backend's TLS) is not offered.
class TlsSessionCache {
 public:
  TlsSessionCache() = default;
  ~TlsSessionCache();
  TlsSessionCache(const TlsSessionCache&) = delete;
  TlsSessionCache& operator=(const TlsSessionCache&) = delete;
  SSL_SESSION* get(const TlsClientContext* ctx) const { return ctx == ctx_ ? session_ : nullptr; }
  // Takes over `s` (replacing the one held).
  void put(const TlsClientContext* ctx, SSL_SESSION* s);

 private:
  const TlsClientContext* ctx_ = nullptr;
  SSL_SESSION* session_ = nullptr;
};

// Immutable once loaded; shared by every loop (an SSL_CTX may be used by
// several threads once set up).
class TlsClientContext {
 public:
  // Loads the CA file (or OpenSSL's default paths), the client certificate
  // and its key. Each error names its dotted path under `path` and the file
  // ("affinity.redis.tls.ca: /etc/ca.pem: cannot read: No such file ...").
  // `alpn`: the one protocol offered ("http/1.1"), or "" for none.
  static std::shared_ptr<const TlsClientContext> load(const conf::ClientTls& tls, const std::string& path,
                                                      std::vector<std::string>* errors,
                                                      const std::string& alpn = "");
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client SSL in connect state for a connection to `host`. The name sent
  // as SNI and checked against the certificate is tls.server_name, or host
  // when that is empty; an IP address is checked against the certificate's
  // IP addresses and sends no SNI. nullptr when out of memory. With `cache`,
  // its session is offered and the server's new ones are kept there.
  SSL* newSsl(const std::string& host, TlsSessionCache* cache = nullptr) const;
  bool verifies() const { return verify_; }

 private:
  TlsClientContext() = default;
  static int exIndex();
  static int onNewSession(SSL* ssl, SSL_SESSION* s);
  SSL_CTX* ctx_ = nullptr;
  std::string server_name_;
  bool verify_ = true;
};

// Why the handshake of `ssl` failed, for the log: the certificate check's
// reason when that was it ("certificate verify failed: Hostname mismatch"),
// else `reason` (TlsStream::error()).
std::string tlsClientFailure(SSL* ssl, const std::string& reason);

// The TLS of every https:// backend of `config`, by backend index (nullptr
// for an http:// one), with ALPN http/1.1 and the URL's host as the default
// server name. Errors name their dotted paths (backends[1].tls.ca, or
// backend_tls.ca for a backend that uses the default).
std::vector<std::shared_ptr<const TlsClientContext>> loadBackendTls(const conf::Config& config,
                                                                    std::vector<std::string>* errors);

}  // namespace tether::proxy
