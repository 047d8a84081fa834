#include "proxy/io/tls.h"


#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

namespace tether::proxy {
namespace {

// ASCII case-insensitive comparison of DNS names (io depends on nothing above it).
bool iequalsAscii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    unsigned char x = static_cast<unsigned char>(a[i]), y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x += 32;
    if (y >= 'A' && y <= 'Z') y += 32;
    if (x != y) return false;
  }
  return true;
}

}  // namespace


const char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

namespace {

std::string opensslReason(unsigned long e) {
  if (e == 0) return "unexpected end of input";
  const char* r = ERR_reason_error_string(e);
  if (r) return r;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// The DNS names a certificate answers for: its subjectAltName DNS entries, or
// its common name when it has none (RFC 6125 §6.4.4).
std::vector<std::string> certificateNames(X509* cert) {
  std::vector<std::string> names;
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
      if (n->type != GEN_DNS) continue;
      const ASN1_STRING* s = n->d.dNSName;
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    X509_NAME* subject = X509_get_subject_name(cert);
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
      const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
      names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
  }
  return names;
}

// ALPN: the listener's protocols (tls.alpn), in its order of preference;
// a client that offers none of them gets no protocol selected rather than a
// failed handshake (and speaks HTTP/1.1).
int onAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned inlen,
           void* arg) {
  const std::string& ours = *static_cast<const std::string*>(arg);
  unsigned char* selected = nullptr;
  if (!ours.empty() &&
      SSL_select_next_proto(&selected, outlen, reinterpret_cast<const unsigned char*>(ours.data()),
                            static_cast<unsigned>(ours.size()), in, inlen) == OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Readable before OpenSSL tries, so that a missing file reads as one.
std::string unreadable(const std::string& file) {
  std::FILE* f = std::fopen(file.c_str(), "r");
  if (!f) return std::strerror(errno);
  std::fclose(f);
  return {};
}

}  // namespace

bool tlsNameMatches(std::string_view pattern, std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (pattern.empty() || host.empty()) return false;
  if (pattern.starts_with("*.")) {
    std::size_t dot = host.find('.');
    if (dot == 0 || dot == std::string_view::npos) return false;
    return iequalsAscii(pattern.substr(1), host.substr(dot));
  }
  return iequalsAscii(pattern, host);
}

std::shared_ptr<const TlsContext> TlsContext::load(const conf::Listener& listener, const std::string& path,
                                                   std::vector<std::string>* errors) {
  std::shared_ptr<TlsContext> t(new TlsContext);
  for (const std::string& name : listener.alpn) {
    if (name.empty() || name.size() > 255) continue;  // the loader refuses those
    t->alpn_wire_.push_back(static_cast<char>(name.size()));
    t->alpn_wire_ += name;
  }
  for (std::size_t i = 0; i < listener.certificates.size(); ++i) {
    const conf::TlsCertificate& c = listener.certificates[i];
    std::string at = path + ".certificates[" + std::to_string(i) + "]";
    auto fail = [&](const char* field, const std::string& file, const std::string& why) {
      errors->push_back(at + "." + field + ": " + file + ": " + why);
    };
    std::string why;
    if (!(why = unreadable(c.cert)).empty()) {
      fail("cert", c.cert, "cannot read: " + why);
      continue;
    }
    if (!(why = unreadable(c.key)).empty()) {
      fail("key", c.key, "cannot read: " + why);
      continue;
    }
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
      errors->push_back(at + ": " + opensslReason(ERR_get_error()));
      continue;
    }
    Cert cert;
    cert.ctx = ctx;
    t->certs_.push_back(cert);  // freed with t from here on
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      fail("cert", c.cert, "not a usable PEM certificate: " + opensslReason(ERR_peek_last_error()));
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
      unsigned long e = ERR_peek_last_error();
      if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == SSL_R_PRIVATE_KEY_MISMATCH) {
        fail("key", c.key, "does not match the certificate " + c.cert);
      } else {
        fail("key", c.key, "not a usable PEM private key: " + opensslReason(e));
      }
      continue;
    }
    t->certs_.back().names = certificateNames(SSL_CTX_get0_certificate(ctx));
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    // TLS 1.2: ECDHE with an AEAD only, in our order (TLS 1.3 keeps OpenSSL's
    // defaults, all of them AEAD). Every context gets the list: an SSL keeps
    // the one it was created with when SNI switches its certificate.
    if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
      errors->push_back(at + ": cannot set the TLS 1.2 ciphers: " +
                        opensslReason(ERR_peek_last_error()));
      continue;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char kSessionContext[] = "tether";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
    SSL_CTX_set_alpn_select_cb(ctx, onAlpn, &t->alpn_wire_);
  }
  ERR_clear_error();
  if (!errors->empty()) return nullptr;
  if (t->certs_.empty()) {
    errors->push_back(path + ".certificates: a TLS listener needs at least one certificate");
    return nullptr;
  }
  SSL_CTX_set_tlsext_servername_callback(t->certs_[0].ctx, onServerName);
  SSL_CTX_set_tlsext_servername_arg(t->certs_[0].ctx, t.get());
  return t;
}

