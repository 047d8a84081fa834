#include "proxy/io/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "proxy/io/tls.h"

namespace tether::proxy {
namespace {

std::string reasonOf(unsigned long e) {
  if (e == 0) return "unknown error";
  if (const char* r = ERR_reason_error_string(e)) return r;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Readable before OpenSSL tries, so that a missing file reads as one.
std::string unreadable(const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "r");
  if (!f) return std::strerror(errno);
  std::fclose(f);
  return {};
}

bool isIpAddress(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

std::shared_ptr<const TlsClientContext> TlsClientContext::load(const conf::ClientTls& tls, const std::string& path,
                                                               std::vector<std::string>* errors) {
  std::size_t errors_before = errors->size();
  auto fail = [&](const char* field, const std::string& file, const std::string& why) {
    errors->push_back(path + "." + field + ": " + file + ": " + why);
  };
  std::shared_ptr<TlsClientContext> t(new TlsClientContext);
  t->server_name_ = tls.server_name;
  t->verify_ = tls.verify;
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  if (!t->ctx_) {
    errors->push_back(path + ": " + reasonOf(ERR_get_error()));
    return nullptr;
  }
  SSL_CTX* ctx = t->ctx_;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // The listeners' TLS 1.2 suites: ECDHE with an AEAD only (tls.h).
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    errors->push_back(path + ": cannot set the TLS 1.2 ciphers: " + reasonOf(ERR_peek_last_error()));
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  std::string why;
  if (!tls.ca.empty()) {
    if (!(why = unreadable(tls.ca)).empty()) {
      fail("ca", tls.ca, "cannot read: " + why);
    } else if (SSL_CTX_load_verify_locations(ctx, tls.ca.c_str(), nullptr) != 1) {
      fail("ca", tls.ca, "not a usable PEM CA file: " + reasonOf(ERR_peek_last_error()));
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    errors->push_back(path + ".ca: cannot load the system's CAs: " + reasonOf(ERR_peek_last_error()));
  }
  if (!tls.cert.empty()) {
    if (!(why = unreadable(tls.cert)).empty()) {
      fail("cert", tls.cert, "cannot read: " + why);
    } else if (!(why = unreadable(tls.key)).empty()) {
      fail("key", tls.key, "cannot read: " + why);
    } else if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert.c_str()) != 1) {
      fail("cert", tls.cert, "not a usable PEM certificate: " + reasonOf(ERR_peek_last_error()));
    } else if (SSL_CTX_use_PrivateKey_file(ctx, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail("key", tls.key, "not a usable PEM private key: " + reasonOf(ERR_peek_last_error()));
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
      fail("key", tls.key, "does not match the certificate " + tls.cert);
    }
  }
  SSL_CTX_set_verify(ctx, tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  ERR_clear_error();
  if (errors->size() != errors_before) return nullptr;
  return t;
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

SSL* TlsClientContext::newSsl(const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl);
  const std::string& name = server_name_.empty() ? host : server_name_;
  bool ok = true;
  if (isIpAddress(name)) {
    // RFC 6066: no SNI for an address; the certificate must carry it as an IP SAN.
    if (verify_) ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) == 1;
  } else {
    ok = SSL_set_tlsext_host_name(ssl, name.c_str()) == 1;
    if (ok && verify_) {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl, name.c_str()) == 1;
    }
  }
  if (!ok) {
    SSL_free(ssl);
    ERR_clear_error();
    return nullptr;
  }
  return ssl;
}

std::string tlsClientFailure(SSL* ssl, const std::string& reason) {
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) return std::string("certificate verify failed: ") + X509_verify_cert_error_string(v);
  return reason;
}

}  // namespace tether::proxy
