#include "proxy/forward/cache.h"

#include <charconv>
#include <cstring>
#include <ctime>

namespace tether::forward {

namespace {

using http::HeaderKind;
using http::iequals;

bool isBlank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isBlank(s.front())) s.remove_prefix(1);
  while (!s.empty() && isBlank(s.back())) s.remove_suffix(1);
  return s;
}

// Calls f(element) for each comma-separated element, quoted strings kept whole.
template <typename F>
void forEachElement(std::string_view v, F f) {
  std::size_t start = 0;
  bool quoted = false;
  for (std::size_t i = 0; i <= v.size(); ++i) {
    if (i < v.size() && v[i] == '"') quoted = !quoted;
    if (i == v.size() || (v[i] == ',' && !quoted)) {
      std::string_view e = trim(v.substr(start, i - start));
      if (!e.empty()) f(e);
      start = i + 1;
    }
  }
}

// Delta-seconds (RFC 9111 §1.2.2), quoted or not; a value beyond 2^31 is
// 2^31. -1 when it is not a number.
std::int64_t deltaSeconds(std::string_view s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  if (s.empty()) return -1;
  for (char c : s)
    if (c < '0' || c > '9') return -1;
  if (s.size() > 10) return 2'147'483'648;
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v > 2'147'483'648 ? 2'147'483'648 : v;
}

bool nameIs(const http::HeaderList& h, std::size_t i, std::string_view name) {
  return h.kind(i) == HeaderKind::kOther && iequals(h.name(i), name);
}

// An IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") as seconds since the
// epoch; -1 when it is not one.
std::int64_t httpDate(std::string_view s) {
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  s = trim(s);
  if (s.size() != 29 || s[3] != ',' || s.substr(26) != "GMT") return -1;
  auto num = [&](std::size_t at, std::size_t n) -> int {
    int v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  std::tm tm{};
  tm.tm_mday = num(5, 2);
  tm.tm_mon = -1;
  for (int m = 0; m < 12; ++m)
    if (s.substr(8, 3) == kMonths[m]) tm.tm_mon = m;
  int year = num(12, 4);
  tm.tm_hour = num(17, 2);
  tm.tm_min = num(20, 2);
  tm.tm_sec = num(23, 2);
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_mon < 0 || year < 1970 || tm.tm_hour < 0 ||
      tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60 ||
      s[16] != ' ' || s[19] != ':' || s[22] != ':')
    return -1;
  tm.tm_year = year - 1900;
  return static_cast<std::int64_t>(timegm(&tm));
}

// An entity tag without its weakness prefix, for the weak comparison.
std::string_view opaqueTag(std::string_view t) {
  t = trim(t);
  if (t.size() >= 2 && t[0] == 'W' && t[1] == '/') t.remove_prefix(2);
  return t;
}

}  // namespace

void parseCacheControl(std::string_view value, CacheControl* cc) {
  forEachElement(value, [cc](std::string_view e) {
    std::size_t eq = e.find('=');
    std::string_view name = trim(e.substr(0, eq));
    std::string_view arg = eq == std::string_view::npos ? std::string_view() : trim(e.substr(eq + 1));
    if (iequals(name, "public")) {
      cc->is_public = true;
    } else if (iequals(name, "private")) {
      cc->is_private = true;
    } else if (iequals(name, "no-store")) {
      cc->no_store = true;
    } else if (iequals(name, "no-cache")) {
      cc->no_cache = true;
    } else if (iequals(name, "immutable")) {
      cc->immutable = true;
    } else if (iequals(name, "max-age") || iequals(name, "s-maxage")) {
      std::int64_t v = deltaSeconds(arg);
      if (v < 0) {
        cc->invalid = true;
        return;
      }
      std::int64_t& slot = iequals(name, "max-age") ? cc->max_age : cc->s_maxage;
      // A repeated directive: the shorter lifetime wins (the safer reading).
      slot = slot < 0 ? v : std::min(slot, v);
    }
  });
}

CacheBypass requestBypass(const http::RequestHead& r, const conf::Cache& c) {
  if (r.method != http::kMethodGet && r.method != http::kMethodHead) return CacheBypass::kMethod;
  if (r.upgrade) return CacheBypass::kUpgrade;
  if (r.framing != http::Framing::kNone) return CacheBypass::kBody;
  const http::HeaderList& h = r.headers;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h.dropped(i)) continue;
    HeaderKind k = h.kind(i);
    if ((k == HeaderKind::kAuthorization && !c.ignore_authorization) ||
        (k == HeaderKind::kCookie && !c.ignore_cookie))
      return CacheBypass::kCredentials;
    if (nameIs(h, i, "range")) return CacheBypass::kRange;
  }
  return CacheBypass::kNone;
}

