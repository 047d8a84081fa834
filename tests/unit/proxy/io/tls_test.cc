// TLS: certificate names, certificate loading errors, SNI, the record layer
// of TlsStream against an OpenSSL client, with the bytes shuttled by hand in
// every chunking, and the transports (transport.h) over a socket-free owner;
// the client side (tls_client.h): backend TLS loading errors and session
// resumption between two TlsStreams.
#include "proxy/io/tls.h"
#include "proxy/io/tls_client.h"
#include "proxy/io/transport.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace tether::proxy {
namespace {

TEST(TlsNameMatches, ExactAndOneLabelWildcards) {
  EXPECT_TRUE(tlsNameMatches("a.test", "a.test"));
  EXPECT_TRUE(tlsNameMatches("a.test", "A.Test"));
  EXPECT_TRUE(tlsNameMatches("a.test", "a.test."));
  EXPECT_FALSE(tlsNameMatches("a.test", "b.test"));
  EXPECT_FALSE(tlsNameMatches("a.test", "x.a.test"));
  EXPECT_TRUE(tlsNameMatches("*.b.test", "x.b.test"));
  EXPECT_TRUE(tlsNameMatches("*.b.test", "X.B.TEST"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", "b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", "y.x.b.test"));
  EXPECT_FALSE(tlsNameMatches("*.b.test", ".b.test"));
  EXPECT_FALSE(tlsNameMatches("", "a.test"));
  EXPECT_FALSE(tlsNameMatches("a.test", ""));
}

// A self-signed P-256 certificate for `names` (the first is also the CN),
// written as PEM files under `dir`.
struct CertFiles {
  std::string cert;
  std::string key;
};

CertFiles makeCert(const std::string& dir, const std::string& stem, const std::vector<std::string>& names) {
  EVP_PKEY* pkey = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 86400);
  X509_set_pubkey(x, pkey);
  X509_NAME* n = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(names[0].c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x, n);
  std::string san;
  for (const std::string& name : names) san += (san.empty() ? "DNS:" : ",DNS:") + name;
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, NID_subject_alt_name, san.c_str());
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
  X509_sign(x, pkey, EVP_sha256());
  CertFiles f{dir + "/" + stem + ".pem", dir + "/" + stem + ".key"};
  std::FILE* c = std::fopen(f.cert.c_str(), "w");
  PEM_write_X509(c, x);
  std::fclose(c);
  std::FILE* k = std::fopen(f.key.c_str(), "w");
  PEM_write_PrivateKey(k, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(k);
  X509_free(x);
  EVP_PKEY_free(pkey);
  return f;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tether-tls-XXXXXX";
    dir_ = mkdtemp(tmpl);
    a_ = makeCert(dir_, "a", {"a.test"});
    b_ = makeCert(dir_, "b", {"*.b.test"});
    client_ctx_ = SSL_CTX_new(TLS_client_method());
  }
  void TearDown() override {
    SSL_CTX_free(client_ctx_);
    std::filesystem::remove_all(dir_);
  }

  conf::Listener listener(std::vector<CertFiles> certs) {
    conf::Listener l;
    l.tls = true;
    for (const CertFiles& c : certs) l.certificates.push_back({c.cert, c.key});
    return l;
  }

  std::shared_ptr<const TlsContext> load(std::vector<CertFiles> certs) {
    std::vector<std::string> errors;
    auto ctx = TlsContext::load(listener(std::move(certs)), "listeners[0].tls", &errors);
    EXPECT_TRUE(errors.empty()) << errors[0];
    return ctx;
  }

  std::string dir_;
  CertFiles a_, b_;
  SSL_CTX* client_ctx_ = nullptr;
  BufferPool pool_{4};
};

std::string loadError(const conf::Listener& l) {
  std::vector<std::string> errors;
  auto ctx = TlsContext::load(l, "listeners[0].tls", &errors);
  EXPECT_EQ(ctx, nullptr);
  return errors.empty() ? std::string() : errors[0];
}

TEST_F(TlsTest, LoadErrorsNameTheirPathAndFile) {
  std::string e = loadError(listener({{dir_ + "/missing.pem", a_.key}}));
  EXPECT_EQ(e.rfind("listeners[0].tls.certificates[0].cert: " + dir_ + "/missing.pem: cannot read", 0), 0u) << e;

  e = loadError(listener({a_, {b_.cert, a_.key}}));  // b's certificate with a's key
  EXPECT_EQ(e.rfind("listeners[0].tls.certificates[1].key: " + a_.key + ": does not match", 0), 0u) << e;

  std::string junk = dir_ + "/junk.pem";
  std::FILE* f = std::fopen(junk.c_str(), "w");
  std::fputs("not a certificate\n", f);
  std::fclose(f);
  e = loadError(listener({{junk, a_.key}}));
  EXPECT_EQ(e.rfind("listeners[0].tls.certificates[0].cert: " + junk + ": not a usable PEM certificate", 0), 0u) << e;

  e = loadError(listener({{a_.cert, junk}}));
  EXPECT_EQ(e.rfind("listeners[0].tls.certificates[0].key: " + junk + ": not a usable PEM private key", 0), 0u) << e;
  EXPECT_EQ(ERR_peek_error(), 0u) << "load leaves no error queued for the next connection";
}

// One client and one server stream, with the ciphertext carried by hand.
struct Pair {
  Pair(SSL_CTX* client_ctx, const TlsContext& server, BufferPool& pool, const char* sni)
      : server(server.newSsl(), pool, nullptr) {
    client = SSL_new(client_ctx);
    SSL_set_connect_state(client);
    if (sni) SSL_set_tlsext_host_name(client, sni);
    to_server = BIO_new(BIO_s_mem());
    to_client = BIO_new(BIO_s_mem());
    SSL_set_bio(client, to_client, to_server);
  }
  ~Pair() { SSL_free(client); }

