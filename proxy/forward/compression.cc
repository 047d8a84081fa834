#include "proxy/forward/compression.h"

#include <brotli/encode.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <bit>

#include "proxy/http/headers.h"

namespace tether::forward {

std::string_view codingToken(Coding c) { return conf::toString(c); }

namespace {

bool isOws(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isOws(s.front())) s.remove_prefix(1);
  while (!s.empty() && isOws(s.back())) s.remove_suffix(1);
  return s;
}

bool isTchar(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                        std::string_view::npos);
}

bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return isTchar(c); });
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
int parseQ(std::string_view v) {
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return -1;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return q;
  if (v[1] != '.' || v.size() > 5) return -1;
  int scale = 100;
  for (char c : v.substr(2)) {
    if (c < '0' || c > '9') return -1;
    q += (c - '0') * scale;
    scale /= 10;
  }
  return q <= 1000 ? q : -1;
}

// Calls f(coding, q) for each well-formed element of an Accept-Encoding
// value; q in thousandths.
template <typename F>
void forEachElement(std::string_view value, F&& f) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view element = value.substr(0, comma);
    value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
    std::size_t semi = element.find(';');
    std::string_view coding = trim(element.substr(0, semi));
    if (coding.empty()) continue;  // empty list elements are allowed
    if (!isToken(coding)) continue;
    int q = 1000;
    bool ok = true;
    while (semi != std::string_view::npos) {
      std::string_view rest = element.substr(semi + 1);
      semi = rest.find(';');
      std::string_view param = trim(rest.substr(0, semi));
      std::size_t eq = param.find('=');
      if (eq == std::string_view::npos) {
        ok = false;
        break;
      }
      std::string_view name = trim(param.substr(0, eq));
      std::string_view val = trim(param.substr(eq + 1));
      if (http::iequals(name, "q")) {
        q = parseQ(val);
        if (q < 0) ok = false;
      }
      element = rest;
      if (!ok) break;
    }
    if (ok) f(coding, q);
  }
}

bool names(std::string_view token, Coding c) {
  if (c == Coding::kGzip) return http::iequals(token, "gzip") || http::iequals(token, "x-gzip");
  return http::iequals(token, codingToken(c));
}

}  // namespace

Coding negotiate(std::string_view accept_encoding, std::span<const Coding> offered) {
  // q per offered coding: -1 not named; star: the q of "*", -1 if absent.
  int q[4] = {-1, -1, -1, -1};
  int star = -1;
  forEachElement(accept_encoding, [&](std::string_view coding, int qv) {
    if (coding == "*") {
      star = std::max(star, qv);
      return;
    }
    for (std::size_t i = 0; i < offered.size() && i < 4; ++i)
      if (names(coding, offered[i])) q[i] = std::max(q[i], qv);
  });
  Coding best = Coding::kIdentity;
  int best_q = 0;
  for (std::size_t i = 0; i < offered.size() && i < 4; ++i) {
    int qi = q[i] >= 0 ? q[i] : star;
    if (qi > best_q) {
      best = offered[i];
      best_q = qi;
    }
  }
  return best;
}

namespace {

// Every value of the fields named `name`, in order (kOther fields only: the
// names compression asks about are not classified).
template <typename F>
void forEachOther(const http::HeaderList& h, std::string_view name, F&& f) {
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!h.dropped(i) && h.kind(i) == http::HeaderKind::kOther && http::iequals(h.name(i), name))
      f(i, h.value(i));
}

