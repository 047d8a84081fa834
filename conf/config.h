// tether's configuration: plain structs, no behaviour.
//
// A Config is built once by conf::load() (loader.h) from defaults, the YAML
// file, the TETHER_* environment and the command line, in that order of
// increasing precedence, then validated. Once loaded it is immutable and held
// through std::shared_ptr<const Config> so that a reload can swap it while
// sessions still finish on the one they started with.
//
// Every duration is in milliseconds, every size in bytes. The defaults written
// here are the ones of SPEC.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tether::conf {

using Millis = std::int64_t;
using Bytes = std::uint64_t;

inline constexpr std::uint32_t kMaxWorkers = 256;
inline constexpr std::uint32_t kMaxWeight = 10'000;  // also the bound of POST .../weight

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError };
enum class LogFormat { kText, kJson };
enum class Balance { kRoundRobin, kLeastConn, kP2c, kConsistentHash };
enum class OnTargetDown { kRedispatch, kStrict };
// What a request header whose name contains '_' becomes (limits.headers_with_underscores):
// dropped before forwarding (like nginx), refused with 400, or forwarded as is.
enum class UnderscoreHeaders { kDrop, kReject, kAllow };

// "host:port" split; host may be a name, an IPv4 or a bracketed IPv6 literal
// (brackets stripped here).
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;  // "host:port", IPv6 re-bracketed
  bool operator==(const HostPort&) const = default;
};

struct TlsCertificate {
  std::string cert;
  std::string key;
};

struct Listener {
  HostPort address{"0.0.0.0", 8000};
  bool tls = false;
  std::vector<TlsCertificate> certificates;
  // tls.alpn: the protocols offered, in order of preference ("h2", "http/1.1").
  std::vector<std::string> alpn{"h2", "http/1.1"};
  // Cleartext listeners: a connection that starts with the HTTP/2 preface
  // speaks HTTP/2 (prior knowledge); false: HTTP/1.1 only.
  bool h2c = true;
};

// http2: the settings of HTTP/2 connections to clients (RFC 9113 §6.5.2) and
// their per-connection bounds. The header list size is
// limits.max_request_header_bytes.
struct Http2 {
  std::uint32_t max_concurrent_streams = 100;
  Bytes initial_window = 64 * 1024;       // per stream: request body bytes the backend has not taken
  Bytes connection_window = 1024 * 1024;  // all streams of a connection together
  Bytes max_frame_size = 16 * 1024;
  bool websockets = false;                // RFC 8441 extended CONNECT
  // Streams over a connection's life; then a graceful GOAWAY.
  std::uint32_t max_streams_per_connection = 10'000;
  // Protocol oddities (invalid frames, streams reset for a client's fault,
  // PING/SETTINGS/empty DATA floods) tolerated per connection, less one per
  // stream that completes; beyond: GOAWAY ENHANCE_YOUR_CALM.
  std::uint32_t glitch_budget = 1'000;
};

struct Admin {
  HostPort address{"127.0.0.1", 9901};
  std::string token_file;
  std::string token;  // read from token_file at load time; empty = none
  // Open admin connections at most; one beyond is closed at once. At least 1.
  std::uint32_t max_connections = 64;
};

// The client side of a TLS connection tether makes (affinity.redis.tls,
// backends[].tls and backend_tls).
struct ClientTls {
  std::string ca;           // PEM file of trusted CAs; "" = the system's (OpenSSL's default paths)
  std::string cert;         // PEM client certificate chain, leaf first; "" = none
  std::string key;          // its PEM private key (with cert, and only with it)
  std::string server_name;  // SNI and the name the server's certificate must carry; "" = the host
  bool verify = true;       // false: any certificate is accepted (encryption without authentication)
  bool operator==(const ClientTls&) const = default;
};

struct BackendConf {
  std::string url;  // as written
  std::string scheme = "http";
  HostPort address;                  // from the url; host may be a DNS name
  std::uint32_t weight = 100;        // 0..kMaxWeight; 0 = no new requests
  Millis resolve_interval = 10'000;  // DNS names only; 0 = resolved once at start
  // https:// only: the backend's own tls:, or else the top-level backend_tls
  // (finalize() fills it in; tls_own tells which, for the error's path).
  std::optional<ClientTls> tls;
  bool tls_own = false;
};

struct Health {
  std::string path = "/health";
  Millis interval = 5'000;
  // Instead of interval while a backend is unknown, down, or up with failed
  // checks in a row (HAProxy's downinter/fastinter, Envoy's
  // unhealthy_interval): one that comes back is in rotation within seconds.
  // Unset, it is 1 s, or interval when that is shorter.
  Millis down_interval = 1'000;
  Millis timeout = 2'000;
  std::uint32_t rise = 2;
  std::uint32_t fall = 3;
  std::uint16_t expect_status_min = 200;
  std::uint16_t expect_status_max = 299;
  std::string expect_body;     // substring; empty = any body
  Millis slow_start = 30'000;  // 0 = off
};

