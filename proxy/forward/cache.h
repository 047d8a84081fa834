// A cache of immutable assets (routes[].cache): which requests may be
// answered from it, which responses it keeps and for how long, and the LRU
// store that holds them. Pure: no sockets, no loop; the clock is a number
// the caller passes (milliseconds).
//
// What is stored: the answer to a GET (a HEAD is answered from the same
// entry) with status 200 whose Cache-Control allows a shared cache to keep
// it for a while: `public` or no `private`, no `no-store`, no `no-cache`,
// and a lifetime from `s-maxage`, else `max-age`, else `immutable` alone
// (kImmutableLifetimeS: content-hashed assets that say only `immutable`).
// Never a response with Set-Cookie, with a Vary naming anything but
// Accept-Encoding, nor the answer to a request with Authorization or Cookie
// unless the route declares them irrelevant (cache.ignore_request_headers).
// A backend's Age counts against the lifetime.
//
// The key is the route, the target (path and query, whatever the method),
// and the content coding of the stored body: identity, gzip, br and zstd
// variants are separate entries, each stored as the client received it, so
// that a compressed asset is compressed once.
//
// Lifetime: a CacheStore lives on one worker's loop and belongs to it (one
// per cached route); entries are shared_ptr so that an answer being written
// from an entry survives its eviction or a purge.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "conf/config.h"
#include "proxy/forward/compression.h"
#include "proxy/http/head.h"

namespace tether::forward {

// A lifetime given to a response whose Cache-Control says `immutable`
// without a max-age: a day.
inline constexpr std::int64_t kImmutableLifetimeS = 86'400;

// Cache-Control directives a shared cache acts on (RFC 9111 §5.2). Unknown
// directives are ignored; a max-age that is not a number of seconds makes
// the response not storable (invalid).
struct CacheControl {
  bool is_public = false;
  bool is_private = false;
  bool no_store = false;
  bool no_cache = false;
  bool immutable = false;
  bool invalid = false;
  std::int64_t max_age = -1;   // seconds; -1 = absent
  std::int64_t s_maxage = -1;
};

// Adds the directives of one Cache-Control field value to *cc (a message
// may carry several fields). Never fails: what cannot be read is ignored,
// or sets invalid for a max-age/s-maxage without a valid value.
void parseCacheControl(std::string_view value, CacheControl* cc);

// Why a request is not looked up (kNone: it is).
enum class CacheBypass : std::uint8_t { kNone, kMethod, kBody, kCredentials, kRange, kUpgrade };

// The request's part: may this request be answered from (and its answer
// stored in) the cache of a route configured with `c`? GET or HEAD
// without a body, no Range, no upgrade, no Authorization or Cookie the route does not ignore.
CacheBypass requestBypass(const http::RequestHead& r, const conf::Cache& c);

// The response's part: the lifetime in seconds a shared cache may keep
// this response for, or -1 when it must not be stored. Judged on the head
// as the backend sent it. *age (when given) receives the backend's Age.
std::int64_t storableLifetime(const http::ResponseHead& r, std::int64_t* age = nullptr);

// "<route>|<coding>|<target>": the entry's key.
std::string cacheKey(std::size_t route, Coding coding, std::string_view target);

// One stored response: its header lines as the client gets them (without
// hop-by-hop fields, Content-Length, Transfer-Encoding, X-Request-Id, Age),
// its body as sent (compressed for a compressed variant).
struct CacheEntry {
  std::string key;
  std::string fields;  // "Name: value\r\n" lines
  std::string body;
  std::string etag;           // the ETag value, or empty
  std::string last_modified;  // the Last-Modified value, or empty
  std::int64_t stored_ms = 0;     // when it was stored, minus the backend's Age
  std::int64_t expires_ms = 0;    // fresh until then
  // Bytes it holds: key, fields, body, validators, and the store's overhead.
  std::size_t bytes() const;
};

// Seconds an entry has been held at `now_ms` (its Age field).
std::int64_t entryAge(const CacheEntry& e, std::int64_t now_ms);

// Whether a conditional request is answered 304 from `e`: If-None-Match
// (weak comparison, "*" matching any) when the request has one, else
// If-Modified-Since against Last-Modified (the same date, or later).
bool notModified(const http::RequestHead& r, const CacheEntry& e);

// A response being stored while it is forwarded: the entry it fills and
// the store it goes to once whole. Owned by the exchange; dropped with it
// when the response does not end well (client gone, backend failure), so a
// partial entry is never stored. The body is copied as it is sent, never
// held back.
class CacheStore;

struct CacheFill {
  CacheStore* store = nullptr;
  std::shared_ptr<CacheEntry> entry;
  std::int64_t lifetime_s = 0;
  std::int64_t age_s = 0;  // the backend's Age
  bool ok = true;          // false: grew past max_object, not stored
  void append(std::string_view body, std::size_t max_object) {
    if (!ok) return;
    if (entry->body.size() + body.size() > max_object) {
      ok = false;
      std::string().swap(entry->body);
      return;
    }
    entry->body.append(body);
  }
};

// An LRU map bounded by max_size bytes (CacheEntry::bytes()). insert()
// evicts the least recently used entries to make room; an entry above
// max_object (its body) or above max_size (all of it) is refused. lookup()
// drops an expired entry and counts a hit as a use.
class CacheStore {
 public:
  CacheStore(std::size_t max_size, std::size_t max_object) : max_size_(max_size), max_object_(max_object) {}

  std::shared_ptr<const CacheEntry> lookup(std::string_view key, std::int64_t now_ms);
  bool insert(std::shared_ptr<CacheEntry> e);
  // Drops every entry whose target starts with `prefix` (every one when it
  // is empty); returns how many.
  std::size_t purge(std::string_view prefix);

  std::size_t bytes() const { return bytes_; }
  std::size_t size() const { return index_.size(); }
  std::size_t maxObject() const { return max_object_; }

 private:
  using Lru = std::list<std::shared_ptr<CacheEntry>>;
  void erase(Lru::iterator it);

  std::size_t max_size_;
  std::size_t max_object_;
  std::size_t bytes_ = 0;
  Lru lru_;  // most recently used first
  std::unordered_map<std::string_view, Lru::iterator> index_;  // keys point into the entries
};

}  // namespace tether::forward