  // Client ciphertext to the server in chunks of at most `chunk` bytes.
  void carryToServer(std::size_t chunk = 1 << 20) {
    char buf[4096];
    for (;;) {
      std::size_t room = 0;
      char* space = server.readSpace(&room);
      std::size_t want = std::min({room, chunk, sizeof buf});
      if (want == 0) return;
      int n = BIO_read(to_server, buf, static_cast<int>(want));
      if (n <= 0) return;
      std::memcpy(space, buf, static_cast<std::size_t>(n));
      server.received(static_cast<std::size_t>(n));
    }
  }
  // Exactly n bytes of client ciphertext (fewer if there are not as many).
  void carryBytes(std::size_t n) {
    std::size_t room = 0;
    char* space = server.readSpace(&room);
    int got = BIO_read(to_server, space, static_cast<int>(std::min(n, room)));
    if (got > 0) server.received(static_cast<std::size_t>(got));
  }
  // Server ciphertext to the client, as if the socket took it all at once.
  void carryToClient() {
    while (server.outLen()) {
      BIO_write(to_client, server.outData(), static_cast<int>(server.outLen()));
      server.sent(server.outLen());
    }
  }
  bool handshake() {
    for (int i = 0; i < 10; ++i) {
      int c = SSL_do_handshake(client);
      carryToServer();
      long s = server.handshaking() ? server.handshake() : 1;
      carryToClient();
      if (s == TlsStream::kError) return false;
      if (c == 1 && s == 1) return true;
    }
    return false;
  }
  // Everything the server can decrypt, `cap` bytes at a time.
  std::string serverReads(std::size_t cap) {
    std::string out;
    std::string buf(cap, '\0');
    for (;;) {
      long n = server.read(buf.data(), cap);
      if (n <= 0) break;
      out.append(buf.data(), static_cast<std::size_t>(n));
    }
    carryToClient();  // tickets and the like
    return out;
  }

  SSL* client;
  BIO* to_server;
  BIO* to_client;
  TlsStream server;
};

std::string peerCn(SSL* ssl) {
  X509* peer = SSL_get1_peer_certificate(ssl);
  if (!peer) return {};
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn);
  X509_free(peer);
  return cn;
}

TEST_F(TlsTest, SniChoosesTheCertificateAndTheFirstIsTheDefault) {
  auto ctx = load({a_, b_});
  ASSERT_TRUE(ctx);
  for (auto [sni, cn] : std::vector<std::pair<const char*, std::string>>{
           {"x.b.test", "*.b.test"}, {"a.test", "a.test"}, {"other.test", "a.test"}, {nullptr, "a.test"},
           {"b.test", "a.test"}}) {
    Pair p(client_ctx_, *ctx, pool_, sni);
    ASSERT_TRUE(p.handshake()) << (sni ? sni : "(none)");
    EXPECT_EQ(peerCn(p.client), cn) << (sni ? sni : "(none)");
  }
}