struct Passive {
  std::uint32_t consecutive_failures = 5;  // 0 = passive checks off
  Millis eject_for = 30'000;
  Millis eject_max = 300'000;
  // A passive ejection that would leave more than this share (0..100) of the
  // configured backends ejected does not happen; one backend alone is never
  // passively ejected. 0 = passive ejection never happens.
  std::uint32_t max_ejection_percent = 50;
  // The statuses FROM THE BACKEND (each 500..599) that count as a passive
  // failure; connect errors, resets, timeouts and malformed responses always
  // count. Empty = no status counts. See health::countsAsPassiveFailure().
  std::vector<std::uint16_t> failure_statuses{502, 504};
};

struct AffinityCookie {
  std::string name = "tether_affinity";
  bool insert = false;
  Millis max_age = 3'600'000;
};

// affinity.store when it names Redis (parseRedisUrl, loader.h):
//   redis://[[user]:password@]host[:port][/db]        port 6379 by default
//   rediss://...                                      the same over TLS (affinity.redis.tls)
//   redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]
//                                                     sentinels, port 26379 by default
struct RedisUrl {
  HostPort address;                 // the server; unused with sentinels
  std::vector<HostPort> sentinels;  // redis+sentinel://: asked where master_name is
  std::string master_name;
  bool tls = false;                 // rediss://
  std::string username;             // empty = the default user
  std::string password;             // empty = no AUTH
  std::uint32_t db = 0;
  bool operator==(const RedisUrl&) const = default;
};

// affinity.redis: how tether talks to a Redis store.
struct RedisOptions {
  std::optional<ClientTls> tls;  // set (maybe to the defaults) only with a rediss:// store
  // A connection whose oldest command has had no reply for this long (a
  // Redis that accepts but stopped answering) is dropped and the store is
  // down. Idle connections send PING once a second so that this is seen.
  Millis reply_timeout = 2'000;
  bool operator==(const RedisOptions&) const = default;
};

struct Affinity {
  std::vector<std::string> keys;  // SOURCE[:NAME[:CLAIM]], tried in order, checked by the loader
  AffinityCookie cookie;
  Millis ttl = 3'600'000;
  std::string store = "memory";   // "memory" or a redis:// URL
  std::optional<RedisUrl> redis;  // parsed from store by the loader; empty = memory
  RedisOptions redis_options;     // affinity.redis
  OnTargetDown on_target_down = OnTargetDown::kRedispatch;
  Millis lookup_timeout = 5;
  std::uint64_t memory_max_entries = 1'000'000;
};

struct Timeouts {
  Millis connect = 5'000;
  Millis request_header = 10'000;
  Millis downstream_idle = 75'000;
  Millis upstream_first_byte = 1'800'000;
  Millis upstream_idle = 1'800'000;
  Millis tunnel_idle = 3'600'000;
  Millis shutdown_grace = 30'000;
  Millis upstream_keepalive = 60'000;  // idle pooled upstream connection
  Millis websocket_close = 5'000;      // wait for the peer's close frame
  Millis websocket_close_spread = 0;   // spread going-away closes over this window
  // No request body byte for this long while the body is incomplete: 408
  // (or a close once the response started). 0 = off.
  Millis request_body = 60'000;
  // A new binary started by SIGUSR2 must report ready within this long, or
  // it is killed and the running process keeps serving.
  Millis upgrade = 10'000;
};

struct Limits {
  std::uint64_t max_connections = 20'000;
  Bytes max_request_header_bytes = 64 * 1024;
  Bytes max_request_body_bytes = 0;               // 0 = unlimited
  std::uint64_t max_connections_per_backend = 0;  // 0 = unlimited
  Millis queue_timeout = 5'000;
  std::uint64_t max_queue = 1024;  // per backend
  std::uint32_t max_idle_upstream_per_backend = 64;
  UnderscoreHeaders headers_with_underscores = UnderscoreHeaders::kDrop;
  // A backend's response head (status line and fields) larger: 502, upstream closed.
  Bytes max_response_header_bytes = 64 * 1024;
};

struct Retries {
  std::uint32_t attempts = 2;
};

// Content codings tether can compress responses with (compression:). The
// names are Accept-Encoding's tokens: "zstd", "br", "gzip".
enum class Coding : std::uint8_t { kIdentity, kZstd, kBrotli, kGzip };