// Does a comma-separated list value hold `token` (case-insensitive)?
bool listHas(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    std::size_t semi = item.find_first_of("=;");
    if (http::iequals(trim(item.substr(0, semi)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string_view mediaType(std::string_view content_type) {
  return trim(content_type.substr(0, content_type.find(';')));
}

}  // namespace

Coding requestCoding(const http::RequestHead& r, const conf::Compression& c) {
  bool range = false;
  forEachOther(r.headers, "range", [&](std::size_t, std::string_view) { range = true; });
  if (range) return Coding::kIdentity;
  std::string joined;
  std::size_t fields = 0;
  std::string_view only;
  forEachOther(r.headers, "accept-encoding", [&](std::size_t, std::string_view v) {
    if (fields++ == 0) {
      only = v;
    } else {
      if (fields == 2) joined.assign(only);
      joined.append(",").append(v);
    }
  });
  if (fields == 0) return Coding::kIdentity;
  return negotiate(fields == 1 ? only : std::string_view(joined), c.algorithms);
}

bool contentTypeMatches(std::string_view media_type, std::span<const std::string> patterns) {
  std::string_view mt = mediaType(media_type);
  std::size_t slash = mt.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == mt.size()) return false;
  std::string_view type = mt.substr(0, slash), sub = mt.substr(slash + 1);
  for (const std::string& p : patterns) {
    std::string_view pv = p;
    std::size_t ps = pv.find('/');
    if (ps == std::string_view::npos || !http::iequals(pv.substr(0, ps), type)) continue;
    std::string_view psub = pv.substr(ps + 1);
    if (psub == "*") return true;
    if (psub.starts_with("*+")) {
      std::string_view suffix = psub.substr(1);  // "+json"
      if (sub.size() > suffix.size() &&
          http::iequals(sub.substr(sub.size() - suffix.size()), suffix))
        return true;
      continue;
    }
    if (http::iequals(psub, sub)) return true;
  }
  return false;
}

bool responseEligible(const http::ResponseHead& r, const conf::Compression& c) {
  if (r.status < 200 || r.status == 204 || r.status == 206 || r.status == 304) return false;
  const http::HeaderList& h = r.headers;
  long ce = h.find(http::HeaderKind::kContentEncoding);
  if (ce >= 0) {
    // Any coding but identity is already applied; several fields: refuse too.
    for (std::size_t i = 0; i < h.size(); ++i)
      if (!h.dropped(i) && h.kind(i) == http::HeaderKind::kContentEncoding &&
          !http::iequals(trim(h.value(i)), "identity"))
        return false;
  }
  if (h.find(http::HeaderKind::kContentRange) >= 0) return false;
  bool no_transform = false;
  forEachOther(h, "cache-control", [&](std::size_t, std::string_view v) {
    no_transform = no_transform || listHas(v, "no-transform");
  });
  if (no_transform) return false;
  long ct = h.find(http::HeaderKind::kContentType);
  if (ct < 0) return false;
  std::string_view type = mediaType(h.value(static_cast<std::size_t>(ct)));
  if (http::iequals(type, "text/event-stream")) return false;
  if (!contentTypeMatches(type, c.content_types)) return false;
  if (r.framing == http::Framing::kLength && r.content_length < c.min_length) return false;
  // A HEAD answer (framing kNone but a Content-Length field) is judged by that.
  if (r.framing == http::Framing::kNone) {
    long cl = h.find(http::HeaderKind::kContentLength);
    if (cl >= 0) {
      std::uint64_t n = 0;
      for (char d : trim(h.value(static_cast<std::size_t>(cl)))) {
        if (d < '0' || d > '9' || n > (UINT64_MAX - 9) / 10) return false;
        n = n * 10 + static_cast<std::uint64_t>(d - '0');
      }
      if (n < c.min_length) return false;
    }
  }
  return true;
}

void compressFields(http::ResponseHead& r, Coding coding, http::ExtraFields& extra,
                    std::string& scratch) {
  http::HeaderList& h = r.headers;
  scratch.clear();
  // Built values are appended to scratch first and viewed afterwards, so a
  // reallocation cannot move what a view points at.
  std::size_t vary_at = std::string::npos, vary_len = 0, etag_at = std::string::npos, etag_len = 0;
  bool vary_star = false, vary_has = false;
  forEachOther(h, "vary", [&](std::size_t, std::string_view v) {
    vary_star = vary_star || listHas(v, "*");
    vary_has = vary_has || listHas(v, "accept-encoding");
  });
  if (!vary_star && !vary_has) {
    vary_at = scratch.size();
    forEachOther(h, "vary", [&](std::size_t i, std::string_view v) {
      if (!trim(v).empty()) scratch.append(trim(v)).append(", ");
      h.drop(i);
    });
    scratch.append("Accept-Encoding");
    vary_len = scratch.size() - vary_at;
  }
  if (coding != Coding::kIdentity) {
    for (std::size_t i = 0; i < h.size(); ++i)
      if (!h.dropped(i) && (h.kind(i) == http::HeaderKind::kContentLength ||
                            h.kind(i) == http::HeaderKind::kContentEncoding))
        h.drop(i);
    forEachOther(h, "etag", [&](std::size_t i, std::string_view v) {
      std::string_view tag = trim(v);
      if (tag.starts_with("W/") || etag_at != std::string::npos) return;
      etag_at = scratch.size();
      scratch.append("W/").append(tag);
      etag_len = scratch.size() - etag_at;
      h.drop(i);
    });
  }
  std::string_view s = scratch;
  if (vary_at != std::string::npos) extra.add("Vary", s.substr(vary_at, vary_len));
  if (coding != Coding::kIdentity) {
    extra.add("Content-Encoding", codingToken(coding));
    if (etag_at != std::string::npos) extra.add("ETag", s.substr(etag_at, etag_len));
  }
}

namespace {

// The smallest window log in [lo, hi] that holds `length` bytes (hi when
// unknown).
int windowFor(std::uint64_t length, int lo, int hi) {
  if (length == 0) return hi;
  int need = static_cast<int>(std::bit_width(length - 1));  // ceil(log2(length))
  return std::clamp(need, lo, hi);
}

constexpr std::size_t kChunk = 16 * 1024;
constexpr int kTableLogZstd = 15;

// (zstd's smallest window log is 10; its constant is in the static-only API.)
class ZstdEncoder final : public Encoder {
 public:
  ZstdEncoder(int level, std::uint64_t hint) : cctx_(ZSTD_createCCtx()) {
    if (cctx_ == nullptr) return;
    int window = windowFor(hint, 10, kWindowLogZstd);
    // The match-finder tables no larger than the window needs (the level's own
    // would take 768 KiB at level 3 whatever the body).
    int tables = std::min(window, kTableLogZstd);
    ok_ = !ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_compressionLevel, level)) &&
          !ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_windowLog, window)) &&
          !ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_hashLog, tables)) &&
          !ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_chainLog, tables)) &&
          !ZSTD_isError(ZSTD_CCtx_setParameter(cctx_, ZSTD_c_checksumFlag, 0));
  }
  ~ZstdEncoder() override { ZSTD_freeCCtx(cctx_); }
  bool valid() const { return cctx_ != nullptr && ok_; }

  bool write(std::string_view in, std::string* out) override { return run(in, ZSTD_e_continue, out); }
  bool flush(std::string* out) override { return run({}, ZSTD_e_flush, out); }
  bool finish(std::string* out) override { return run({}, ZSTD_e_end, out); }

 private:
  bool run(std::string_view in, ZSTD_EndDirective mode, std::string* out) {
    if (!ok_) return false;
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    for (;;) {
      std::size_t at = out->size();
      out->resize(at + kChunk);
      ZSTD_outBuffer ob{out->data() + at, kChunk, 0};
      std::size_t left = ZSTD_compressStream2(cctx_, &ob, &ib, mode);
      out->resize(at + ob.pos);
      if (ZSTD_isError(left)) return ok_ = false;
      bool done = mode == ZSTD_e_continue ? ib.pos == ib.size : left == 0;
      if (done) return true;
    }
  }

  ZSTD_CCtx* cctx_;
  bool ok_ = false;
};

