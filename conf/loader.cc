#include "conf/loader.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

namespace tether::conf {
namespace {

using Errors = std::vector<std::string>;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

std::string indexed(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string join(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

// Whole string as an unsigned number: no sign, no spaces, no trailing text.
template <typename T>
std::optional<T> parseUint(std::string_view s) {
  T value{};
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return value;
}

// Sets *why when asked for; returns nullopt so that `return fail(...)` reads well.
struct Fail {
  std::string* why;
  std::nullopt_t operator()(std::string message) const {
    if (why != nullptr) *why = std::move(message);
    return std::nullopt;
  }
};

// --- enum names, spelled by toString() in config.cc -------------------------

constexpr std::array kBalances{Balance::kRoundRobin, Balance::kLeastConn, Balance::kP2c,
                               Balance::kConsistentHash};
constexpr std::array kLogLevels{LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo,
                                LogLevel::kWarn, LogLevel::kError};
constexpr std::array kLogFormats{LogFormat::kText, LogFormat::kJson};
constexpr std::array kOnTargetDowns{OnTargetDown::kRedispatch, OnTargetDown::kStrict};
constexpr std::array kCodings{Coding::kZstd, Coding::kBrotli, Coding::kGzip};
constexpr std::array kUnderscoreHeaders{UnderscoreHeaders::kDrop, UnderscoreHeaders::kReject,
                                        UnderscoreHeaders::kAllow};

template <typename E, std::size_t N>
std::optional<E> parseName(std::string_view s, const std::array<E, N>& all, std::string* why) {
  for (E e : all) {
    if (s == toString(e)) return e;
  }
  std::string names;
  for (E e : all) names += (names.empty() ? "" : "|") + std::string(toString(e));
  return Fail{why}(quote(s) + " is not one of " + names);
}

// --- unknown-key suggestions -------------------------------------------------

std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

using Keys = std::initializer_list<std::string_view>;

std::string unknownKey(std::string_view key, Keys known) {
  std::string message = "unknown key";
  for (std::string_view k : known) {
    if (editDistance(key, k) <= 2) return message + " (did you mean \"" + std::string(k) + "\"?)";
  }
  return message;
}

// --- YAML reading ------------------------------------------------------------

// Reads typed values out of YAML nodes, reporting each problem under its
// dotted path. An absent or null key keeps the default it would overwrite.
class Reader {
 public:
  explicit Reader(Errors& errors) : errors_(errors) {}

  void fail(const std::string& path, const std::string& what) {
    errors_.push_back(path + ": " + what);
  }

  std::size_t errorCount() const { return errors_.size(); }

  // True when node is a mapping whose keys are all known; unknown and
  // duplicate keys are reported (the known ones are still read). False for
  // absent and null (nothing to read) and for anything else (reported).
  bool map(const YAML::Node& node, const std::string& path, Keys known) {
    if (!present(node)) return false;
    if (!node.IsMap()) {
      fail(path, "expected a mapping");
      return false;
    }
    std::vector<std::string> seen;
    for (const auto& entry : node) {
      const std::string key = entry.first.Scalar();
      const std::string key_path = join(path, key);
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        fail(key_path, unknownKey(key, known));
      } else if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
        fail(key_path, "duplicate key");
      }
      seen.push_back(key);
    }
    return true;
  }

  // True when node is a sequence; absent and null are false, anything else
  // is reported.
  bool list(const YAML::Node& node, const std::string& path) {
    if (!present(node)) return false;
    if (!node.IsSequence()) {
      fail(path, "expected a list");
      return false;
    }
    return true;
  }

  // The text of a scalar, or nothing (absent, null, or not a scalar: reported).
  std::optional<std::string> scalar(const YAML::Node& node, const std::string& path) {
    if (!present(node)) return std::nullopt;
    if (!node.IsScalar()) {
      fail(path, "expected a single value");
      return std::nullopt;
    }
    return node.Scalar();
  }

  // Each reader below handles map[key] at path parent.key and leaves `out`
  // alone when the key is absent or its value bad.

  void string(const YAML::Node& map, const char* key, const std::string& parent, std::string& out) {
    if (auto s = scalar(map[key], join(parent, key))) out = *s;
  }

  void duration(const YAML::Node& map, const char* key, const std::string& parent, Millis& out,
                bool positive) {
    const std::string path = join(parent, key);
    auto s = scalar(map[key], path);
    if (!s) return;
    auto value = parseDuration(*s);
    if (!value) {
      fail(path, quote(*s) + " is not a duration (e.g. 250ms, 5s, 30m, 1h, 1d)");
    } else if (positive && *value == 0) {
      fail(path, "must be greater than 0");
    } else {
      out = *value;
    }
  }

  void size(const YAML::Node& map, const char* key, const std::string& parent, Bytes& out,
            Bytes min) {
    const std::string path = join(parent, key);
    auto s = scalar(map[key], path);
    if (!s) return;
    auto value = parseSize(*s);
    if (!value) {
      fail(path, quote(*s) + " is not a size (e.g. 512, 64KiB, 100MiB, 1GiB, 64KB)");
    } else if (*value < min) {
      fail(path, "must be at least " + std::to_string(min) + " bytes");
    } else {
      out = *value;
    }
  }

  template <typename T>
  void integer(const YAML::Node& map, const char* key, const std::string& parent, T& out,
               std::uint64_t min = 0, std::uint64_t max = std::numeric_limits<T>::max()) {
    const std::string path = join(parent, key);
    auto s = scalar(map[key], path);
    if (!s) return;
    auto value = parseUint<std::uint64_t>(*s);
    if (!value) {
      fail(path, quote(*s) + " is not a whole number");
    } else if (*value < min && max == std::numeric_limits<T>::max()) {
      fail(path, "must be at least " + std::to_string(min) + ", got " + *s);
    } else if (*value < min || *value > max) {
      fail(path, "must be " + std::to_string(min) + ".." + std::to_string(max) + ", got " + *s);
    } else {
      out = static_cast<T>(*value);
    }
  }

  // true/false, also yes/no and on/off as YAML 1.1 had them.
  void boolean(const YAML::Node& map, const char* key, const std::string& parent, bool& out) {
    const std::string path = join(parent, key);
    auto s = scalar(map[key], path);
    if (!s) return;
    std::string lower = *s;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (lower == "true" || lower == "yes" || lower == "on") {
      out = true;
    } else if (lower == "false" || lower == "no" || lower == "off") {
      out = false;
    } else {
      fail(path, quote(*s) + " is not true or false");
    }
  }

  void hostPort(const YAML::Node& node, const std::string& path, HostPort& out) {
    auto s = scalar(node, path);
    if (!s) return;
    std::string why;
    if (auto hp = parseHostPort(*s, &why)) {
      out = *hp;
    } else {
      fail(path, why);
    }
  }

  template <typename E, std::size_t N>
  void choice(const YAML::Node& map, const char* key, const std::string& parent, E& out,
              const std::array<E, N>& all) {
    const std::string path = join(parent, key);
    auto s = scalar(map[key], path);
    if (!s) return;
    std::string why;
    if (auto e = parseName(*s, all, &why)) {
      out = *e;
    } else {
      fail(path, why);
    }
  }

 private:
  static bool present(const YAML::Node& node) { return node.IsDefined() && !node.IsNull(); }

  Errors& errors_;
};

// --- sections of the file ----------------------------------------------------

Listener readListener(const YAML::Node& node, const std::string& path, Reader& r) {
  Listener l;
  if (node.IsScalar()) {  // a bare address
    r.hostPort(node, join(path, "address"), l.address);
    return l;
  }
  if (!node.IsMap()) {
    r.fail(path, "expected an address or { address: ..., tls: ... }");
    return l;
  }
  r.map(node, path, {"address", "tls", "h2c"});
  r.hostPort(node["address"], join(path, "address"), l.address);
  r.boolean(node, "h2c", path, l.h2c);
  const YAML::Node tls = node["tls"];
  const std::string tls_path = join(path, "tls");
  if (!r.map(tls, tls_path, {"certificates", "alpn"})) return l;
  l.tls = true;
  if (const YAML::Node a = tls["alpn"]; r.list(a, join(tls_path, "alpn"))) {
    l.alpn.clear();
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string item = indexed(join(tls_path, "alpn"), i);
      auto name = r.scalar(a[i], item);
      if (!name) continue;
      if (*name != "h2" && *name != "http/1.1") {
        r.fail(item, quote(*name) + " is not a protocol tether speaks (h2, http/1.1)");
      } else if (std::find(l.alpn.begin(), l.alpn.end(), *name) != l.alpn.end()) {
        r.fail(item, quote(*name) + " is listed twice");
      } else {
        l.alpn.push_back(*name);
      }
    }
    if (a.size() == 0) r.fail(join(tls_path, "alpn"), "must name at least one protocol (h2, http/1.1)");
  }
  const YAML::Node certs = tls["certificates"];
  const std::string certs_path = join(tls_path, "certificates");
  if (r.list(certs, certs_path)) {
    for (std::size_t i = 0; i < certs.size(); ++i) {
      const std::string cert_path = indexed(certs_path, i);
      TlsCertificate cert;
      if (!certs[i].IsMap()) {
        r.fail(cert_path, "expected { cert: FILE, key: FILE }");
        continue;
      }
      r.map(certs[i], cert_path, {"cert", "key"});
      r.string(certs[i], "cert", cert_path, cert.cert);
      r.string(certs[i], "key", cert_path, cert.key);
      if (cert.cert.empty()) r.fail(join(cert_path, "cert"), "missing");
      if (cert.key.empty()) r.fail(join(cert_path, "key"), "missing");
      l.certificates.push_back(cert);
    }
  }
  if (l.certificates.empty()) r.fail(certs_path, "a TLS listener needs at least one certificate");
  return l;
}

// admin.token_file is read here, at load time, so that a reload picks up a
// rotated token and a missing file is a configuration error.
void readTokenFile(Admin& admin, Reader& r) {
  if (admin.token_file.empty()) return;
  std::ifstream in(admin.token_file, std::ios::binary);
  if (!in) {
    r.fail("admin.token_file",
           "cannot read " + quote(admin.token_file) + ": " + std::strerror(errno));
    return;
  }
  std::stringstream text;
  text << in.rdbuf();
  admin.token = std::string(trim(text.str()));
  if (admin.token.empty()) r.fail("admin.token_file", quote(admin.token_file) + " is empty");
}

std::optional<ClientTls> readClientTls(const YAML::Node& tls, const std::string& tls_path, Reader& r);

void readUrl(const std::string& url, const std::string& path, BackendConf& b, Reader& r) {
  std::string why;
  if (auto parsed = parseBackendUrl(url, &why)) {
    parsed->weight = b.weight;
    parsed->resolve_interval = b.resolve_interval;
    b = *parsed;
  } else {
    r.fail(path, why);
  }
}

std::optional<BackendConf> readBackend(const YAML::Node& node, const std::string& path, Reader& r) {
  BackendConf b;
  if (node.IsScalar()) {  // a bare URL
    readUrl(node.Scalar(), join(path, "url"), b, r);
    return b;
  }
  if (!node.IsMap()) {
    r.fail(path, "expected a URL or { url: ..., weight: ... }");
    return std::nullopt;
  }
  r.map(node, path, {"url", "weight", "resolve_interval", "tls"});
  r.integer(node, "weight", path, b.weight, 0, kMaxWeight);
  r.duration(node, "resolve_interval", path, b.resolve_interval, false);
  const std::string url_path = join(path, "url");
  if (auto url = r.scalar(node["url"], url_path)) {
    readUrl(*url, url_path, b, r);
  } else if (!node["url"].IsDefined() || node["url"].IsNull()) {
    r.fail(url_path, "missing");
  }
  if (node["tls"].IsDefined()) {
    const std::string tls_path = join(path, "tls");
    if (auto t = readClientTls(node["tls"], tls_path, r)) {
      b.tls = *t;
      b.tls_own = true;
    }
    if (b.scheme != "https") r.fail(tls_path, "set, but the url is not https://");
  }
  return b;
}

// passive.failure_statuses: a list of statuses, each 500..599, none twice.
void readFailureStatuses(const YAML::Node& map, const std::string& parent, Passive& p,
                         Reader& r) {
  const std::string path = join(parent, "failure_statuses");
  const YAML::Node list = map["failure_statuses"];
  if (!r.list(list, path)) return;
  std::vector<std::uint16_t> statuses;
  bool bad = false;
  for (std::size_t i = 0; i < list.size(); ++i) {
    const std::string item_path = indexed(path, i);
    auto s = r.scalar(list[i], item_path);
    if (!s) {
      bad = true;
      continue;
    }
    auto status = parseUint<std::uint16_t>(trim(*s));
    if (!status || *status < 500 || *status > 599) {
      r.fail(item_path, quote(*s) + " is not a 5xx status (500..599)");
      bad = true;
    } else if (std::find(statuses.begin(), statuses.end(), *status) != statuses.end()) {
      r.fail(item_path, std::to_string(*status) + " is listed twice");
      bad = true;
    } else {
      statuses.push_back(*status);
    }
  }
  if (!bad) p.failure_statuses = std::move(statuses);
}

void readStatusRange(const YAML::Node& map, const std::string& parent, Health& h, Reader& r) {
  const std::string path = join(parent, "expect_status");
  auto s = r.scalar(map["expect_status"], path);
  if (!s) return;
  std::string_view text = trim(*s);
  std::size_t dash = text.find('-');
  auto min = parseUint<std::uint16_t>(trim(text.substr(0, dash)));
  auto max =
      dash == std::string_view::npos ? min : parseUint<std::uint16_t>(trim(text.substr(dash + 1)));
  if (!min || !max || *min < 100 || *max > 599 || *min > *max) {
    r.fail(path, quote(*s) + " is not a status or a range of statuses (e.g. 200, 200-399)");
    return;
  }
  h.expect_status_min = *min;
  h.expect_status_max = *max;
}

// A client TLS block: { ca, cert, key, server_name, verify }; "tls:" alone
// is every default. nullopt when the node is absent or broken.
std::optional<ClientTls> readClientTls(const YAML::Node& tls, const std::string& tls_path, Reader& r) {
  if (tls.IsDefined() && tls.IsNull()) return ClientTls{};
  if (!r.map(tls, tls_path, {"ca", "cert", "key", "server_name", "verify"})) return std::nullopt;
  ClientTls t;
  r.string(tls, "ca", tls_path, t.ca);
  r.string(tls, "cert", tls_path, t.cert);
  r.string(tls, "key", tls_path, t.key);
  r.string(tls, "server_name", tls_path, t.server_name);
  r.boolean(tls, "verify", tls_path, t.verify);
  if (!t.cert.empty() && t.key.empty()) r.fail(join(tls_path, "key"), "missing (cert is set)");
  if (t.cert.empty() && !t.key.empty()) r.fail(join(tls_path, "cert"), "missing (key is set)");
  return t;
}

// affinity.redis: { tls: { ca, cert, key, server_name, verify }, reply_timeout }.
// Whether the store is a rediss:// URL is checked once the environment and
// the flags are in (validate()).
void readRedisOptions(const YAML::Node& node, const std::string& path, RedisOptions& o, Reader& r) {
  if (!r.map(node, path, {"tls", "reply_timeout"})) return;
  r.duration(node, "reply_timeout", path, o.reply_timeout, true);
  if (auto t = readClientTls(node["tls"], join(path, "tls"), r)) o.tls = *t;
}

// store, redis, lookup_timeout and memory_max_entries belong to the process
// (one store), so only the top-level affinity takes them.
// A media-type pattern of compression.content_types: "type/subtype",
// "type/*" or "type/*+suffix", each part a token.
bool mediaPattern(std::string_view p) {
  auto token = [](std::string_view t) {
    return !t.empty() && std::all_of(t.begin(), t.end(), [](unsigned char c) {
      return std::isalnum(c) || std::strchr("!#$&-^_.+", c) != nullptr;
    });
  };
  std::size_t slash = p.find('/');
  if (slash == std::string_view::npos || !token(p.substr(0, slash))) return false;
  std::string_view sub = p.substr(slash + 1);
  if (sub == "*") return true;
  if (sub.starts_with("*+")) return token(sub.substr(2));
  return token(sub);
}

// routes[].cache.
void readCache(const YAML::Node& n, const std::string& path, Cache& c, Reader& r) {
  if (!r.map(n, path, {"enabled", "max_size", "max_object", "ignore_request_headers"})) return;
  r.boolean(n, "enabled", path, c.enabled);
  r.size(n, "max_size", path, c.max_size, kMinCacheSize);
  r.size(n, "max_object", path, c.max_object, 1);
  if (!n["max_object"].IsDefined()) {
    c.max_object = std::min(c.max_object, c.max_size);  // the default never exceeds a smaller store
  } else if (c.max_object > c.max_size) {
    r.fail(join(path, "max_object"), "is larger than max_size");
  }
  if (const YAML::Node h = n["ignore_request_headers"]; r.list(h, join(path, "ignore_request_headers"))) {
    for (std::size_t i = 0; i < h.size(); ++i) {
      const std::string item = indexed(join(path, "ignore_request_headers"), i);
      auto s = r.scalar(h[i], item);
      if (!s) continue;
      std::string name = *s;
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (name == "cookie") {
        c.ignore_cookie = true;
      } else if (name == "authorization") {
        c.ignore_authorization = true;
      } else {
        r.fail(item, quote(*s) + " is not one of cookie, authorization");
      }
    }
  }
}

// compression: at the top level or in a route (which starts from the top
// level's and replaces the keys it names).
void readCompression(const YAML::Node& n, const std::string& path, Compression& c, Reader& r) {
  if (!r.map(n, path, {"enabled", "algorithms", "levels", "min_length", "content_types"})) return;
  r.boolean(n, "enabled", path, c.enabled);
  if (const YAML::Node a = n["algorithms"]; r.list(a, join(path, "algorithms"))) {
    std::vector<Coding> algorithms;
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string item = indexed(join(path, "algorithms"), i);
      auto s = r.scalar(a[i], item);
      if (!s) continue;
      std::string why;
      auto coding = parseName(*s, kCodings, &why);
      if (!coding) {
        r.fail(item, why);
      } else if (std::find(algorithms.begin(), algorithms.end(), *coding) != algorithms.end()) {
        r.fail(item, quote(*s) + " is listed twice");
      } else {
        algorithms.push_back(*coding);
      }
    }
    if (a.size() == 0) r.fail(join(path, "algorithms"), "is empty (use enabled: false)");
    c.algorithms = algorithms;
  }
  const std::string levels = join(path, "levels");
  if (const YAML::Node l = n["levels"]; r.map(l, levels, {"zstd", "br", "gzip"})) {
    r.integer(l, "zstd", levels, c.zstd_level, 1, 19);
    r.integer(l, "br", levels, c.brotli_level, 0, 11);
    r.integer(l, "gzip", levels, c.gzip_level, 1, 9);
  }
  r.size(n, "min_length", path, c.min_length, 0);
  if (const YAML::Node t = n["content_types"]; r.list(t, join(path, "content_types"))) {
    std::vector<std::string> types;
    for (std::size_t i = 0; i < t.size(); ++i) {
      const std::string item = indexed(join(path, "content_types"), i);
      auto s = r.scalar(t[i], item);
      if (!s) continue;
      if (!mediaPattern(*s)) {
        r.fail(item, quote(*s) + " is not a media type (type/subtype, type/* or type/*+suffix)");
      } else {
        types.push_back(*s);
      }
    }
    c.content_types = types;
  }
}

