#include "proxy/redis_client.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <algorithm>
#include <cstdarg>
#include <cstring>
#include <utility>
#include <vector>

#include "proxy/io/tls.h"
#include "proxy/io/tls_client.h"

namespace tether::proxy {
namespace {

constexpr std::int64_t kPingIntervalMs = 1'000;
constexpr std::size_t kReadSize = 16 * 1024;

std::string errorText(const redisReply* r) { return std::string(r->str, r->len); }

bool isString(const redisReply* r, const char* s) {
  return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == std::strlen(s) &&
         std::memcmp(r->str, s, r->len) == 0;
}

}  // namespace

RedisConnection* RedisConnection::open(uv_loop_t* loop, Options o, Listener* listener, BufferPool& pool) {
  auto* c = new RedisConnection(loop, std::move(o), listener, pool);
  c->start();
  return c;
}

RedisConnection::RedisConnection(uv_loop_t* loop, Options o, Listener* listener, BufferPool& pool)
    : loop_(loop), opts_(std::move(o)), listener_(listener), pool_(pool) {
  started_ms_ = static_cast<std::int64_t>(uv_now(loop_));
  reader_ = redisReaderCreate();
}

RedisConnection::~RedisConnection() {
  if (reader_) redisReaderFree(reader_);
}

void RedisConnection::start() {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  ++pending_;
  std::int64_t tick = std::clamp<std::int64_t>(opts_.reply_timeout_ms / 4, 10, 250);
  tick = std::min<std::int64_t>(tick, std::max<std::int64_t>(opts_.connect_timeout_ms / 2, 10));
  uv_timer_start(&timer_, onTimer, static_cast<std::uint64_t>(tick), static_cast<std::uint64_t>(tick));
  if (!reader_) return failSoon({"out of memory"});
  queueHello();

  // An address needs no resolver thread.
  sockaddr_storage ss{};
  const std::string& host = opts_.address.host;
  if (uv_ip4_addr(host.c_str(), opts_.address.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
      uv_ip6_addr(host.c_str(), opts_.address.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0) {
    state_ = State::kConnecting;
    dial(reinterpret_cast<sockaddr*>(&ss));
    return;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  gai_.data = this;
  std::string port = std::to_string(opts_.address.port);
  int rc = uv_getaddrinfo(loop_, &gai_, onResolved, host.c_str(), port.c_str(), &hints);
  if (rc != 0) return failSoon({std::string("cannot resolve: ") + uv_strerror(rc)});
  resolving_ = true;
  ++pending_;
}

void RedisConnection::onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* c = static_cast<RedisConnection*>(req->data);
  c->resolving_ = false;
  if (c->state_ == State::kClosed) {
    uv_freeaddrinfo(res);
    return c->release();
  }
  --c->pending_;
  if (status != 0 || !res) {
    uv_freeaddrinfo(res);
    return c->fail({std::string("cannot resolve: ") + uv_strerror(status)});
  }
  c->state_ = State::kConnecting;
  c->dial(res->ai_addr);
  uv_freeaddrinfo(res);
}

void RedisConnection::dial(const sockaddr* addr) {
  int rc = uv_tcp_init(loop_, &tcp_);
  if (rc != 0) return failSoon({std::string("cannot connect: ") + uv_strerror(rc)});
  tcp_.data = this;
  tcp_init_ = true;
  ++pending_;
  uv_tcp_nodelay(&tcp_, 1);
  uv_tcp_keepalive(&tcp_, 1, 15);
  connect_req_.data = this;
  rc = uv_tcp_connect(&connect_req_, &tcp_, addr, onConnect);
  if (rc != 0) failSoon({std::string("cannot connect: ") + uv_strerror(rc)});
}

void RedisConnection::onConnect(uv_connect_t* req, int status) {
  auto* c = static_cast<RedisConnection*>(req->data);
  if (c->state_ == State::kClosed) return;  // closing: tcp's close callback releases
  if (status != 0) return c->fail({std::string("cannot connect: ") + uv_strerror(status)});
  c->connected();
}

void RedisConnection::connected() {
  if (opts_.tls) {
    ssl_ = opts_.tls->newSsl(opts_.address.host);
    if (!ssl_) return fail({"TLS: cannot set up the connection"});
    tls_ = std::make_unique<TlsStream>(ssl_, pool_, nullptr);
  } else {
    read_buf_.reset(new char[kReadSize]);
  }
  int rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  if (rc != 0) return fail({std::string("cannot read: ") + uv_strerror(rc)});
  if (!tls_) {
    enterHello();
    return flush();
  }
  state_ = State::kTlsHandshake;
  if (tls_->handshake() == TlsStream::kError) return fail({"TLS handshake: " + tlsClientFailure(ssl_, tls_->error())});
  flushTls();  // the ClientHello
}

// The hello's replies are due reply_timeout after it goes out, not after
// the dial began (timeouts.connect bounds that part).
void RedisConnection::enterHello() {
  state_ = State::kHello;
  std::int64_t now = static_cast<std::int64_t>(uv_now(loop_));
  for (InFlight& f : in_flight_) f.sent_ms = now;
}

// The hello goes first; the owner's commands queue behind it.
void RedisConnection::queueHello() {
  char* cmd = nullptr;
  int len = -1;
  auto add = [&](Hello h) {
    if (len < 0 || !cmd) return;
    append(cmd, static_cast<std::size_t>(len), nullptr, nullptr, h);
    redisFreeCommand(cmd);
    cmd = nullptr;
  };
  if (!opts_.password.empty()) {
    len = opts_.username.empty()
              ? redisFormatCommand(&cmd, "AUTH %b", opts_.password.data(), opts_.password.size())
              : redisFormatCommand(&cmd, "AUTH %b %b", opts_.username.data(), opts_.username.size(),
                                   opts_.password.data(), opts_.password.size());
    add(Hello::kAuth);
  }
  if (opts_.db) {
    len = redisFormatCommand(&cmd, "SELECT %u", opts_.db);
    add(Hello::kSelect);
  }
  len = redisFormatCommand(&cmd, opts_.expect_master ? "ROLE" : "PING");
  add(opts_.expect_master ? Hello::kRole : Hello::kPing);
}

void RedisConnection::append(const char* cmd, std::size_t len, Callback cb, void* priv, Hello hello) {
  out_.append(cmd, len);
  std::int64_t now = static_cast<std::int64_t>(uv_now(loop_));
  in_flight_.push_back(InFlight{cb, priv, now, hello});
  last_sent_ms_ = now;
}

bool RedisConnection::command(Callback cb, void* priv, const char* format, ...) {
  if (state_ == State::kClosed || fail_soon_) return false;
  char* cmd = nullptr;
  va_list ap;
  va_start(ap, format);
  int len = redisvFormatCommand(&cmd, format, ap);
  va_end(ap);
  if (len < 0 || !cmd) return false;
  append(cmd, static_cast<std::size_t>(len), cb, priv, Hello::kNone);
  redisFreeCommand(cmd);
  if (state_ == State::kReady) flush();
  return true;
}

bool RedisConnection::commandArgv(Callback cb, void* priv, const std::vector<std::string>& words) {
  if (state_ == State::kClosed || fail_soon_ || words.empty()) return false;
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(words.size());
  lens.reserve(words.size());
  for (const std::string& w : words) {
    argv.push_back(w.data());
    lens.push_back(w.size());
  }
  char* cmd = nullptr;
  int len = redisFormatCommandArgv(&cmd, static_cast<int>(words.size()), argv.data(), lens.data());
  if (len < 0 || !cmd) return false;
  append(cmd, static_cast<std::size_t>(len), cb, priv, Hello::kNone);
  redisFreeCommand(cmd);
  if (state_ == State::kReady) flush();
  return true;
}

bool RedisConnection::subscribe(const std::string& channel, Callback cb, void* priv) {
  if (!command(cb, priv, "SUBSCRIBE %b", channel.data(), channel.size())) return false;
  subscribed_ = true;
  return true;
}

void RedisConnection::flush() {
  if (state_ == State::kClosed || fail_soon_) return;
  if (tls_) return flushTls();
  if (state_ == State::kHello || state_ == State::kReady) flushPlain();
}

void RedisConnection::flushPlain() {
  if (writing_ || out_pos_ == out_.size()) return;
  uv_buf_t b = uv_buf_init(out_.data() + out_pos_, static_cast<unsigned>(out_.size() - out_pos_));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
  if (n < 0 && n != UV_EAGAIN) return failSoon({std::string("write failed: ") + uv_strerror(n)});
  if (n > 0) out_pos_ += static_cast<std::size_t>(n);
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    return;
  }
  // The rest waits for the socket; commands queued meanwhile follow it.
  writing_buf_.assign(out_, out_pos_, std::string::npos);
  out_.clear();
  out_pos_ = 0;
  write_req_.data = this;
  uv_buf_t w = uv_buf_init(writing_buf_.data(), static_cast<unsigned>(writing_buf_.size()));
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &w, 1, onWritten);
  if (rc != 0) return failSoon({std::string("write failed: ") + uv_strerror(rc)});
  writing_ = true;
}

// Plaintext into records (once the handshake is done), then the ciphertext
// out: at once as far as the socket takes it, the rest in one queued write.
void RedisConnection::flushTls() {
  while (true) {
    if (!tls_->handshaking()) {
      while (out_pos_ < out_.size()) {
        long n = tls_->write(out_.data() + out_pos_, out_.size() - out_pos_);
        if (n == TlsStream::kWantMore) break;
        if (n < 0) return failSoon({"TLS: " + tls_->error()});
        out_pos_ += static_cast<std::size_t>(n);
      }
      if (out_pos_ == out_.size()) {
        out_.clear();
        out_pos_ = 0;
      }
    }
    if (tls_->outInFlight() || tls_->outLen() == 0) return;
    uv_buf_t b = uv_buf_init(const_cast<char*>(tls_->outData()), static_cast<unsigned>(tls_->outLen()));
    int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
    if (n < 0 && n != UV_EAGAIN) return failSoon({std::string("write failed: ") + uv_strerror(n)});
    if (n > 0) tls_->sent(static_cast<std::size_t>(n));
    if (tls_->outLen() == 0) {
      if (out_pos_ == out_.size()) return;
      continue;  // room again for the plaintext that did not fit
    }
    uv_buf_t w = uv_buf_init(const_cast<char*>(tls_->outData()), static_cast<unsigned>(tls_->outLen()));
    write_req_.data = this;
    int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &w, 1, onWritten);
    if (rc != 0) return failSoon({std::string("write failed: ") + uv_strerror(rc)});
    tls_->inFlight(tls_->outLen());
    writing_ = true;
    return;
  }
}

