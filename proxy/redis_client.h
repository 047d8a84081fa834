// One connection to one Redis server or sentinel, on one loop, in plain TCP
// or TLS: the transport under the pin store (pin_store.h).
//
// hiredis (0.14, Debian 12) formats the commands (redisvFormatCommand) and
// parses the replies (redisReader); the I/O is ours, on libuv, with the
// listeners' sans-I/O record layer (TlsStream, io/tls.h) between the bytes
// and the socket when TLS is on. Why not hiredis's async context: 0.14 has
// no TLS, and that context dials its socket itself. There is no call that
// hands it a descriptor (no redisAsyncConnectFd; redisAsyncConnectUnix wants
// a path), so a TLS bridge under it would need a listening socket that
// hiredis dials, and a loopback or unix listener exposes the plaintext
// (with the password in AUTH) to every local user able to connect or to
// race for the path. Driving hiredis's reader and formatter directly needs
// no socket at all, gives plain and TLS one code path, and puts the
// deadlines (connect, reply) under our control.
//
// A connection opens, says hello (AUTH when a password is set, SELECT for a
// database other than 0, then ROLE when it must reach a master, else PING)
// and is ready once every hello reply came back right: a server that
// accepts but does not answer, refuses the password or is a replica never
// becomes ready. Commands are pipelined; replies come back in order.
// Idle, it sends PING once a second, and a command left without a reply for
// reply_timeout ends the connection: a Redis stopped with SIGSTOP is seen.
//
// Thread: everything on the loop of open(). Lifetime: the connection frees
// itself once its handles are closed, after close() or after it told the
// listener onRedisClosed(); the owner forgets its pointer at either point.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/io/buffer_pool.h"

struct redisReader;
struct redisReply;
typedef struct ssl_st SSL;

namespace tether::proxy {

class TlsClientContext;
class TlsStream;

// Why a connection ended, for the log: never the password.
struct RedisFailure {
  std::string why;
  std::int64_t timeout_ms = 0;  // set when a deadline ran out (the timeout that did)
};

class RedisConnection {
 public:
  struct Options {
    conf::HostPort address;
    std::shared_ptr<const TlsClientContext> tls;  // nullptr: plain TCP
    std::string username;                         // AUTH username password (ACL), or AUTH password
    std::string password;                         // "" = no AUTH
    bool auth_optional = false;                   // a refused AUTH is ignored (sentinels without a password)
    std::uint32_t db = 0;
    bool expect_master = false;  // ROLE must answer "master"
    std::int64_t connect_timeout_ms = 5'000;  // dial, TLS handshake and hello
    std::int64_t reply_timeout_ms = 2'000;
  };

  // Told on the connection's loop; never from inside open(), command() or
  // close(). onRedisClosed is the last call: the connection is gone after it
  // returns, and every command still in flight then gets its callback with a
  // null reply.
  class Listener {
   public:
    virtual void onRedisReady(RedisConnection* c) = 0;
    virtual void onRedisClosed(RedisConnection* c, const RedisFailure& f) = 0;
    // A pub/sub message (["message", channel, payload]) after subscribe().
    virtual void onRedisPush(RedisConnection*, redisReply*) {}

   protected:
    ~Listener() = default;
  };

  // A reply, or nullptr when the connection went away first (closed, or
  // failed). `reply` lives for the call only. A callback may call close().
  using Callback = void (*)(void* priv, redisReply* reply);

  // Starts resolving and dialling `o.address`. `pool` lends the TLS record
  // buffers and must outlive the connection.
  static RedisConnection* open(uv_loop_t* loop, Options o, Listener* listener, BufferPool& pool);

  // Queues a command (printf-like, hiredis's %s %b %d %lld) and writes it at
  // once if the connection is ready; before that, it goes out after the
  // hello. cb may be null (the reply is dropped). False when the command
  // cannot be formatted or the connection is closing (cb is not called).
  bool command(Callback cb, void* priv, const char* format, ...);
  // The same for a command whose words are given one by one (binary-safe).
  bool commandArgv(Callback cb, void* priv, const std::vector<std::string>& words);
  // Sends SUBSCRIBE channel; cb gets its confirmation (["subscribe",
  // channel, count]) or an error. From then on messages (["message",
  // channel, payload]) go to onRedisPush, between the replies to whatever
  // else is in flight (PING, which Redis answers ["pong", ""] there). A
  // subscription lasts as long as the connection: the owner subscribes
  // again on the connection that replaces a failed one.
  bool subscribe(const std::string& channel, Callback cb, void* priv);

  // Ends the connection: every callback in flight runs now with a null
  // reply; the listener is not told. Idempotent.
  void close();

  bool ready() const { return state_ == State::kReady; }
  const conf::HostPort& address() const { return opts_.address; }

 private:
  enum class State { kResolving, kConnecting, kTlsHandshake, kHello, kReady, kClosed };
  enum class Hello { kNone, kAuth, kSelect, kRole, kPing };
  struct InFlight {
    Callback cb;
    void* priv;
    std::int64_t sent_ms;
    Hello hello;
  };

  RedisConnection(uv_loop_t* loop, Options o, Listener* listener, BufferPool& pool);
  ~RedisConnection();

  void start();
  void dial(const sockaddr* addr);
  void connected();
  void enterHello();
  void queueHello();
  void append(const char* cmd, std::size_t len, Callback cb, void* priv, Hello hello);
  void flush();
  void flushPlain();
  void flushTls();
  void received(const char* data, std::size_t n);
  void receivedCipher();
  void dispatch(redisReply* reply);
  void onHello(Hello h, redisReply* reply);
  void tick();
  // Ends the connection on an error: listener first, then the callbacks.
  void fail(RedisFailure f);
  // For errors met inside command() or flush() when called by the owner:
  // the listener hears of it from the timer, not from inside its own call.
  void failSoon(RedisFailure f);
  void closeHandles();
  void release();

  static void onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void onConnect(uv_connect_t* req, int status);
  static void onAlloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void onWritten(uv_write_t* req, int status);
  static void onTimer(uv_timer_t* t);

  uv_loop_t* loop_;
  Options opts_;
  Listener* listener_;
  BufferPool& pool_;
  State state_ = State::kResolving;
  uv_getaddrinfo_t gai_{};
  uv_connect_t connect_req_{};
  uv_tcp_t tcp_{};
  uv_timer_t timer_{};
  uv_write_t write_req_{};
  int pending_ = 0;  // handles not yet closed and requests not yet called back
  bool tcp_init_ = false;
  bool resolving_ = false;
  bool writing_ = false;
  bool subscribed_ = false;
  std::optional<RedisFailure> fail_soon_;
  redisReader* reader_ = nullptr;
  std::deque<InFlight> in_flight_;
  std::string out_;  // commands not yet handed to the socket (plain) or to TLS
  std::size_t out_pos_ = 0;
  std::string writing_buf_;  // plain: the bytes of the write in flight
  std::unique_ptr<char[]> read_buf_;  // plain: 16 KiB, while the connection lives
  std::unique_ptr<TlsStream> tls_;
  SSL* ssl_ = nullptr;  // owned by tls_
  std::int64_t started_ms_ = 0;
  std::int64_t last_sent_ms_ = 0;
};

// The new master in a +switch-master message ("<name> <old-ip> <old-port>
// <new-ip> <new-port>") when it is about `master_name`.
std::optional<conf::HostPort> parseSwitchMaster(std::string_view payload, std::string_view master_name);

}  // namespace tether::proxy