void readAffinity(const YAML::Node& node, const std::string& path, Affinity& a, bool top_level,
                  Reader& r) {
  if (!top_level && node.IsMap()) {
    for (const char* key : {"store", "redis", "lookup_timeout", "memory_max_entries"}) {
      if (node[key].IsDefined()) r.fail(join(path, key), "allowed only in the top-level affinity");
    }
  }
  if (!r.map(node, path,
             {"keys", "cookie", "ttl", "store", "redis", "on_target_down", "lookup_timeout",
              "memory_max_entries"})) {
    return;
  }

  const YAML::Node keys = node["keys"];
  const std::string keys_path = join(path, "keys");
  if (r.list(keys, keys_path)) {
    a.keys.clear();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string key_path = indexed(keys_path, i);
      auto key = r.scalar(keys[i], key_path);
      if (!key) continue;
      std::string why;
      if (checkAffinityKey(*key, &why)) {
        a.keys.push_back(*key);
      } else {
        r.fail(key_path, why);
      }
    }
  }

  const YAML::Node cookie = node["cookie"];
  const std::string cookie_path = join(path, "cookie");
  if (r.map(cookie, cookie_path, {"name", "insert", "max_age"})) {
    r.string(cookie, "name", cookie_path, a.cookie.name);
    r.boolean(cookie, "insert", cookie_path, a.cookie.insert);
    r.duration(cookie, "max_age", cookie_path, a.cookie.max_age, true);
    const bool token = !a.cookie.name.empty() &&
                       std::all_of(a.cookie.name.begin(), a.cookie.name.end(), [](char c) {
                         return std::isalnum(static_cast<unsigned char>(c)) ||
                                std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
                       });
    if (!token) r.fail(join(cookie_path, "name"), quote(a.cookie.name) + " is not a cookie name");
  }

  r.duration(node, "ttl", path, a.ttl, true);
  r.choice(node, "on_target_down", path, a.on_target_down, kOnTargetDowns);
  if (!top_level) return;
  const std::string store_path = join(path, "store");
  if (auto store = r.scalar(node["store"], store_path)) {
    std::string why;
    if (*store == "memory" || parseRedisUrl(*store, &why)) {
      a.store = *store;
    } else {
      r.fail(store_path, why);
    }
  }
  readRedisOptions(node["redis"], join(path, "redis"), a.redis_options, r);
  r.duration(node, "lookup_timeout", path, a.lookup_timeout, true);
  r.integer(node, "memory_max_entries", path, a.memory_max_entries, 1);
}