std::vector<std::shared_ptr<const TlsContext>> loadListenerTls(const conf::Config& config,
                                                               std::vector<std::string>* errors) {
  std::vector<std::shared_ptr<const TlsContext>> out;
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const conf::Listener& l = config.listeners[i];
    out.push_back(l.tls ? TlsContext::load(l, "listeners[" + std::to_string(i) + "].tls", errors) : nullptr);
  }
  return out;
}

TlsContext::~TlsContext() {
  for (Cert& c : certs_) SSL_CTX_free(c.ctx);
}

SSL* TlsContext::newSsl() const {
  SSL* ssl = SSL_new(certs_[0].ctx);
  if (ssl) SSL_set_accept_state(ssl);
  return ssl;
}

const TlsContext::Cert* TlsContext::pick(std::string_view host) const {
  for (const Cert& c : certs_) {
    for (const std::string& n : c.names) {
      if (tlsNameMatches(n, host)) return &c;
    }
  }
  return nullptr;
}

int TlsContext::onServerName(SSL* ssl, int*, void* arg) {
  const char* host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!host) return SSL_TLSEXT_ERR_NOACK;  // no SNI: the default certificate
  const auto* self = static_cast<const TlsContext*>(arg);
  const Cert* c = self->pick(host);
  if (!c) return SSL_TLSEXT_ERR_NOACK;  // unknown name: the default certificate, as nginx and HAProxy do
  if (c->ctx != self->certs_[0].ctx) SSL_set_SSL_CTX(ssl, c->ctx);
  return SSL_TLSEXT_ERR_OK;
}

// ---------------------------------------------------------------------------
// TlsStream

BIO_METHOD* TlsStream::bioMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tether");
    BIO_meth_set_write(m, bioWrite);
    BIO_meth_set_read(m, bioRead);
    BIO_meth_set_ctrl(m, bioCtrl);
    return m;
  }();
  return method;
}

TlsStream::TlsStream(SSL* ssl, BufferPool& pool, std::shared_ptr<const TlsContext> ctx)
    : ssl_(ssl), pool_(pool), ctx_(std::move(ctx)) {
  BIO* bio = BIO_new(bioMethod());
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_, bio, bio);  // one reference, used both ways
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
  freeBuf(in_);
  freeBuf(out_);
  freeBuf(out_retired_);
}

void TlsStream::freeBuf(Buf& b) {
  if (!b.data) return;
  if (b.cap > BufferPool::kSize) {
    std::free(b.data);
  } else {
    pool_.put(b.data);
  }
  b = Buf{};
}

void TlsStream::releaseIfIdle() {
  if (in_.data && in_pos_ == in_end_) {
    freeBuf(in_);
    in_pos_ = in_end_ = 0;
  }
  if (out_.data && out_sent_ == out_end_ && !out_inflight_) {
    freeBuf(out_);
    out_sent_ = out_end_ = 0;
  }
}

char* TlsStream::readSpace(std::size_t* len) {
  if (!in_.data) {
    in_ = Buf{pool_.get(), static_cast<std::uint32_t>(BufferPool::kSize)};
    in_pos_ = in_end_ = 0;
  } else if (in_pos_ == in_end_) {
    in_pos_ = in_end_ = 0;
  } else if (in_end_ == in_.cap && in_pos_ > 0) {
    std::memmove(in_.data, in_.data + in_pos_, in_end_ - in_pos_);
    in_end_ -= in_pos_;
    in_pos_ = 0;
  }
  *len = in_.cap - in_end_;
  return in_.data + in_end_;
}

void TlsStream::received(std::size_t n) {
  if (first_byte_ < 0 && n > 0) first_byte_ = static_cast<unsigned char>(in_.data[in_end_]);
  in_end_ += static_cast<std::uint32_t>(n);
  stalled_ = false;
}

const char* TlsStream::version() const { return handshake_done_ ? SSL_get_version(ssl_) : "-"; }

std::string_view TlsStream::alpn() const {
  const unsigned char* p = nullptr;
  unsigned len = 0;
  if (handshake_done_) SSL_get0_alpn_selected(ssl_, &p, &len);
  return p ? std::string_view(reinterpret_cast<const char*>(p), len) : std::string_view();
}

long TlsStream::handshake() {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    handshake_done_ = true;
    ctx_.reset();
    releaseIfIdle();
    return 1;
  }
  int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) {
    stalled_ = true;
    releaseIfIdle();
    return kWantMore;
  }
  error_ = ERR_peek_last_error();
  return kError;
}