class BrotliEncoder final : public Encoder {
 public:
  BrotliEncoder(int level, std::uint64_t hint)
      : st_(BrotliEncoderCreateInstance(nullptr, nullptr, nullptr)) {
    if (st_ == nullptr) return;
    ok_ = BrotliEncoderSetParameter(st_, BROTLI_PARAM_QUALITY, static_cast<std::uint32_t>(level)) &&
          BrotliEncoderSetParameter(
              st_, BROTLI_PARAM_LGWIN,
              static_cast<std::uint32_t>(windowFor(hint, BROTLI_MIN_WINDOW_BITS, kWindowLogBrotli)));
    if (ok_ && hint != 0 && hint <= (1u << 30))
      ok_ = BrotliEncoderSetParameter(st_, BROTLI_PARAM_SIZE_HINT, static_cast<std::uint32_t>(hint));
  }
  ~BrotliEncoder() override { BrotliEncoderDestroyInstance(st_); }
  bool valid() const { return st_ != nullptr && ok_; }

  bool write(std::string_view in, std::string* out) override {
    return run(in, BROTLI_OPERATION_PROCESS, out);
  }
  bool flush(std::string* out) override { return run({}, BROTLI_OPERATION_FLUSH, out); }
  bool finish(std::string* out) override { return run({}, BROTLI_OPERATION_FINISH, out); }