void readRoot(const YAML::Node& root, Config& c, Reader& r) {
  if (root.IsNull()) return;  // an empty file: every default
  if (!root.IsMap()) {
    r.fail("config", "expected a mapping at the top level");
    return;
  }
  r.map(root, "",
        {"listeners", "admin", "workers", "backends", "balance", "health", "passive", "affinity",
         "routes", "timeouts", "limits", "retries", "trusted_proxies", "access_log", "log",
         "compression", "http2", "backend_tls"});

  if (const YAML::Node n = root["listeners"]; r.list(n, "listeners")) {
    // The environment and flags never empty the list, so this is the one check.
    if (n.size() == 0) r.fail("listeners", "at least one listener is needed");
    c.listeners.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      // A broken entry stays out: the checks across entries would only echo it.
      const std::size_t errors_before = r.errorCount();
      Listener l = readListener(n[i], indexed("listeners", i), r);
      if (r.errorCount() == errors_before) c.listeners.push_back(l);
    }
  }

  if (const YAML::Node n = root["admin"];
      r.map(n, "admin", {"address", "token_file", "max_connections"})) {
    r.hostPort(n["address"], "admin.address", c.admin.address);
    r.string(n, "token_file", "admin", c.admin.token_file);
    r.integer(n, "max_connections", "admin", c.admin.max_connections, 1);
    readTokenFile(c.admin, r);
  }

  if (auto workers = r.scalar(root["workers"], "workers")) {
    std::string why;
    if (auto n = parseWorkers(*workers, &why)) {
      c.workers = *n;
    } else {
      r.fail("workers", why);
    }
  }

  if (const YAML::Node n = root["backends"]; r.list(n, "backends")) {
    c.backends.clear();
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::size_t errors_before = r.errorCount();
      auto b = readBackend(n[i], indexed("backends", i), r);
      if (b && r.errorCount() == errors_before) c.backends.push_back(*b);
    }
  }

  if (const YAML::Node n = root["backend_tls"]; n.IsDefined()) {
    if (auto t = readClientTls(n, "backend_tls", r)) c.backend_tls = *t;
  }

  r.choice(root, "balance", "", c.balance, kBalances);

  if (const YAML::Node n = root["health"]; r.map(n, "health",
                                                 {"path", "interval", "down_interval", "timeout",
                                                  "rise", "fall", "expect_status", "expect_body",
                                                  "slow_start"})) {
    r.string(n, "path", "health", c.health.path);
    if (!c.health.path.starts_with('/')) {
      r.fail("health.path", quote(c.health.path) + " does not start with '/'");
    }
    r.duration(n, "interval", "health", c.health.interval, true);
    r.duration(n, "down_interval", "health", c.health.down_interval, true);
    // Unset, it is never longer than interval: a fast interval stays fast.
    if (!n["down_interval"].IsDefined() || n["down_interval"].IsNull()) {
      c.health.down_interval = std::min(c.health.down_interval, c.health.interval);
    }
    r.duration(n, "timeout", "health", c.health.timeout, true);
    r.integer(n, "rise", "health", c.health.rise, 1);
    r.integer(n, "fall", "health", c.health.fall, 1);
    readStatusRange(n, "health", c.health, r);
    r.string(n, "expect_body", "health", c.health.expect_body);
    r.duration(n, "slow_start", "health", c.health.slow_start, false);
  }

  if (const YAML::Node n = root["passive"];
      r.map(n, "passive",
            {"consecutive_failures", "eject_for", "eject_max", "max_ejection_percent",
             "failure_statuses"})) {
    r.integer(n, "consecutive_failures", "passive", c.passive.consecutive_failures);
    r.duration(n, "eject_for", "passive", c.passive.eject_for, true);
    r.duration(n, "eject_max", "passive", c.passive.eject_max, true);
    r.integer(n, "max_ejection_percent", "passive", c.passive.max_ejection_percent, 0, 100);
    readFailureStatuses(n, "passive", c.passive, r);
    if (c.passive.eject_max < c.passive.eject_for) {
      r.fail("passive.eject_max", "is shorter than passive.eject_for");
    }
  }

  // Before routes: a route's affinity and compression start from the top level's.
  readAffinity(root["affinity"], "affinity", c.affinity, true, r);
  readCompression(root["compression"], "compression", c.compression, r);

  if (const YAML::Node n = root["routes"]; r.list(n, "routes")) {
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string path = indexed("routes", i);
      if (!n[i].IsMap()) {
        r.fail(path, "expected { match: ..., affinity: ..., balance: ..., compression: ..., cache: ... }");
        continue;
      }
      r.map(n[i], path, {"match", "affinity", "balance", "compression", "cache"});
      Route route;
      const std::string match_path = join(path, "match");
      if (r.map(n[i]["match"], match_path, {"path_prefix"})) {
        r.string(n[i]["match"], "path_prefix", match_path, route.match.path_prefix);
      }
      if (!route.match.path_prefix.starts_with('/')) {
        r.fail(join(match_path, "path_prefix"), "missing or not starting with '/'");
      }
      if (n[i]["affinity"].IsDefined()) {
        Affinity affinity = c.affinity;
        readAffinity(n[i]["affinity"], join(path, "affinity"), affinity, false, r);
        route.affinity = affinity;
      }
      if (n[i]["balance"].IsDefined()) {
        Balance balance = c.balance;
        r.choice(n[i], "balance", path, balance, kBalances);
        route.balance = balance;
      }
      if (n[i]["compression"].IsDefined()) {
        Compression compression = c.compression;
        readCompression(n[i]["compression"], join(path, "compression"), compression, r);
        route.compression = compression;
      }
      if (n[i]["cache"].IsDefined()) {
        Cache cache;
        readCache(n[i]["cache"], join(path, "cache"), cache, r);
        route.cache = cache;
      }
      c.routes.push_back(route);
    }
  }

  if (const YAML::Node n = root["timeouts"];
      r.map(n, "timeouts",
            {"connect", "request_header", "downstream_idle", "upstream_first_byte", "upstream_idle",
             "tunnel_idle", "shutdown_grace", "upstream_keepalive", "websocket_close",
             "websocket_close_spread", "request_body", "upgrade"})) {
    Timeouts& t = c.timeouts;
    r.duration(n, "connect", "timeouts", t.connect, true);
    r.duration(n, "request_header", "timeouts", t.request_header, true);
    r.duration(n, "downstream_idle", "timeouts", t.downstream_idle, true);
    r.duration(n, "upstream_first_byte", "timeouts", t.upstream_first_byte, true);
    r.duration(n, "upstream_idle", "timeouts", t.upstream_idle, true);
    r.duration(n, "tunnel_idle", "timeouts", t.tunnel_idle, true);
    r.duration(n, "shutdown_grace", "timeouts", t.shutdown_grace, false);
    r.duration(n, "upstream_keepalive", "timeouts", t.upstream_keepalive, true);
    r.duration(n, "websocket_close", "timeouts", t.websocket_close, true);
    r.duration(n, "websocket_close_spread", "timeouts", t.websocket_close_spread, false);
    r.duration(n, "request_body", "timeouts", t.request_body, false);
    r.duration(n, "upgrade", "timeouts", t.upgrade, true);
  }

  if (const YAML::Node n = root["limits"];
      r.map(n, "limits",
            {"max_connections", "max_request_header_bytes", "max_request_body_bytes",
             "max_connections_per_backend", "queue_timeout", "max_queue",
             "max_idle_upstream_per_backend", "headers_with_underscores",
             "max_response_header_bytes"})) {
    Limits& l = c.limits;
    r.integer(n, "max_connections", "limits", l.max_connections, 1);
    r.size(n, "max_request_header_bytes", "limits", l.max_request_header_bytes, 1024);
    r.size(n, "max_request_body_bytes", "limits", l.max_request_body_bytes, 0);
    r.integer(n, "max_connections_per_backend", "limits", l.max_connections_per_backend);
    r.duration(n, "queue_timeout", "limits", l.queue_timeout, true);
    r.integer(n, "max_queue", "limits", l.max_queue);
    r.integer(n, "max_idle_upstream_per_backend", "limits", l.max_idle_upstream_per_backend);
    r.choice(n, "headers_with_underscores", "limits", l.headers_with_underscores,
             kUnderscoreHeaders);
    r.size(n, "max_response_header_bytes", "limits", l.max_response_header_bytes, 1024);
  }

  if (const YAML::Node n = root["http2"];
      r.map(n, "http2",
            {"max_concurrent_streams", "initial_window", "connection_window", "max_frame_size",
             "websockets", "max_streams_per_connection", "glitch_budget"})) {
    // RFC 9113 §6.5.2 and §6.9.1: the ranges a SETTINGS frame or a window allows.
    constexpr std::uint64_t kMaxWindow = 0x7fffffff;
    Http2& h = c.http2;
    r.integer(n, "max_concurrent_streams", "http2", h.max_concurrent_streams, 1, kMaxWindow);
    r.size(n, "initial_window", "http2", h.initial_window, 1);
    r.size(n, "connection_window", "http2", h.connection_window, 65535);
    r.size(n, "max_frame_size", "http2", h.max_frame_size, 16384);
    r.boolean(n, "websockets", "http2", h.websockets);
    r.integer(n, "max_streams_per_connection", "http2", h.max_streams_per_connection, 1);
    r.integer(n, "glitch_budget", "http2", h.glitch_budget, 1);
    if (h.initial_window > kMaxWindow) r.fail("http2.initial_window", "must be at most 2GiB - 1 (RFC 9113 §6.9.1)");
    if (h.connection_window > kMaxWindow) r.fail("http2.connection_window", "must be at most 2GiB - 1 (RFC 9113 §6.9.1)");
    if (h.max_frame_size > 16777215) r.fail("http2.max_frame_size", "must be at most 16MiB - 1 (RFC 9113 §6.5.2)");
  }

  if (const YAML::Node n = root["retries"]; r.map(n, "retries", {"attempts"})) {
    r.integer(n, "attempts", "retries", c.retries.attempts);
  }

  if (const YAML::Node n = root["trusted_proxies"]; r.list(n, "trusted_proxies")) {
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string path = indexed("trusted_proxies", i);
      auto text = r.scalar(n[i], path);
      if (!text) continue;
      if (auto cidr = parseCidr(*text)) {
        c.trusted_proxies.push_back(*cidr);
      } else {
        r.fail(path, quote(*text) + " is not an address or a CIDR (e.g. 10.0.0.0/8, fd00::/8)");
      }
    }
  }

  if (const YAML::Node n = root["access_log"];
      r.map(n, "access_log", {"enabled", "format", "path", "flush", "buffer"})) {
    AccessLog& a = c.access_log;
    r.boolean(n, "enabled", "access_log", a.enabled);
    r.choice(n, "format", "access_log", a.format, kLogFormats);
    r.string(n, "path", "access_log", a.path);
    if (a.path.find('\0') != std::string::npos) {
      r.fail("access_log.path", "contains a NUL byte");
    } else if (!a.path.empty() && a.path.back() == '/') {
      r.fail("access_log.path", quote(a.path) + " names a directory, not a file");
    }
    r.duration(n, "flush", "access_log", a.flush, false);
    r.size(n, "buffer", "access_log", a.buffer, kMinAccessLogBuffer);
    if (a.buffer > kMaxAccessLogBuffer) {
      r.fail("access_log.buffer", "must be at most " + std::to_string(kMaxAccessLogBuffer) +
                                      " bytes (16MiB)");
      a.buffer = kMaxAccessLogBuffer;
    }
  }

  if (const YAML::Node n = root["log"]; r.map(n, "log", {"level", "format"})) {
    r.choice(n, "level", "log", c.log_level, kLogLevels);
    if (n["format"].IsDefined() && !n["format"].IsNull()) {
      r.choice(n, "format", "log", c.log_format, kLogFormats);
      c.log_format_explicit = true;
    }
  }
}