std::int64_t storableLifetime(const http::ResponseHead& r, std::int64_t* age_out) {
  if (r.status != 200) return -1;
  if (r.framing == http::Framing::kClose) return -1;  // a truncated body would look whole
  const http::HeaderList& h = r.headers;
  CacheControl cc;
  bool has_cc = false;
  std::int64_t age = 0;
  bool bad_vary = false;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h.dropped(i)) continue;
    if (h.kind(i) == HeaderKind::kSetCookie) return -1;
    if (h.kind(i) != HeaderKind::kOther) continue;
    std::string_view n = h.name(i);
    if (iequals(n, "cache-control")) {
      has_cc = true;
      parseCacheControl(h.value(i), &cc);
    } else if (iequals(n, "vary")) {
      forEachElement(h.value(i), [&](std::string_view e) {
        if (!iequals(e, "accept-encoding")) bad_vary = true;
      });
    } else if (iequals(n, "age")) {
      std::int64_t a = deltaSeconds(trim(h.value(i)));
      if (a > age) age = a;
    }
  }
  if (!has_cc || bad_vary || cc.invalid || cc.is_private || cc.no_store || cc.no_cache) return -1;
  std::int64_t lifetime = cc.s_maxage >= 0  ? cc.s_maxage
                          : cc.max_age >= 0 ? cc.max_age
                          : cc.immutable    ? kImmutableLifetimeS
                                            : -1;
  if (lifetime < 0 || lifetime <= age) return -1;
  if (age_out) *age_out = age;
  return lifetime - age;
}

std::string cacheKey(std::size_t route, Coding coding, std::string_view target) {
  std::string k = std::to_string(route);
  k += '|';
  k += codingToken(coding);
  k += '|';
  k += target;
  return k;
}

std::size_t CacheEntry::bytes() const {
  // The list node, the index slot and the shared_ptr control block.
  constexpr std::size_t kOverhead = 160;
  return sizeof(CacheEntry) + kOverhead + key.size() + fields.size() + body.size() + etag.size() +
         last_modified.size();
}

std::int64_t entryAge(const CacheEntry& e, std::int64_t now_ms) {
  return now_ms > e.stored_ms ? (now_ms - e.stored_ms) / 1000 : 0;
}

bool notModified(const http::RequestHead& r, const CacheEntry& e) {
  const http::HeaderList& h = r.headers;
  bool has_inm = false;
  bool inm_match = false;
  std::string_view ims;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h.dropped(i)) continue;
    if (nameIs(h, i, "if-none-match")) {
      has_inm = true;
      forEachElement(h.value(i), [&](std::string_view tag) {
        if (tag == "*" ? true : !e.etag.empty() && opaqueTag(tag) == opaqueTag(e.etag)) inm_match = true;
      });
    } else if (nameIs(h, i, "if-modified-since")) {
      ims = h.value(i);
    }
  }
  if (has_inm) return inm_match;
  if (ims.empty() || e.last_modified.empty()) return false;
  std::int64_t since = httpDate(ims);
  std::int64_t modified = httpDate(e.last_modified);
  if (since < 0 || modified < 0) return false;
  return modified <= since;
}

std::shared_ptr<const CacheEntry> CacheStore::lookup(std::string_view key, std::int64_t now_ms) {
  auto it = index_.find(key);
  if (it == index_.end()) return nullptr;
  Lru::iterator node = it->second;
  if ((*node)->expires_ms <= now_ms) {
    erase(node);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, node);
  return *node;
}

bool CacheStore::insert(std::shared_ptr<CacheEntry> e) {
  std::size_t need = e->bytes();
  if (e->body.size() > max_object_ || need > max_size_) return false;
  if (auto it = index_.find(e->key); it != index_.end()) erase(it->second);
  while (bytes_ + need > max_size_ && !lru_.empty()) erase(std::prev(lru_.end()));
  lru_.push_front(std::move(e));
  index_.emplace(lru_.front()->key, lru_.begin());
  bytes_ += need;
  return true;
}

std::size_t CacheStore::purge(std::string_view prefix) {
  std::size_t n = 0;
  for (auto it = lru_.begin(); it != lru_.end();) {
    auto next = std::next(it);
    std::string_view key = (*it)->key;
    // The target follows the second '|'.
    std::size_t bar = key.find('|');
    bar = bar == std::string_view::npos ? bar : key.find('|', bar + 1);
    std::string_view target = bar == std::string_view::npos ? key : key.substr(bar + 1);
    if (target.starts_with(prefix)) {
      erase(it);
      ++n;
    }
    it = next;
  }
  return n;
}

void CacheStore::erase(Lru::iterator it) {
  bytes_ -= (*it)->bytes();
  index_.erase((*it)->key);
  lru_.erase(it);
}

}  // namespace tether::forward
