// The client side of TLS: what tether trusts and what it presents when it
// dials a TLS server (today Redis: rediss:// with affinity.redis.tls).
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

// Immutable once loaded; shared by every loop (an SSL_CTX may be used by
// several threads once set up).
class TlsClientContext {
 public:
  // Loads the CA file (or OpenSSL's default paths), the client certificate
  // and its key. Each error names its dotted path under `path` and the file
  // ("affinity.redis.tls.ca: /etc/ca.pem: cannot read: No such file ...").
  static std::shared_ptr<const TlsClientContext> load(const conf::ClientTls& tls, const std::string& path,
                                                      std::vector<std::string>* errors);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // A client SSL in connect state for a connection to `host`. The name sent
  // as SNI and checked against the certificate is tls.server_name, or host
  // when that is empty; an IP address is checked against the certificate's
  // IP addresses and sends no SNI. nullptr when out of memory.
  SSL* newSsl(const std::string& host) const;
  bool verifies() const { return verify_; }

 private:
  TlsClientContext() = default;
  SSL_CTX* ctx_ = nullptr;
  std::string server_name_;
  bool verify_ = true;
};

// Why the handshake of `ssl` failed, for the log: the certificate check's
// reason when that was it ("certificate verify failed: Hostname mismatch"),
// else `reason` (TlsStream::error()).
std::string tlsClientFailure(SSL* ssl, const std::string& reason);

}  // namespace tether::proxy