void readFile(const std::string& path, const EnvLookup& env, Config& c, Errors& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.push_back("config: cannot read " + quote(path) + ": " + std::strerror(errno));
    return;
  }
  std::stringstream raw;
  raw << in.rdbuf();
  Errors expand_errors;
  const std::string text = expandEnv(raw.str(), env, expand_errors);
  for (const std::string& e : expand_errors) errors.push_back("config: " + path + ": " + e);
  // Half-expanded YAML would only add confusing errors.
  if (!expand_errors.empty()) return;
  Reader reader(errors);
  try {
    readRoot(YAML::Load(text), c, reader);
  } catch (const YAML::Exception& e) {
    errors.push_back("config: " + path + ":" + std::to_string(e.mark.line + 1) + ":" +
                     std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

// --- environment and command line --------------------------------------------

// What the environment or the command line says, as typed.
struct RawOverrides {
  std::optional<std::string> config, admin, redis, workers, log_level, log_format;
  std::vector<std::string> listen, backends;  // empty = not given
};

// How errors name each setting: the variable or the flag.
struct OverrideNames {
  const char *config, *listen, *backends, *admin, *redis, *workers, *log_level, *log_format;
};
constexpr OverrideNames kEnvNames{"TETHER_CONFIG",    "TETHER_LISTEN",    "TETHER_BACKENDS",
                                  "TETHER_ADMIN",     "TETHER_REDIS_URL", "TETHER_WORKERS",
                                  "TETHER_LOG_LEVEL", "TETHER_LOG_FORMAT"};
constexpr OverrideNames kFlagNames{"--config", "--listen",  "--backend",   "--admin",
                                   "--redis",  "--workers", "--log-level", "--log-format"};

struct Overrides {
  std::optional<std::string> config;
  std::optional<std::vector<HostPort>> listen;
  std::optional<std::vector<BackendConf>> backends;
  std::optional<HostPort> admin;
  std::optional<std::string> redis;
  std::optional<std::uint32_t> workers;
  std::optional<LogLevel> log_level;
  std::optional<LogFormat> log_format;
};

// Items of comma-separated lists, trimmed, empty ones dropped.
std::vector<std::string> splitList(const std::vector<std::string>& values) {
  std::vector<std::string> items;
  for (const std::string& value : values) {
    std::string_view rest = value;
    while (true) {
      std::size_t comma = rest.find(',');
      std::string_view item = trim(rest.substr(0, comma));
      if (!item.empty()) items.emplace_back(item);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return items;
}

Overrides typed(const RawOverrides& raw, const OverrideNames& names, Errors& errors) {
  Overrides o;
  auto fail = [&](const char* name, const std::string& why) {
    errors.push_back(std::string(name) + ": " + why);
  };
  std::string why;
  o.config = raw.config;
  if (auto items = splitList(raw.listen); !items.empty()) {
    o.listen.emplace();
    for (const std::string& item : items) {
      if (auto hp = parseHostPort(item, &why)) {
        o.listen->push_back(*hp);
      } else {
        fail(names.listen, why);
      }
    }
  }
  if (auto items = splitList(raw.backends); !items.empty()) {
    o.backends.emplace();
    for (const std::string& item : items) {
      if (auto b = parseBackendUrl(item, &why)) {
        o.backends->push_back(*b);
      } else {
        fail(names.backends, why);
      }
    }
  }
  if (raw.admin) {
    if (!(o.admin = parseHostPort(*raw.admin, &why))) fail(names.admin, why);
  }
  if (raw.redis) {
    if (*raw.redis == "memory" || parseRedisUrl(*raw.redis, &why)) {
      o.redis = *raw.redis;
    } else {
      fail(names.redis, why);
    }
  }
  if (raw.workers) {
    if (!(o.workers = parseWorkers(*raw.workers, &why))) fail(names.workers, why);
  }
  if (raw.log_level) {
    if (!(o.log_level = parseName(*raw.log_level, kLogLevels, &why))) fail(names.log_level, why);
  }
  if (raw.log_format) {
    if (!(o.log_format = parseName(*raw.log_format, kLogFormats, &why))) {
      fail(names.log_format, why);
    }
  }
  return o;
}

RawOverrides readEnv(const EnvLookup& env) {
  auto get = [&](const char* name) -> std::optional<std::string> {
    auto value = env(name);
    if (!value || value->empty()) return std::nullopt;
    return value;
  };
  RawOverrides raw;
  raw.config = get(kEnvNames.config);
  if (auto v = get(kEnvNames.listen)) raw.listen.push_back(*v);
  if (auto v = get(kEnvNames.backends)) raw.backends.push_back(*v);
  raw.admin = get(kEnvNames.admin);
  raw.redis = get(kEnvNames.redis);
  raw.workers = get(kEnvNames.workers);
  raw.log_level = get(kEnvNames.log_level);
  raw.log_format = get(kEnvNames.log_format);
  return raw;
}

void apply(const Overrides& o, Config& c) {
  if (o.listen) {
    c.listeners.clear();
    for (const HostPort& hp : *o.listen) c.listeners.push_back(Listener{hp});
  }
  if (o.backends) c.backends = *o.backends;
  if (o.admin) c.admin.address = *o.admin;
  if (o.redis) c.affinity.store = *o.redis;
  if (o.workers) c.workers = *o.workers;
  if (o.log_level) c.log_level = *o.log_level;
  if (o.log_format) {
    c.log_format = *o.log_format;
    c.log_format_explicit = true;
  }
}

const char kHelpFooter[] =
    "Environment (below flags, above the file): TETHER_CONFIG, TETHER_LISTEN and TETHER_BACKENDS\n"
    "(comma-separated), TETHER_ADMIN, TETHER_REDIS_URL, TETHER_WORKERS, TETHER_LOG_LEVEL,\n"
    "TETHER_LOG_FORMAT. Exit codes: 0 stop, 1 configuration invalid, 2 bad command line,\n"
    "3 could not start.";

// Parses the flags into raw, or fills result with help/version or the error.
// False when the command line is bad.
bool parseCommandLine(const std::vector<std::string>& args, RawOverrides& raw, LoadResult& result) {
  CLI::App app{"tether: a Layer-7 load balancer and WebSocket-aware sidecar", "tether"};
  app.footer(kHelpFooter);
  std::string config, admin, redis, workers, log_level, log_format;
  app.add_option("-c,--config", config, "YAML configuration (none by default)");
  app.add_option("-l,--listen", raw.listen, "proxy listener, repeatable (default 0.0.0.0:8000)")
      ->allow_extra_args(false)
      ->delimiter(',');
  app.add_option("-b,--backend", raw.backends, "backend http://host:port, repeatable")
      ->allow_extra_args(false)
      ->delimiter(',');
  auto* admin_opt = app.add_option("--admin", admin, "admin listener (default 127.0.0.1:9901)");
  auto* redis_opt = app.add_option(
      "--redis", redis,
      "affinity store redis://[user:password@]host:port[/db], rediss://... (TLS) or "
      "redis+sentinel://[user:password@]host:port[,host:port...]/master[/db] (default memory)");
  auto* workers_opt =
      app.add_option("--workers", workers, "event-loop threads, N or auto (default 1)");
  auto* level_opt =
      app.add_option("--log-level", log_level, "trace|debug|info|warn|error (default info)");
  auto* format_opt = app.add_option("--log-format", log_format,
                                    "text|json (default text on a tty, json otherwise)");
  app.add_flag("--check-config", result.invocation.check_config,
               "validate everything, print every error, exit");
  app.add_flag("--version", result.invocation.version, "print the version and exit");

  // CLI11 takes its arguments last first.
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    result.invocation.help = true;
    result.invocation.help_text = app.help();
    return true;
  } catch (const CLI::ParseError& e) {
    result.errors.push_back(std::string("command line: ") + e.what());
    return false;
  }
  auto given = [](CLI::Option* opt, const std::string& value) {
    return opt->count() > 0 ? std::optional<std::string>(value) : std::nullopt;
  };
  if (app.get_option("--config")->count() > 0) raw.config = config;
  raw.admin = given(admin_opt, admin);
  raw.redis = given(redis_opt, redis);
  raw.workers = given(workers_opt, workers);
  raw.log_level = given(level_opt, log_level);
  raw.log_format = given(format_opt, log_format);
  return true;
}

// Makes the derived fields agree with the final settings.
void finalize(Config& c) {
  for (BackendConf& b : c.backends) {
    if (b.scheme != "https") {
      b.tls.reset();
    } else if (!b.tls_own) {
      b.tls = c.backend_tls;  // flags and the environment name https:// backends too
    }
  }
  c.affinity.redis.reset();
  if (c.affinity.store != "memory") c.affinity.redis = parseRedisUrl(c.affinity.store, nullptr);
  for (Route& route : c.routes) {
    if (!route.affinity) continue;
    route.affinity->store = c.affinity.store;
    route.affinity->redis = c.affinity.redis;
    route.affinity->redis_options = c.affinity.redis_options;
    route.affinity->lookup_timeout = c.affinity.lookup_timeout;
    route.affinity->memory_max_entries = c.affinity.memory_max_entries;
  }
}

// Checks that need the final settings (after environment and flags).
void validate(const Config& c, Errors& errors) {
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    const HostPort& a = c.listeners[i].address;
    if (a.port == 0) continue;  // any free port: never a clash
    for (std::size_t j = 0; j < i; ++j) {
      if (c.listeners[j].address == a) {
        errors.push_back(indexed("listeners", i) + ".address: " + a.str() + " is also " +
                         indexed("listeners", j) + ".address");
        break;
      }
    }
    if (c.admin.address == a) {
      errors.push_back("admin.address: " + a.str() + " is also " + indexed("listeners", i) +
                       ".address");
    }
  }
  if (!isLoopback(c.admin.address) && c.admin.token.empty()) {
    errors.push_back("admin.address: " + c.admin.address.str() +
                     " is not loopback and admin.token_file is not set");
  }
  const bool rediss = c.affinity.redis && c.affinity.redis->tls;
  if (c.affinity.redis_options.tls && !rediss) {
    // Not the store itself: a URL may carry a password.
    const char* is = !c.affinity.redis                ? "memory"
                     : c.affinity.redis->master_name.empty() ? "a redis:// URL"
                                                             : "a redis+sentinel:// URL";
    errors.push_back(std::string("affinity.redis.tls: set, but affinity.store is ") + is +
                     ", not a rediss:// URL");
  }
  for (std::size_t i = 0; i < c.backends.size(); ++i) {
    const BackendConf& b = c.backends[i];
    const std::string path = indexed("backends", i) + ".url";
    for (std::size_t j = 0; j < i; ++j) {
      if (c.backends[j].address == b.address) {
        errors.push_back(path + ": " + b.address.str() + " is also " + indexed("backends", j));
        break;
      }
    }
  }
}

LoadResult loadArgs(const std::vector<std::string>& args, const EnvLookup& env) {
  LoadResult result;
  RawOverrides raw_flags;
  if (!parseCommandLine(args, raw_flags, result)) {
    result.exit_code = ExitCode::kBadCommandLine;
    return result;
  }
  if (result.invocation.help || result.invocation.version) return result;

  Overrides flags = typed(raw_flags, kFlagNames, result.errors);
  if (!result.errors.empty()) {
    result.exit_code = ExitCode::kBadCommandLine;
    return result;
  }

  Errors errors;
  Overrides from_env = typed(readEnv(env), kEnvNames, errors);
  auto config = std::make_shared<Config>();
  config->source = flags.config.value_or(from_env.config.value_or(""));
  if (!config->source.empty()) readFile(config->source, env, *config, errors);
  apply(from_env, *config);
  apply(flags, *config);
  finalize(*config);
  validate(*config, errors);

  if (!errors.empty()) {
    result.errors = std::move(errors);
    result.exit_code = ExitCode::kConfigInvalid;
    return result;
  }
  result.config = std::move(config);
  return result;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> percentDecode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int high = hexDigit(s[i + 1]), low = hexDigit(s[i + 2]);
    if (high < 0 || low < 0) return std::nullopt;
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

bool isVarStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool isVarChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// A host name or a dotted IPv4 address (which must then be a valid one).
bool validHostName(std::string_view host) {
  bool digits_and_dots = true;
  for (char c : host) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.') digits_and_dots = false;
  }
  if (!digits_and_dots) return true;
  in_addr v4;
  return inet_pton(AF_INET, std::string(host).c_str(), &v4) == 1;
}

// True when the authority ("host:port", "[::1]:80", "host") names a port.
bool hasPort(std::string_view authority) {
  if (authority.starts_with('[')) {
    std::size_t close = authority.find(']');
    return close != std::string_view::npos && close + 1 < authority.size();
  }
  return authority.find(':') != std::string_view::npos;
}

}  // namespace

// --- public ------------------------------------------------------------------

EnvLookup processEnv() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

LoadResult load(int argc, const char* const* argv, const EnvLookup& env) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return loadArgs(args, env);
}