// The listener's tls.alpn, in its order: h2 first by default; a client
// that offers none of them gets no protocol (and speaks HTTP/1.1).
TEST_F(TlsTest, AlpnSelectsTheListenersFirstProtocolTheClientOffers) {
  static const unsigned char kBoth[] = "\x08http/1.1\x02h2";
  static const unsigned char kH11[] = "\x08http/1.1";
  static const unsigned char kOther[] = "\x06spdy/3";
  auto selected = [&](const TlsContext& ctx, const unsigned char* offer, unsigned len) {
    Pair p(client_ctx_, ctx, pool_, "a.test");
    SSL_set_alpn_protos(p.client, offer, len);
    EXPECT_TRUE(p.handshake());
    const unsigned char* proto = nullptr;
    unsigned n = 0;
    SSL_get0_alpn_selected(p.client, &proto, &n);
    return proto ? std::string(reinterpret_cast<const char*>(proto), n) : std::string();
  };
  auto ctx = load({a_});
  EXPECT_EQ(selected(*ctx, kBoth, sizeof kBoth - 1), "h2");
  EXPECT_EQ(selected(*ctx, kH11, sizeof kH11 - 1), "http/1.1");
  EXPECT_EQ(selected(*ctx, kOther, sizeof kOther - 1), "");

  conf::Listener l = listener({a_});
  l.alpn = {"http/1.1"};
  std::vector<std::string> errors;
  auto h11 = TlsContext::load(l, "listeners[0].tls", &errors);
  ASSERT_TRUE(errors.empty()) << errors[0];
  EXPECT_EQ(selected(*h11, kBoth, sizeof kBoth - 1), "http/1.1");
}

// A client that speaks only TLS 1.2 with `ciphers` (OpenSSL names).
struct Tls12Client {
  explicit Tls12Client(const char* ciphers) : ctx(SSL_CTX_new(TLS_client_method())) {
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    ok = SSL_CTX_set_cipher_list(ctx, ciphers) == 1;
  }
  ~Tls12Client() { SSL_CTX_free(ctx); }
  SSL_CTX* ctx;
  bool ok = false;
};

std::string cipherName(SSL* ssl) {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  return c ? SSL_CIPHER_get_name(c) : "";
}

TEST_F(TlsTest, Tls12RefusesCbcRsaKeyExchangeAndSha1Suites) {
  auto ctx = load({a_});
  for (const char* ciphers :
       {"ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384",  // CBC
        "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA",        // CBC with SHA-1
        "AES128-GCM-SHA256:AES256-GCM-SHA384",                  // RSA key exchange
        "AES128-SHA:AES256-SHA:DES-CBC3-SHA"}) {
    Tls12Client client(ciphers);
    ASSERT_TRUE(client.ok) << ciphers;
    Pair p(client.ctx, *ctx, pool_, "a.test");
    EXPECT_FALSE(p.handshake()) << ciphers << " was accepted";
  }
}