 private:
  bool run(std::string_view in, BrotliEncoderOperation op, std::string* out) {
    if (!ok_) return false;
    std::size_t avail_in = in.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
    for (;;) {
      std::size_t at = out->size();
      out->resize(at + kChunk);
      std::size_t avail_out = kChunk;
      auto* next_out = reinterpret_cast<std::uint8_t*>(out->data() + at);
      if (!BrotliEncoderCompressStream(st_, op, &avail_in, &next_in, &avail_out, &next_out, nullptr)) {
        out->resize(at);
        return ok_ = false;
      }
      out->resize(at + kChunk - avail_out);
      if (avail_in == 0 && !BrotliEncoderHasMoreOutput(st_) &&
          (op != BROTLI_OPERATION_FINISH || BrotliEncoderIsFinished(st_)))
        return true;
    }
  }

  BrotliEncoderState* st_;
  bool ok_ = false;
};

class GzipEncoder final : public Encoder {
 public:
  GzipEncoder(int level, std::uint64_t hint) {
    // 16 + window bits: a gzip wrapper. memLevel 8 is zlib's default; with
    // the largest window that is 256 KiB in all (zlib's formula:
    // 4 << windowBits plus 512 << memLevel).
    ok_ = deflateInit2(&z_, level, Z_DEFLATED, 16 + windowFor(hint, 9, kWindowLogGzip), 8,
                       Z_DEFAULT_STRATEGY) == Z_OK;
    init_ = ok_;
  }
  ~GzipEncoder() override {
    if (init_) deflateEnd(&z_);
  }
  bool valid() const { return ok_; }

  bool write(std::string_view in, std::string* out) override { return run(in, Z_NO_FLUSH, out); }
  bool flush(std::string* out) override { return run({}, Z_SYNC_FLUSH, out); }
  bool finish(std::string* out) override { return run({}, Z_FINISH, out); }

 private:
  bool run(std::string_view in, int mode, std::string* out) {
    if (!ok_) return false;
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z_.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      std::size_t at = out->size();
      out->resize(at + kChunk);
      z_.next_out = reinterpret_cast<Bytef*>(out->data() + at);
      z_.avail_out = static_cast<uInt>(kChunk);
      int rc = deflate(&z_, mode);
      out->resize(at + kChunk - z_.avail_out);
      if (rc == Z_STREAM_ERROR) return ok_ = false;
      if (mode == Z_FINISH) {
        if (rc == Z_STREAM_END) return true;
        continue;
      }
      // Done once all input is taken and the output was not filled (so
      // nothing of a flush is left inside).
      if (z_.avail_in == 0 && z_.avail_out != 0) return true;
    }
  }

  z_stream z_{};
  bool ok_ = false;
  bool init_ = false;
};

template <typename E>
std::unique_ptr<Encoder> made(int level, std::uint64_t hint) {
  auto e = std::make_unique<E>(level, hint);
  if (!e->valid()) return nullptr;
  return e;
}

}  // namespace

std::unique_ptr<Encoder> makeEncoder(Coding coding, int level, std::uint64_t length_hint) {
  switch (coding) {
    case Coding::kZstd:
      return made<ZstdEncoder>(level, length_hint);
    case Coding::kBrotli:
      return made<BrotliEncoder>(level, length_hint);
    case Coding::kGzip:
      return made<GzipEncoder>(level, length_hint);
    case Coding::kIdentity:
      break;
  }
  return nullptr;
}

}  // namespace tether::forward