LoadResult reload(const std::vector<std::string>& args, const EnvLookup& env) {
  return loadArgs(args, env);
}

std::optional<Millis> parseDuration(std::string_view s) {
  s = trim(s);
  if (s == "0") return 0;
  if (s.empty()) return std::nullopt;
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<Millis>::max());
  std::uint64_t total = 0;
  while (!s.empty()) {
    std::size_t digits = 0;
    while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
    std::size_t letters = digits;
    while (letters < s.size() && std::isalpha(static_cast<unsigned char>(s[letters]))) ++letters;
    auto number = parseUint<std::uint64_t>(s.substr(0, digits));
    std::string_view unit = s.substr(digits, letters - digits);
    s.remove_prefix(letters);
    std::uint64_t scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1'000;
    else if (unit == "m")
      scale = 60'000;
    else if (unit == "h")
      scale = 3'600'000;
    else if (unit == "d")
      scale = 86'400'000;
    if (!number || scale == 0 || *number > (kMax - total) / scale) return std::nullopt;
    total += *number * scale;
  }
  return static_cast<Millis>(total);
}

std::optional<Bytes> parseSize(std::string_view s) {
  s = trim(s);
  std::size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits]))) ++digits;
  auto number = parseUint<Bytes>(s.substr(0, digits));
  std::string_view unit = s.substr(digits);
  struct Unit {
    std::string_view name;
    Bytes scale;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KB", 1'000},
      {"MB", 1'000'000},
      {"GB", 1'000'000'000},
      {"TB", 1'000'000'000'000},
      {"KiB", Bytes{1} << 10},
      {"MiB", Bytes{1} << 20},
      {"GiB", Bytes{1} << 30},
      {"TiB", Bytes{1} << 40},
  };
  if (!number) return std::nullopt;
  for (const Unit& u : kUnits) {
    if (unit != u.name) continue;
    if (*number > std::numeric_limits<Bytes>::max() / u.scale) return std::nullopt;
    return *number * u.scale;
  }
  return std::nullopt;
}