TEST_F(TlsTest, Tls12AcceptsEcdheWithGcmOrChaCha) {
  auto ctx = load({a_});  // a P-256 certificate: the ECDSA suites
  for (const char* cipher : {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                             "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
    Tls12Client client(cipher);
    ASSERT_TRUE(client.ok) << cipher;
    Pair p(client.ctx, *ctx, pool_, "a.test");
    ASSERT_TRUE(p.handshake()) << cipher;
    EXPECT_EQ(SSL_version(p.client), TLS1_2_VERSION);
    EXPECT_EQ(cipherName(p.client), cipher);
  }
}

TEST_F(TlsTest, Tls12TheServersOrderWins) {
  auto ctx = load({a_});
  // The client prefers CBC, then ChaCha, then AES-128-GCM; the server's list
  // puts AES-128-GCM first.
  Tls12Client client(
      "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256");
  ASSERT_TRUE(client.ok);
  Pair p(client.ctx, *ctx, pool_, "a.test");
  ASSERT_TRUE(p.handshake());
  EXPECT_EQ(cipherName(p.client), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

TEST_F(TlsTest, Tls13KeepsItsDefaultSuites) {
  auto ctx = load({a_});
  Pair p(client_ctx_, *ctx, pool_, "a.test");
  ASSERT_TRUE(p.handshake());
  EXPECT_EQ(SSL_version(p.client), TLS1_3_VERSION);
  const std::string name = cipherName(p.client);
  EXPECT_TRUE(name == "TLS_AES_256_GCM_SHA384" || name == "TLS_AES_128_GCM_SHA256" ||
              name == "TLS_CHACHA20_POLY1305_SHA256")
      << name;
}

TEST(TlsCiphers, TheListHasOnlyEcdheAead) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  ASSERT_EQ(SSL_CTX_set_cipher_list(ctx, kTls12Ciphers), 1);
  STACK_OF(SSL_CIPHER)* list = SSL_CTX_get_ciphers(ctx);
  int tls12 = 0;
  for (int i = 0; i < sk_SSL_CIPHER_num(list); ++i) {
    const SSL_CIPHER* c = sk_SSL_CIPHER_value(list, i);
    if (std::string(SSL_CIPHER_get_version(c)) == "TLSv1.3") continue;  // set apart
    ++tls12;
    EXPECT_EQ(SSL_CIPHER_get_kx_nid(c), NID_kx_ecdhe) << SSL_CIPHER_get_name(c);
    EXPECT_TRUE(SSL_CIPHER_is_aead(c)) << SSL_CIPHER_get_name(c);
  }
  EXPECT_EQ(tls12, 6);
  SSL_CTX_free(ctx);
}

TEST_F(TlsTest, GarbageFailsTheHandshake) {
  auto ctx = load({a_});
  TlsStream s(ctx->newSsl(), pool_, ctx);
  std::size_t room = 0;
  char* space = s.readSpace(&room);
  const char junk[] = "\x16\x03\x01\x00\x05hello-this-is-not-a-client-hello";
  std::memcpy(space, junk, sizeof junk);
  s.received(sizeof junk);
  EXPECT_EQ(s.firstByte(), 0x16);
  EXPECT_EQ(s.handshake(), TlsStream::kError);
  EXPECT_FALSE(s.error().empty());
}

TEST_F(TlsTest, BytesSurviveEveryChunkingBothWays) {
  auto ctx = load({a_});
  std::mt19937 rng(7);
  std::string data(300 * 1024, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1000}, std::size_t{1} << 20}) {
    Pair p(client_ctx_, *ctx, pool_, "a.test");
    ASSERT_TRUE(p.handshake());
    // Client to server: the server reads into a small buffer, as a full in_ would make it.
    const std::string& up = chunk == 1 ? data.substr(0, 20000) : data;
    std::string got;
    std::size_t off = 0;
    while (off < up.size()) {
      int n = SSL_write(p.client, up.data() + off, static_cast<int>(std::min<std::size_t>(up.size() - off, 5000)));
      ASSERT_GT(n, 0);
      off += static_cast<std::size_t>(n);
      while (BIO_ctrl_pending(p.to_server)) {
        p.carryToServer(chunk);
        got += p.serverReads(333);
        ASSERT_FALSE(p.server.buffered());
      }
    }
    EXPECT_EQ(got, up) << "chunk " << chunk;

    // Server to client: writes of any size, each taken as far as the buffer allows.
    std::string back;
    off = 0;
    char buf[16384];
    while (off < data.size()) {
      long w = p.server.write(data.data() + off, std::min<std::size_t>(data.size() - off, 40000));
      ASSERT_NE(w, TlsStream::kError);
      if (w > 0) off += static_cast<std::size_t>(w);
      if (w == TlsStream::kWantMore || off == data.size()) {
        p.carryToClient();
        int n;
        while ((n = SSL_read(p.client, buf, sizeof buf)) > 0) back.append(buf, static_cast<std::size_t>(n));
      }
    }
    EXPECT_EQ(back, data) << "chunk " << chunk;
  }
}

TEST_F(TlsTest, PlaintextLeftInsideIsBufferedUntilRead) {
  auto ctx = load({a_});
  Pair p(client_ctx_, *ctx, pool_, "a.test");
  ASSERT_TRUE(p.handshake());
  std::string msg(10000, 'x');
  ASSERT_EQ(SSL_write(p.client, msg.data(), static_cast<int>(msg.size())), static_cast<int>(msg.size()));
  p.carryToServer();
  char small[100];
  EXPECT_EQ(p.server.read(small, sizeof small), 100);
  EXPECT_TRUE(p.server.buffered()) << "the rest of the record waits inside";
  std::string rest = p.serverReads(4096);
  EXPECT_EQ(rest.size(), msg.size() - 100);
  EXPECT_FALSE(p.server.buffered());
  // Half a record: not "buffered" (no progress without the socket) until the rest comes.
  ASSERT_GT(SSL_write(p.client, msg.data(), 1000), 0);
  p.carryBytes(500);
  EXPECT_EQ(p.server.read(small, sizeof small), TlsStream::kWantMore);
  EXPECT_FALSE(p.server.buffered());
  p.carryToServer();
  EXPECT_EQ(p.serverReads(4096).size(), 1000u);
}

