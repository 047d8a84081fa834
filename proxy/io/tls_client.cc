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

TlsSessionCache::~TlsSessionCache() { SSL_SESSION_free(session_); }

void TlsSessionCache::put(const TlsClientContext* ctx, SSL_SESSION* s) {
  SSL_SESSION_free(session_);
  session_ = s;
  ctx_ = ctx;
}

int TlsClientContext::exIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL hands over every session the server gives. A copy is kept: the
// connection's own session object is marked not resumable when the
// connection ends without a close_notify (SSL_free of an unfinished
// session), which is how most keep-alive connections to a backend end.
int TlsClientContext::onNewSession(SSL* ssl, SSL_SESSION* s) {
  auto* cache = static_cast<TlsSessionCache*>(SSL_get_ex_data(ssl, exIndex()));
  auto* self = static_cast<const TlsClientContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!cache || !self) return 0;
  if (SSL_SESSION* copy = SSL_SESSION_dup(s)) cache->put(self, copy);
  return 0;  // the reference OpenSSL passed stays its own
}

std::shared_ptr<const TlsClientContext> TlsClientContext::load(const conf::ClientTls& tls, const std::string& path,
                                                               std::vector<std::string>* errors,
                                                               const std::string& alpn) {
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
      // A key of another certificate is refused here already.
      unsigned long e = ERR_peek_last_error();
      bool mismatch = ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == SSL_R_PRIVATE_KEY_MISMATCH;
      fail("key", tls.key, mismatch ? "does not match the certificate " + tls.cert : "not a usable PEM private key: " + reasonOf(e));
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
      fail("key", tls.key, "does not match the certificate " + tls.cert);
    }
  }
  SSL_CTX_set_verify(ctx, tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!alpn.empty() && alpn.size() < 256) {
    std::string wire(1, static_cast<char>(alpn.size()));
    wire += alpn;
    // 0 is success here, unlike the rest of OpenSSL.
    if (SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(wire.data()),
                                static_cast<unsigned>(wire.size())) != 0) {
      errors->push_back(path + ": cannot set ALPN " + alpn);
    }
  }
  // Sessions are kept by the caller's TlsSessionCache, not in the context:
  // OpenSSL's own client cache is never looked up by host.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, onNewSession);
  SSL_CTX_set_app_data(ctx, t.get());
  ERR_clear_error();
  if (errors->size() != errors_before) return nullptr;
  return t;
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

SSL* TlsClientContext::newSsl(const std::string& host, TlsSessionCache* cache) const {
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return nullptr;
  SSL_set_connect_state(ssl);
  if (cache) {
    SSL_set_ex_data(ssl, exIndex(), cache);
    if (SSL_SESSION* s = cache->get(this)) SSL_set_session(ssl, s);  // a failure is a full handshake
  }
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

std::vector<std::shared_ptr<const TlsClientContext>> loadBackendTls(const conf::Config& config,
                                                                    std::vector<std::string>* errors) {
  std::vector<std::shared_ptr<const TlsClientContext>> out;
  for (std::size_t i = 0; i < config.backends.size(); ++i) {
    const conf::BackendConf& b = config.backends[i];
    if (!b.tls) {
      out.push_back(nullptr);
      continue;
    }
    conf::ClientTls tls = *b.tls;
    if (tls.server_name.empty()) tls.server_name = b.address.host;
    std::string path = b.tls_own ? "backends[" + std::to_string(i) + "].tls" : std::string("backend_tls");
    std::size_t before = errors->size();
    out.push_back(TlsClientContext::load(tls, path, errors, "http/1.1"));
    // The same default for many backends: its errors once.
    if (!b.tls_own) {
      for (std::size_t e = before; e < errors->size(); ++e) {
        for (std::size_t k = 0; k < before; ++k) {
          if ((*errors)[k] == (*errors)[e]) {
            errors->erase(errors->begin() + static_cast<std::ptrdiff_t>(e--));
            break;
          }
        }
      }
    }
  }
  return out;
}

}  // namespace tether::proxy