std::string expandEnv(std::string_view text, const EnvLookup& env,
                      std::vector<std::string>& errors) {
  std::string out;
  out.reserve(text.size());
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end == std::string_view::npos ? text.size() : end + 1);
    text.remove_prefix(line.size());
    const std::string where = "line " + std::to_string(line_number) + ": ";
    if (trim(line).starts_with('#')) {
      out += line;
      continue;
    }
    for (std::size_t i = 0; i < line.size();) {
      if (line.substr(i).starts_with("$${")) {
        out += "${";
        i += 3;
        continue;
      }
      if (!line.substr(i).starts_with("${")) {
        out += line[i++];
        continue;
      }
      std::size_t close = line.find('}', i);
      if (close == std::string_view::npos) {
        errors.push_back(where + "unterminated \"${\"");
        out += line.substr(i);
        break;
      }
      std::string_view inner = line.substr(i + 2, close - i - 2);
      std::size_t dash = inner.find(":-");
      std::string_view name = inner.substr(0, dash);
      const bool valid =
          !name.empty() && isVarStart(name[0]) && std::all_of(name.begin(), name.end(), isVarChar);
      if (!valid) {
        errors.push_back(where + quote(line.substr(i, close - i + 1)) +
                         " is not ${VAR} or ${VAR:-default}");
      } else if (auto value = env(name); value && !value->empty()) {
        out += *value;
      } else if (dash != std::string_view::npos) {
        out += inner.substr(dash + 2);
      } else if (!value) {
        errors.push_back(where + "${" + std::string(name) + "} is not set");
      }
      i = close + 1;
    }
  }
  return out;
}