void RedisConnection::onWritten(uv_write_t* req, int status) {
  auto* c = static_cast<RedisConnection*>(req->data);
  c->writing_ = false;
  if (c->tls_) c->tls_->written();
  c->writing_buf_.clear();
  if (c->state_ == State::kClosed) return;
  if (status != 0) return c->fail({std::string("write failed: ") + uv_strerror(status)});
  c->flush();
}

void RedisConnection::onAlloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) {
  auto* c = static_cast<RedisConnection*>(h->data);
  if (c->tls_) {
    std::size_t len = 0;
    char* p = c->tls_->readSpace(&len);
    *buf = uv_buf_init(p, static_cast<unsigned>(len));
  } else {
    *buf = uv_buf_init(c->read_buf_.get(), static_cast<unsigned>(kReadSize));
  }
}

void RedisConnection::onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<RedisConnection*>(s->data);
  if (c->state_ == State::kClosed) return;
  if (n == UV_EOF) return c->fail({"closed by the server"});
  if (n < 0) return c->fail({std::string("read failed: ") + uv_strerror(static_cast<int>(n))});
  if (n == 0) return;
  if (!c->tls_) return c->received(buf->base, static_cast<std::size_t>(n));
  c->tls_->received(static_cast<std::size_t>(n));
  c->receivedCipher();
}