TEST_F(TlsTest, CiphertextOutgrowingItsBufferDuringAWriteKeepsTheBytesInFlight) {
  auto ctx = load({a_});
  Pair p(client_ctx_, *ctx, pool_, "a.test");
  ASSERT_TRUE(p.handshake());
  std::string first(15800, 'a');
  ASSERT_EQ(p.server.write(first.data(), first.size()), static_cast<long>(first.size()));
  // Hand it to a "socket" that will not finish yet: the bytes must stay put.
  std::string inflight(p.server.outData(), p.server.outLen());
  const char* where = p.server.outData();
  p.server.inFlight(p.server.outLen());
  EXPECT_TRUE(p.server.outInFlight());
  // More output meanwhile: a write (refused: no room) and a close_notify, which must grow.
  EXPECT_EQ(p.server.write(first.data(), first.size()), TlsStream::kWantMore);
  p.server.shutdown();
  EXPECT_GT(p.server.outLen(), 0u);
  EXPECT_EQ(std::string(where, inflight.size()), inflight) << "in-flight bytes moved or changed";
  p.server.written();
  BIO_write(p.to_client, inflight.data(), static_cast<int>(inflight.size()));
  p.carryToClient();
  std::string got(20000, '\0');
  int n = SSL_read(p.client, got.data(), static_cast<int>(got.size()));
  ASSERT_EQ(n, static_cast<int>(first.size()));
  EXPECT_EQ(got.substr(0, static_cast<std::size_t>(n)), first);
  EXPECT_LE(SSL_read(p.client, got.data(), 10), 0);
  EXPECT_EQ(SSL_get_error(p.client, -1), SSL_ERROR_ZERO_RETURN) << "close_notify after the data";
}

TEST_F(TlsTest, TheClientsCloseNotifyIsAnEnd) {
  auto ctx = load({a_});
  Pair p(client_ctx_, *ctx, pool_, "a.test");
  ASSERT_TRUE(p.handshake());
  SSL_write(p.client, "last", 4);
  SSL_shutdown(p.client);
  p.carryToServer();
  char buf[16];
  EXPECT_EQ(p.server.read(buf, sizeof buf), 4);
  EXPECT_EQ(p.server.read(buf, sizeof buf), TlsStream::kEof);
}

// ---------------------------------------------------------------------------
// Transports, with an owner that holds its read buffer and socket in memory.

struct MemoryOwner final : TransportOwner {
  explicit MemoryOwner(std::size_t cap) : buf(cap) {}
  bool plainRoom(char** data, std::size_t* len) override {
    if (used == buf.size()) return false;
    *data = buf.data() + used;
    *len = buf.size() - used;
    return true;
  }
  void plainAdded(std::size_t n) override { used += n; }
  int socketWrite(uv_buf_t* bufs, unsigned n) override {
    for (unsigned i = 0; i < n; ++i) wire.append(bufs[i].base, bufs[i].len);
    return queue_writes ? 1 : 0;  // queued: the bytes count as taken, the completion comes later
  }
  void plainWritten(int status) override { written.push_back(status); }
  uv_stream_t* socket() override { return nullptr; }
  void transportFailed(const char* what, const std::string&) override { failures.push_back(what); }
  std::string plain() {
    std::string out(buf.data(), used);
    used = 0;
    return out;
  }

  std::vector<char> buf;
  std::size_t used = 0;
  std::string wire;  // bytes handed to the socket
  bool queue_writes = false;
  std::vector<int> written;
  std::vector<std::string> failures;
};