std::optional<HostPort> parseHostPort(std::string_view s, std::string* why) {
  Fail fail{why};
  std::string_view host, port;
  if (s.starts_with('[')) {
    std::size_t close = s.find(']');
    if (close == std::string_view::npos) return fail("no closing ']' in " + quote(s));
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (rest.empty()) return fail("no port in " + quote(s));
    if (rest[0] != ':') return fail("expected ':' after ']' in " + quote(s));
    port = rest.substr(1);
    in6_addr v6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &v6) != 1) {
      return fail(quote(host) + " is not an IPv6 address");
    }
  } else {
    std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return fail("no port in " + quote(s));
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return fail("an IPv6 address needs brackets: " + quote(s) + " (e.g. [::1]:9901)");
    }
    if (host.empty()) host = "0.0.0.0";
    if (!validHostName(host)) return fail(quote(host) + " is not a host name or an address");
  }
  if (port.empty()) return fail("no port in " + quote(s));
  auto number = parseUint<std::uint16_t>(port);
  if (!number) return fail("bad port " + quote(port) + " in " + quote(s));
  return HostPort{std::string(host), *number};
}

std::optional<Cidr> parseCidr(std::string_view s) {
  s = trim(s);
  std::size_t slash = s.find('/');
  const std::string address(s.substr(0, slash));
  Cidr cidr;
  if (inet_pton(AF_INET, address.c_str(), cidr.bytes) == 1) {
    cidr.family = 4;
    cidr.prefix = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), cidr.bytes) == 1) {
    cidr.family = 6;
    cidr.prefix = 128;
  } else {
    return std::nullopt;
  }
  if (slash != std::string_view::npos) {
    auto prefix = parseUint<std::uint8_t>(s.substr(slash + 1));
    if (!prefix || *prefix > cidr.prefix) return std::nullopt;
    cidr.prefix = *prefix;
  }
  for (unsigned bit = cidr.prefix; bit < 128u; ++bit) {
    cidr.bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return cidr;
}

bool isLoopback(const HostPort& hp) {
  if (hp.host == "localhost" || hp.host == "localhost.") return true;
  std::uint8_t bytes[16];
  if (inet_pton(AF_INET, hp.host.c_str(), bytes) == 1) return bytes[0] == 127;
  if (inet_pton(AF_INET6, hp.host.c_str(), bytes) != 1) return false;
  static const Cidr kV6Loopback = *parseCidr("::1");
  static const Cidr kV4Loopback = *parseCidr("127.0.0.0/8");  // also matches ::ffff:127.x
  return kV6Loopback.contains(bytes, 6) || kV4Loopback.contains(bytes, 6);
}