void RedisConnection::receivedCipher() {
  if (tls_->handshaking()) {
    long r = tls_->handshake();
    if (r == TlsStream::kError) return fail({"TLS handshake: " + tlsClientFailure(ssl_, tls_->error())});
    if (r != 1) return flushTls();
    enterHello();
  }
  char plain[kReadSize];
  while (state_ != State::kClosed) {
    long n = tls_->read(plain, sizeof plain);
    if (n == TlsStream::kWantMore) break;
    if (n == TlsStream::kEof) return fail({"closed by the server (TLS close_notify)"});
    if (n < 0) return fail({"TLS: " + tls_->error()});
    received(plain, static_cast<std::size_t>(n));
  }
  if (state_ != State::kClosed) flushTls();  // the hello after the handshake; TLS 1.3 may answer too
}

void RedisConnection::received(const char* data, std::size_t n) {
  if (redisReaderFeed(reader_, data, n) != REDIS_OK) return fail({"protocol error"});
  while (state_ != State::kClosed) {
    void* r = nullptr;
    if (redisReaderGetReply(reader_, &r) != REDIS_OK) {
      return fail({std::string("protocol error: ") + reader_->errstr});
    }
    if (!r) break;
    auto* reply = static_cast<redisReply*>(r);
    dispatch(reply);
    freeReplyObject(reply);
  }
}

void RedisConnection::dispatch(redisReply* reply) {
  if (subscribed_ && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 3 &&
      (isString(reply->element[0], "message") || isString(reply->element[0], "pmessage"))) {
    listener_->onRedisPush(this, reply);
    return;
  }
  if (in_flight_.empty()) return fail({"a reply to no command"});
  InFlight f = in_flight_.front();
  in_flight_.pop_front();
  if (f.hello != Hello::kNone) return onHello(f.hello, reply);
  if (f.cb) f.cb(f.priv, reply);
}