TEST(TcpTransport, BytesLandInTheOwnersBufferAndWritesGoStraightToTheSocket) {
  MemoryOwner o(64);
  TcpTransport t(o);
  std::size_t len = 0;
  char* p = t.readSpace(&len);
  ASSERT_EQ(len, 64u);
  std::memcpy(p, "GET / HTTP/1.1\r\n", 16);
  Transport::Result r = t.received(16);
  EXPECT_TRUE(r.data);
  EXPECT_FALSE(r.eof);
  EXPECT_EQ(o.plain(), "GET / HTTP/1.1\r\n");
  EXPECT_TRUE(t.eof().eof);
  char a[] = "HTTP/1.1 ", b[] = "200 OK\r\n";
  uv_buf_t bufs[2] = {uv_buf_init(a, 9), uv_buf_init(b, 8)};
  EXPECT_EQ(t.write(bufs, 2), 0);
  EXPECT_EQ(o.wire, "HTTP/1.1 200 OK\r\n");
  o.used = 64;
  EXPECT_EQ(t.readSpace(&len), nullptr) << "a full buffer reads nothing";
  EXPECT_EQ(len, 0u);
  t.socketWritten(UV_EPIPE);
  EXPECT_EQ(o.written, std::vector<int>{UV_EPIPE});
  EXPECT_FALSE(t.handshaking());
  EXPECT_STREQ(t.tlsVersion(), "-");
}