// The media types compressed by default: text, JSON, JavaScript, XML, SVG,
// WebAssembly and the web's structured text formats (text/event-stream is
// never compressed, whatever this list says).
inline const std::vector<std::string> kDefaultCompressibleTypes{
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/*+xml",
    "application/wasm",
    "application/x-ndjson",
    "application/graphql-response+json",
    "image/svg+xml",
    "image/x-icon",
    "font/ttf",
    "font/otf",
};

// Response compression (proxy/forward/compression.h), at the top level and
// per route (a route's starts from the top level's).
struct Compression {
  bool enabled = false;
  // Server preference among codings the client accepts equally.
  std::vector<Coding> algorithms{Coding::kZstd, Coding::kBrotli, Coding::kGzip};
  int zstd_level = 3;    // 1..19
  int brotli_level = 4;  // 0..11
  int gzip_level = 5;    // 1..9
  Bytes min_length = 1024;  // a Content-Length below this is sent as it is
  std::vector<std::string> content_types = kDefaultCompressibleTypes;

  int level(Coding c) const {
    return c == Coding::kZstd ? zstd_level : c == Coding::kBrotli ? brotli_level : gzip_level;
  }
};

// routes[].cache: responses of the route kept in memory (proxy/forward/cache.h
// says which). One store per route per worker, each bounded by max_size
// (keys, heads and bodies counted); a body above max_object is forwarded
// and not stored (max_object defaults to the smaller of 8 MiB and max_size). ignore_request_headers names the request fields the
// route's answers do not depend on: "cookie" and "authorization" are the
// only ones a request must not carry to be answered from the cache, and a
// route may declare them irrelevant (public assets under a logged-in UI).
struct Cache {
  bool enabled = true;
  Bytes max_size = 64ull * 1024 * 1024;
  Bytes max_object = 8ull * 1024 * 1024;
  bool ignore_cookie = false;         // ignore_request_headers names cookie
  bool ignore_authorization = false;  // ... authorization
};

inline constexpr Bytes kMinCacheSize = 64 * 1024;

// The parts of the top level that a route may override.
struct RouteMatch {
  std::string path_prefix;
};

// A route's affinity, when set, is the top-level one with the keys the route
// names replaced; store, redis, redis_options, lookup_timeout and memory_max_entries are
// always the top-level ones (one store per process).
struct Route {
  RouteMatch match;  // path_prefix starts with '/'
  std::optional<Affinity> affinity;
  std::optional<Balance> balance;
  std::optional<Compression> compression;
  std::optional<Cache> cache;  // absent: nothing of the route is cached
};

// A network; bytes beyond prefix are zero. Built by parseCidr() (loader.h).
struct Cidr {
  std::uint8_t family = 4;  // 4 or 6
  std::uint8_t bytes[16] = {};
  std::uint8_t prefix = 0;
  // addr holds 4 bytes (family 4) or 16 (family 6), network order. An
  // IPv4-mapped IPv6 address (::ffff:a.b.c.d, as a dual-stack socket reports
  // IPv4 clients) is matched against IPv4 networks too.
  bool contains(const std::uint8_t* addr, std::uint8_t family) const;
  std::string str() const;  // "10.0.0.0/8", "fd00::/8"
};

// The access log, a stream of its own (proxy/access_log.h): independent of
// log.level, on stdout unless path names a file.
struct AccessLog {
  bool enabled = true;
  LogFormat format = LogFormat::kJson;
  std::string path;          // "" = stdout; SIGUSR1 reopens it
  Millis flush = 1'000;      // buffered lines are written at least this often; 0 = each at once
  Bytes buffer = 64 * 1024;  // per worker; a full buffer is written at once (blocking)
};

inline constexpr Bytes kMinAccessLogBuffer = 1024;
inline constexpr Bytes kMaxAccessLogBuffer = 16 * 1024 * 1024;

struct Config {
  std::string source;  // path of the file it came from, or empty
  std::vector<Listener> listeners{Listener{}};
  Admin admin;
  std::uint32_t workers = 1;  // resolved: "auto" becomes the CPU count
  std::vector<BackendConf> backends;
  ClientTls backend_tls;  // what an https:// backend without a tls: of its own uses
  Balance balance = Balance::kLeastConn;
  Health health;
  Passive passive;
  Affinity affinity;
  std::vector<Route> routes;
  Timeouts timeouts;
  Limits limits;
  Retries retries;
  std::vector<Cidr> trusted_proxies;
  AccessLog access_log;
  Compression compression;
  Http2 http2;
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
  // False when no level (flag, environment, file) named a format: SPEC's
  // default is text on a tty and json otherwise, which only main() can tell.
  bool log_format_explicit = false;
};

using ConfigPtr = std::shared_ptr<const Config>;

// The names used in the YAML file and on the command line.
const char* toString(Balance b);
const char* toString(LogLevel l);
const char* toString(LogFormat f);
const char* toString(OnTargetDown o);
const char* toString(UnderscoreHeaders u);
const char* toString(Coding c);

}  // namespace tether::conf