void RedisConnection::onHello(Hello h, redisReply* reply) {
  // Redis's error replies never carry the password (WRONGPASS, NOAUTH, ERR
  // invalid password): they can be logged as they are.
  bool error = reply->type == REDIS_REPLY_ERROR;
  switch (h) {
    case Hello::kAuth:
      if (error && !opts_.auth_optional) return fail({"AUTH refused: " + errorText(reply)});
      return;
    case Hello::kSelect:
      if (error) return fail({"SELECT " + std::to_string(opts_.db) + " refused: " + errorText(reply)});
      return;
    case Hello::kRole:
      if (error) return fail({"ROLE refused: " + errorText(reply)});
      if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0 || !isString(reply->element[0], "master")) {
        std::string role = reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
                                   reply->element[0]->type == REDIS_REPLY_STRING
                               ? errorText(reply->element[0])
                               : "?";
        return fail({"not the master (ROLE: " + role + ")"});
      }
      break;
    case Hello::kPing:
      // NOPERM (an ACL user without +ping) still shows a live, authenticated server.
      if (error && !(reply->len >= 6 && std::memcmp(reply->str, "NOPERM", 6) == 0))
        return fail({"PING refused: " + errorText(reply)});
      break;
    case Hello::kNone:
      return;
  }
  state_ = State::kReady;
  flush();  // what the owner queued meanwhile
  if (state_ == State::kReady) listener_->onRedisReady(this);
}

void RedisConnection::onTimer(uv_timer_t* t) { static_cast<RedisConnection*>(t->data)->tick(); }

void RedisConnection::tick() {
  if (state_ == State::kClosed) return;
  if (fail_soon_) return fail(*std::exchange(fail_soon_, std::nullopt));
  std::int64_t now = static_cast<std::int64_t>(uv_now(loop_));
  if (state_ != State::kReady && now - started_ms_ >= opts_.connect_timeout_ms) {
    return fail({"no answer within timeouts.connect", opts_.connect_timeout_ms});
  }
  if (state_ == State::kHello || state_ == State::kReady) {
    if (!in_flight_.empty() && now - in_flight_.front().sent_ms >= opts_.reply_timeout_ms) {
      return fail({"no reply within affinity.redis.reply_timeout", opts_.reply_timeout_ms});
    }
  }
  if (state_ == State::kReady && in_flight_.empty() && now - last_sent_ms_ >= kPingIntervalMs) {
    char* cmd = nullptr;
    int len = redisFormatCommand(&cmd, "PING");
    if (len > 0 && cmd) {
      append(cmd, static_cast<std::size_t>(len), nullptr, nullptr, Hello::kNone);
      redisFreeCommand(cmd);
      flush();
    }
  }
}

void RedisConnection::failSoon(RedisFailure f) {
  if (state_ == State::kClosed || fail_soon_) return;
  fail_soon_ = std::move(f);
  uv_timer_start(&timer_, onTimer, 0, 250);
}

void RedisConnection::fail(RedisFailure f) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  closeHandles();
  listener_->onRedisClosed(this, f);
  std::deque<InFlight> left;
  left.swap(in_flight_);
  for (InFlight& i : left) {
    if (i.cb) i.cb(i.priv, nullptr);
  }
  release();
}

void RedisConnection::close() {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  closeHandles();
  std::deque<InFlight> left;
  left.swap(in_flight_);
  for (InFlight& i : left) {
    if (i.cb) i.cb(i.priv, nullptr);
  }
  release();
}

// The connection is freed when the last of its handles has closed and its
// resolver request (if any) came back. `pending_` counts them, plus one for
// the call that closed it (release()).
void RedisConnection::closeHandles() {
  ++pending_;  // released by fail() or close() once they are done with `this`
  auto closed = [](uv_handle_t* h) { static_cast<RedisConnection*>(h->data)->release(); };
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
  if (tcp_init_) uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), closed);
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&gai_));  // onResolved releases
}

void RedisConnection::release() {
  if (--pending_ == 0) delete this;
}

std::optional<conf::HostPort> parseSwitchMaster(std::string_view payload, std::string_view master_name) {
  std::vector<std::string_view> parts;
  while (!payload.empty()) {
    std::size_t sp = payload.find(' ');
    std::string_view word = payload.substr(0, sp);
    if (!word.empty()) parts.push_back(word);
    if (sp == std::string_view::npos || parts.size() > 5) break;
    payload.remove_prefix(sp + 1);
  }
  if (parts.size() != 5 || parts[0] != master_name) return std::nullopt;
  unsigned port = 0;
  for (char ch : parts[4]) {
    if (ch < '0' || ch > '9' || port > 65535) return std::nullopt;
    port = port * 10 + static_cast<unsigned>(ch - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  return conf::HostPort{std::string(parts[3]), static_cast<std::uint16_t>(port)};
}

}  // namespace tether::proxy