// An OpenSSL client against a TlsTransport, ciphertext carried by hand.
struct TransportPair {
  TransportPair(SSL_CTX* client_ctx, const TlsContext& server_ctx, BufferPool& pool, std::size_t cap)
      : owner(cap), server(owner, server_ctx.newSsl(), pool, nullptr) {
    client = SSL_new(client_ctx);
    SSL_set_connect_state(client);
    SSL_set_tlsext_host_name(client, "a.test");
    to_server = BIO_new(BIO_s_mem());
    to_client = BIO_new(BIO_s_mem());
    SSL_set_bio(client, to_client, to_server);
  }
  ~TransportPair() { SSL_free(client); }
  // Client ciphertext to the server; what it brought, merged.
  Transport::Result toServer() {
    Transport::Result all;
    char buf[4096];
    for (;;) {
      std::size_t room = 0;
      char* space = server.readSpace(&room);
      int n = room ? BIO_read(to_server, buf, static_cast<int>(std::min(room, sizeof buf))) : 0;
      if (n <= 0) return all;
      std::memcpy(space, buf, static_cast<std::size_t>(n));
      Transport::Result r = server.received(static_cast<std::size_t>(n));
      all.data |= r.data;
      all.eof |= r.eof;
      all.handshook |= r.handshook;
      if (r.fault != Transport::Fault::kNone) all.fault = r.fault;
    }
  }
  void toClient() {
    BIO_write(to_client, owner.wire.data(), static_cast<int>(owner.wire.size()));
    owner.wire.clear();
  }
  bool handshake() {
    int handshakes = 0;
    for (int i = 0; i < 10; ++i) {
      int c = SSL_do_handshake(client);
      Transport::Result r = toServer();
      handshakes += r.handshook;
      toClient();
      if (r.fault != Transport::Fault::kNone) return false;
      if (c == 1 && !server.handshaking()) return handshakes == 1;
    }
    return false;
  }
  std::string clientReads() {
    std::string out;
    char buf[4096];
    int n;
    while ((n = SSL_read(client, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

  MemoryOwner owner;
  TlsTransport server;
  SSL* client;
  BIO* to_server;
  BIO* to_client;
};

TEST_F(TlsTest, TlsTransportCarriesPlaintextBothWaysAndKeepsOwnBytesInOrder) {
  auto ctx = load({a_});
  TransportPair p(client_ctx_, *ctx, pool_, 1 << 16);
  EXPECT_TRUE(p.server.handshaking());
  ASSERT_TRUE(p.handshake());
  EXPECT_STRNE(p.server.tlsVersion(), "-");
  SSL_write(p.client, "GET / HTTP/1.1\r\n\r\n", 18);
  Transport::Result r = p.toServer();
  EXPECT_TRUE(r.data);
  EXPECT_FALSE(r.handshook);
  EXPECT_EQ(p.owner.plain(), "GET / HTTP/1.1\r\n\r\n");
  // A queued socket write: write() answers 1, and plainWritten follows its completion.
  p.owner.queue_writes = true;
  char body[] = "HTTP/1.1 101 Switching Protocols\r\n\r\n";
  uv_buf_t b = uv_buf_init(body, sizeof body - 1);
  EXPECT_EQ(p.server.write(&b, 1), 1);
  p.server.writeOwn("\x88\x02\x03\xe8", 4);  // a close frame, after the head
  EXPECT_TRUE(p.owner.written.empty());
  p.server.socketWritten(0);  // the head's write; the close frame's is queued behind it
  EXPECT_TRUE(p.owner.written.empty()) << "done once everything before is written";
  p.owner.queue_writes = false;
  p.server.socketWritten(0);
  EXPECT_EQ(p.owner.written, std::vector<int>{0});
  p.toClient();
  EXPECT_EQ(p.clientReads(), std::string(body) + "\x88\x02\x03\xe8");
  EXPECT_TRUE(p.owner.failures.empty());
}

TEST_F(TlsTest, TlsTransportWaitsWithWhatTheOwnerHasNoRoomFor) {
  auto ctx = load({a_});
  TransportPair p(client_ctx_, *ctx, pool_, 10);
  ASSERT_TRUE(p.handshake());
  SSL_write(p.client, "0123456789abcdefghij", 20);
  SSL_shutdown(p.client);
  Transport::Result r = p.toServer();
  EXPECT_TRUE(r.data);
  EXPECT_FALSE(r.eof) << "the end comes after the bytes still held";
  EXPECT_EQ(p.owner.plain(), "0123456789");
  EXPECT_TRUE(p.server.buffered());
  r = p.server.resume();
  EXPECT_TRUE(r.data);
  EXPECT_EQ(p.owner.plain(), "abcdefghij");
  r = p.server.resume();
  EXPECT_TRUE(r.eof) << "the client's close_notify";
}

TEST_F(TlsTest, TlsTransportTellsPlainHttpAndBrokenHandshakesApart) {
  auto ctx = load({a_});
  {
    MemoryOwner o(64);
    TlsTransport t(o, ctx->newSsl(), pool_, nullptr);
    std::size_t room = 0;
    char* p = t.readSpace(&room);
    std::memcpy(p, "GET / HTTP/1.1\r\n", 16);
    EXPECT_EQ(t.received(16).fault, Transport::Fault::kNotTls);
  }
  {
    MemoryOwner o(64);
    TlsTransport t(o, ctx->newSsl(), pool_, nullptr);
    std::size_t room = 0;
    char* p = t.readSpace(&room);
    std::memcpy(p, "\x16\x03\x01\x00\x05\x00\x00\x00\x00\x00", 10);  // a ClientHello that is not one
    EXPECT_EQ(t.received(10).fault, Transport::Fault::kHandshake);
    EXPECT_GT(o.wire.size(), 0u) << "the alert";
    EXPECT_FALSE(t.error().empty());
  }
}

// ---------------------------------------------------------------------------
// The client side: https:// backends

conf::Config httpsBackends(std::vector<std::optional<conf::ClientTls>> own, conf::ClientTls fallback = {}) {
  conf::Config c;
  c.backend_tls = fallback;
  for (std::size_t i = 0; i < own.size(); ++i) {
    conf::BackendConf b;
    b.scheme = "https";
    b.address = {"127.0.0.1", static_cast<std::uint16_t>(8000 + i)};
    b.tls = own[i] ? *own[i] : fallback;
    b.tls_own = own[i].has_value();
    c.backends.push_back(b);
  }
  return c;
}

TEST_F(TlsTest, BackendTlsErrorsNameTheirPathAndTheDefaultsOnce) {
  std::vector<std::string> errors;
  conf::ClientTls missing_ca;
  missing_ca.ca = dir_ + "/missing.pem";
  auto ctxs = loadBackendTls(httpsBackends({missing_ca}), &errors);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].rfind("backends[0].tls.ca: " + dir_ + "/missing.pem: cannot read", 0), 0u) << errors[0];
  EXPECT_EQ(ctxs[0], nullptr);

  errors.clear();
  conf::ClientTls wrong_key;
  wrong_key.ca = a_.cert;
  wrong_key.cert = a_.cert;
  wrong_key.key = b_.key;
  ctxs = loadBackendTls(httpsBackends({std::nullopt, std::nullopt}, wrong_key), &errors);
  ASSERT_EQ(errors.size(), 1u) << "one default, one error";
  EXPECT_EQ(errors[0].rfind("backend_tls.key: " + b_.key + ": does not match the certificate", 0), 0u) << errors[0];

  errors.clear();
  conf::Config plain = httpsBackends({conf::ClientTls{}});
  plain.backends[0].scheme = "http";
  plain.backends[0].tls.reset();
  ctxs = loadBackendTls(plain, &errors);
  EXPECT_TRUE(errors.empty());
  ASSERT_EQ(ctxs.size(), 1u);
  EXPECT_EQ(ctxs[0], nullptr);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

// A client TlsStream (from a TlsClientContext) and a server one, the bytes
// carried by hand both ways.
struct ClientServer {
  ClientServer(SSL* client_ssl, SSL* server_ssl, BufferPool& pool)
      : client(client_ssl, pool, nullptr), server(server_ssl, pool, nullptr), client_ssl(client_ssl) {}
  static void carry(TlsStream& from, TlsStream& to) {
    while (from.outLen()) {
      std::size_t room = 0;
      char* space = to.readSpace(&room);
      std::size_t n = std::min(room, from.outLen());
      std::memcpy(space, from.outData(), n);
      from.sent(n);
      to.received(n);
    }
  }
  bool handshake() {
    for (int i = 0; i < 10; ++i) {
      long c = client.handshaking() ? client.handshake() : 1;
      carry(client, server);
      long s = server.handshaking() ? server.handshake() : 1;
      carry(server, client);
      if (c == TlsStream::kError || s == TlsStream::kError) return false;
      if (c == 1 && s == 1) return true;
    }
    return false;
  }
  // A request and its answer, so that the TLS 1.3 tickets reach the client.
  std::string exchange() {
    const char req[] = "GET / HTTP/1.1";
    EXPECT_GT(client.write(req, sizeof req - 1), 0);
    carry(client, server);
    char buf[256];
    long n = server.read(buf, sizeof buf);
    EXPECT_EQ(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0), req);
    EXPECT_GT(server.write("ok", 2), 0);
    carry(server, client);
    n = client.read(buf, sizeof buf);
    return std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  TlsStream client;
  TlsStream server;
  SSL* client_ssl;
};

TEST_F(TlsTest, ABackendsSessionIsResumedOnTheNextConnection) {
  std::vector<std::string> errors;
  conf::ClientTls tls;
  tls.ca = a_.cert;  // self-signed: its own CA
  tls.server_name = "a.test";
  auto client_ctx = TlsClientContext::load(tls, "backend_tls", &errors, "http/1.1");
  ASSERT_TRUE(errors.empty()) << errors[0];
  auto server_ctx = load({a_});
  TlsSessionCache cache;
  {
    ClientServer first(client_ctx->newSsl("", &cache), server_ctx->newSsl(), pool_);
    ASSERT_TRUE(first.handshake());
    EXPECT_FALSE(SSL_session_reused(first.client_ssl));
    EXPECT_EQ(first.exchange(), "ok");
    const unsigned char* proto = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(first.client_ssl, &proto, &len);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(proto), len), "http/1.1");
    // Freed without a close_notify, as a backend's keep-alive timeout ends it.
  }
  ASSERT_NE(cache.get(client_ctx.get()), nullptr) << "the server's ticket was kept";
  ClientServer second(client_ctx->newSsl("", &cache), server_ctx->newSsl(), pool_);
  ASSERT_TRUE(second.handshake());
  EXPECT_TRUE(SSL_session_reused(second.client_ssl));
  EXPECT_EQ(second.exchange(), "ok");
  // Another context's session (a reload changed the backend's TLS) is not offered.
  auto other_ctx = TlsClientContext::load(tls, "backend_tls", &errors, "http/1.1");
  EXPECT_EQ(cache.get(other_ctx.get()), nullptr);
}

TEST_F(TlsTest, ABackendCertificateForAnotherNameFailsWithTheReason) {
  std::vector<std::string> errors;
  conf::ClientTls tls;
  tls.ca = a_.cert;
  tls.server_name = "not-a.test";
  auto client_ctx = TlsClientContext::load(tls, "backend_tls", &errors, "http/1.1");
  ASSERT_TRUE(errors.empty());
  auto server_ctx = load({a_});
  ClientServer c(client_ctx->newSsl(""), server_ctx->newSsl(), pool_);
  EXPECT_FALSE(c.handshake());
  EXPECT_EQ(tlsClientFailure(c.client_ssl, c.client.error()), "certificate verify failed: hostname mismatch");
}

}  // namespace
}  // namespace tether::proxy