long TlsStream::read(char* out, std::size_t cap) {
  if (in_pos_ == in_end_ && !SSL_has_pending(ssl_)) {
    // Nothing held: asking OpenSSL anyway would make it set up a record
    // buffer (16 KiB) just to find nothing, and keep it while the connection idles.
    stalled_ = true;
    releaseIfIdle();
    return kWantMore;
  }
  ERR_clear_error();
  int n = SSL_read(ssl_, out, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  if (n > 0) return n;
  int e = SSL_get_error(ssl_, n);
  if (e == SSL_ERROR_WANT_READ) {
    stalled_ = true;  // a partial record may stay inside OpenSSL: wait for the socket
    releaseIfIdle();
    return kWantMore;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return kEof;
  error_ = ERR_peek_last_error();
  return kError;
}

bool TlsStream::buffered() const { return !stalled_ && (in_pos_ < in_end_ || SSL_has_pending(ssl_)); }

bool TlsStream::reserveOut(std::size_t n) {
  if (!out_.data) {
    std::size_t cap = std::max(BufferPool::kSize, n);
    char* d = cap > BufferPool::kSize ? static_cast<char*>(std::malloc(cap)) : pool_.get();
    if (!d) return false;
    out_ = Buf{d, static_cast<std::uint32_t>(cap)};
    out_sent_ = out_end_ = 0;
    return true;
  }
  if (out_.cap - out_end_ >= n) return true;
  bool inflight_here = inFlightInOut();
  std::size_t unsent = out_end_ - out_sent_;
  if (!inflight_here && out_.cap - unsent >= n) {
    std::memmove(out_.data, out_.data + out_sent_, unsent);
    out_sent_ = 0;
    out_end_ = static_cast<std::uint32_t>(unsent);
    return true;
  }
  // Outgrown: move what is not yet handed over to a bigger buffer. The bytes
  // of a write in flight stay where they are until it completes.
  std::size_t cap = std::max<std::size_t>(2 * out_.cap, unsent + n);
  char* d = static_cast<char*>(std::malloc(cap));
  if (!d) return false;
  std::memcpy(d, out_.data + out_sent_, unsent);
  if (inflight_here) {
    out_retired_ = out_;
  } else {
    freeBuf(out_);
  }
  out_ = Buf{d, static_cast<std::uint32_t>(cap)};
  out_sent_ = 0;
  out_end_ = static_cast<std::uint32_t>(unsent);
  return true;
}

long TlsStream::write(const char* data, std::size_t len) {
  // One record per call (at most 16 KiB of plaintext), into the room left, so
  // that the steady state stays within one pool buffer.
  constexpr std::size_t kRecordOverhead = 512;
  if (!reserveOut(0)) return kError;
  std::size_t room = out_.cap - out_end_;
  if (!inFlightInOut()) room += out_sent_;  // reclaimable by compaction
  if (room < 2 * kRecordOverhead) return kWantMore;
  std::size_t chunk = std::min({len, room - kRecordOverhead, std::size_t{16384}});
  ERR_clear_error();
  int r = SSL_write(ssl_, data, static_cast<int>(chunk));
  if (r > 0) return r;
  error_ = ERR_peek_last_error();
  return kError;
}

void TlsStream::shutdown() {
  if (!handshake_done_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

void TlsStream::sent(std::size_t n) {
  out_sent_ += static_cast<std::uint32_t>(n);
  if (out_sent_ == out_end_ && !out_inflight_) releaseIfIdle();
}

void TlsStream::inFlight(std::size_t n) {
  out_sent_ += static_cast<std::uint32_t>(n);
  out_inflight_ = static_cast<std::uint32_t>(n);
}

void TlsStream::written() {
  out_inflight_ = 0;
  if (out_retired_.data) freeBuf(out_retired_);
  if (out_sent_ == out_end_) releaseIfIdle();
}

std::string TlsStream::error() const { return opensslReason(error_); }

int TlsStream::bioWrite(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  auto* t = static_cast<TlsStream*>(BIO_get_data(b));
  if (len <= 0) return 0;
  if (!t->reserveOut(static_cast<std::size_t>(len))) return -1;
  std::memcpy(t->out_.data + t->out_end_, data, static_cast<std::size_t>(len));
  t->out_end_ += static_cast<std::uint32_t>(len);
  return len;
}

int TlsStream::bioRead(BIO* b, char* out, int len) {
  BIO_clear_retry_flags(b);
  auto* t = static_cast<TlsStream*>(BIO_get_data(b));
  std::size_t avail = t->in_end_ - t->in_pos_;
  if (avail == 0 || len <= 0) {
    BIO_set_retry_read(b);
    return -1;
  }
  std::size_t n = std::min(avail, static_cast<std::size_t>(len));
  std::memcpy(out, t->in_.data + t->in_pos_, n);
  t->in_pos_ += static_cast<std::uint32_t>(n);
  return static_cast<int>(n);
}

long TlsStream::bioCtrl(BIO*, int cmd, long, void*) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // the session writes what collected
    default:
      return 0;
  }
}

}  // namespace tether::proxy