std::optional<BackendConf> parseBackendUrl(std::string_view url, std::string* why) {
  Fail fail{why};
  BackendConf b;
  b.url = std::string(url);
  std::string_view rest;
  if (url.starts_with("http://")) {
    b.scheme = "http";
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    b.scheme = "https";
    rest = url.substr(8);
  } else if (url.find("://") != std::string_view::npos) {
    return fail("unsupported scheme in " + quote(url) + " (http:// or https:// only)");
  } else {
    return fail("no scheme in " + quote(url) + " (write http://host:port)");
  }
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find_first_of("/?#") != std::string_view::npos) {
    return fail("a path is not supported in " + quote(url) + " (write http://host:port)");
  }
  if (rest.find('@') != std::string_view::npos) {
    return fail("credentials are not supported in " + quote(url));
  }
  if (rest.empty() || rest.starts_with(':')) return fail("no host in " + quote(url));
  if (!hasPort(rest)) return fail("no port in " + quote(url));
  std::string host_why;
  auto address = parseHostPort(rest, &host_why);
  if (!address) return fail(host_why);
  if (address->port == 0) return fail("port 0 in " + quote(url));
  b.address = *address;
  return b;
}

std::optional<RedisUrl> parseRedisUrl(std::string_view url, std::string* why) {
  Fail fail{why};
  // Errors show the URL with its password masked: they reach logs and terminals.
  std::string masked(url);
  if (std::size_t scheme = masked.find("://"); scheme != std::string::npos) {
    std::size_t at = masked.rfind('@');
    std::size_t colon = masked.find(':', scheme + 3);
    if (at != std::string::npos && at > scheme) {
      std::size_t from = colon < at ? colon + 1 : scheme + 3;  // no ':': all of it may be a password
      masked.replace(from, at - from, "***");
    }
  }
  const std::string form =
      " (expected redis://[user:password@]host:port[/db], rediss://... for TLS, or "
      "redis+sentinel://[user:password@]host:port[,host:port...]/master[/db])";
  RedisUrl redis;
  std::string_view rest;
  bool sentinel = false;
  if (url.starts_with("redis://")) {
    rest = url.substr(8);
  } else if (url.starts_with("rediss://")) {
    redis.tls = true;
    rest = url.substr(9);
  } else if (url.starts_with("redis+sentinel://")) {
    sentinel = true;
    rest = url.substr(17);
  } else if (url.starts_with("rediss+sentinel://")) {
    return fail("TLS to sentinels (rediss+sentinel://) is not supported in " + quote(masked) + form);
  } else {
    return fail(quote(masked) + " is not \"memory\" or a Redis URL" + form);
  }
  if (std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    std::size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos)
      return fail("no ':' before the password in " + quote(masked) + form);
    auto user = percentDecode(userinfo.substr(0, colon));
    auto password = percentDecode(userinfo.substr(colon + 1));
    if (!user || !password) return fail("bad %-escape in " + quote(masked));
    redis.username = *user;
    redis.password = *password;
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail("options are not supported in " + quote(masked) + form);
  }
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  if (sentinel) {
    // The master's name, then the database.
    std::size_t next = path.find('/');
    std::string_view name = path.substr(0, next);
    if (name.empty()) return fail("no master name in " + quote(masked) + form);
    auto decoded = percentDecode(name);
    if (!decoded) return fail("bad %-escape in " + quote(masked));
    redis.master_name = *decoded;
    path = next == std::string_view::npos ? std::string_view() : path.substr(next + 1);
  }
  if (!path.empty()) {
    auto number = parseUint<std::uint32_t>(path);
    if (!number) return fail("bad database number " + quote(path) + " in " + quote(masked) + form);
    redis.db = *number;
  }
  auto address = [&](std::string_view item, std::uint16_t default_port) -> std::optional<HostPort> {
    if (item.empty() || item.starts_with(':')) return fail("no host in " + quote(masked) + form);
    std::string text(item);
    if (!hasPort(text)) text += ":" + std::to_string(default_port);
    std::string host_why;
    auto hp = parseHostPort(text, &host_why);
    if (!hp) return fail(host_why + " in " + quote(masked));
    if (hp->port == 0) return fail("port 0 in " + quote(masked));
    return hp;
  };
  if (!sentinel) {
    if (authority.find(',') != std::string_view::npos)
      return fail("several hosts in " + quote(masked) + " (only redis+sentinel:// takes a list)" + form);
    auto hp = address(authority, 6379);
    if (!hp) return std::nullopt;
    redis.address = *hp;
    return redis;
  }
  while (true) {
    std::size_t comma = authority.find(',');
    auto hp = address(authority.substr(0, comma), 26379);
    if (!hp) return std::nullopt;
    redis.sentinels.push_back(*hp);
    if (comma == std::string_view::npos) break;
    authority.remove_prefix(comma + 1);
  }
  return redis;
}

// The same grammar as balancer::parseKeySpec (affinity_key.h), which the
// workers use: a key the loader accepts is one they can read.
bool checkAffinityKey(std::string_view key, std::string* why) {
  Fail fail{why};
  auto tchar = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr);
  };
  auto token = [&](std::string_view t) { return !t.empty() && std::all_of(t.begin(), t.end(), tchar); };
  auto query_name = [](std::string_view t) {
    return !t.empty() && std::none_of(t.begin(), t.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u <= 0x20 || u == 0x7F || c == '&' || c == '=' || c == '#';
    });
  };
  auto control = [](std::string_view t) {
    return std::any_of(t.begin(), t.end(), [](char c) {
      auto u = static_cast<unsigned char>(c);
      return u < 0x20 || u == 0x7F;
    });
  };
  if (key == "engineio_sid" || key == "client_ip") return true;
  std::size_t colon = key.find(':');
  const std::string_view source = key.substr(0, colon);
  const std::string_view rest = colon == std::string_view::npos ? std::string_view() : key.substr(colon + 1);
  if (source == "engineio_sid" || source == "client_ip") {
    fail(quote(source) + " takes no name: " + quote(key));
    return false;
  }
  if (source == "cookie" || source == "header" || source == "query") {
    bool ok = colon != std::string_view::npos && (source == "query" ? query_name(rest) : token(rest));
    if (ok) return true;
    fail(quote(key) + " is not " + std::string(source) + ":NAME with a valid name");
    return false;
  }
  if (source == "jwt") {
    std::size_t c2 = rest.find(':');
    std::string_view where = rest.substr(0, c2);
    std::string_view after = c2 == std::string_view::npos ? std::string_view() : rest.substr(c2 + 1);
    std::size_t c3 = after.find(':');
    std::string_view name = after.substr(0, c3);
    std::string_view claim = c3 == std::string_view::npos ? std::string_view() : after.substr(c3 + 1);
    if ((where == "cookie" || where == "header") && c2 != std::string_view::npos &&
        c3 != std::string_view::npos && token(name) && !claim.empty() && !control(claim)) {
      return true;
    }
    fail(quote(key) + " is not jwt:cookie:NAME:CLAIM or jwt:header:NAME:CLAIM");
    return false;
  }
  fail("unknown source " + quote(source) +
       " (engineio_sid, client_ip, cookie:NAME, header:NAME, query:NAME, jwt:cookie:NAME:CLAIM, "
       "jwt:header:NAME:CLAIM)");
  return false;
}

std::optional<std::uint32_t> parseWorkers(std::string_view s, std::string* why) {
  if (s == "auto") {
    unsigned cpus = std::thread::hardware_concurrency();
    return std::clamp<std::uint32_t>(cpus, 1, kMaxWorkers);
  }
  auto n = parseUint<std::uint32_t>(s);
  if (!n || *n < 1 || *n > kMaxWorkers) {
    return Fail{why}(quote(s) + " is not 1.." + std::to_string(kMaxWorkers) + " or auto");
  }
  return n;
}

}  // namespace tether::conf
