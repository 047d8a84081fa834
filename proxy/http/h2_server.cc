// nghttp2 (Debian 12's 1.52) does the framing, HPACK and RFC 9113 §8's
// request checks: pseudo-headers present, unique and first; lower-case
// names; Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding,
// Upgrade and TE other than "trailers"; CR, LF, NUL and edge blanks in
// values; :protocol only when enabled (each a RST_STREAM PROTOCOL_ERROR
// before any field reaches onHeader); Content-Length against the DATA
// received. It makes a WINDOW_UPDATE of 0, a WINDOW_UPDATE for an idle
// stream and DATA after END_STREAM connection errors, caps CONTINUATION
// frames per block (8, without a GOAWAY of its own) and queued PING/SETTINGS
// acknowledgements (1000). tests/unit/proxy/http/h2_server_test.cc shows
// each. What it does not do, tether adds here: the header list bound with a
// 431, the concurrency slot held until released(), the Rapid Reset ratio,
// the glitch budget, the stream cap over a connection's life, and a fallback
// check of the connection-specific fields.
#include "proxy/http/h2_server.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <utility>
#include <vector>

#include "proxy/http/h2_memory.h"
#include "proxy/io/sanitizer.h"

namespace tether::http {

// A stream's state, reset as a whole when its entry is used again
// (Stream::recycle); its storage is the Stream's own.
struct H2StreamState {
  std::int32_t id = 0;
  bool has_authority = false, has_protocol = false;
  bool head_request = false;  // HEAD: the response has no body
  std::size_t header_bytes = 0;
  bool oversized = false;   // the header list passed its bound: 431
  bool malformed = false;   // a connection-specific field: PROTOCOL_ERROR
  bool head_done = false;
  bool announced = false;   // onRequestHead fired
  bool local = false;       // answered or reset by the codec; the caller never saw it
  bool stop_body = false;   // answered locally mid-request: RST_STREAM(NO_ERROR) after the answer
  bool request_ended = false;
  bool final_head = false;  // a final response head was submitted
  bool bodyless = false;    // ... without a body (END_STREAM on it)
  bool response_ended = false;  // END_STREAM went out
  bool reset_by_us = false;
  bool body_end = false;    // the caller ended the body (all of it is in `body`)
  bool deferred = false;    // nghttp2 waits for resume_data
  bool blocked = false;     // sendBody took less than offered: onStreamWritable is due
  bool closed = false;
  bool released = false;
  std::size_t body_off = 0;
  bool has_trailers = false;
  std::size_t unconsumed = 0;  // request body bytes delivered and not yet consumed()
};

struct H2ServerCodec::Stream : H2StreamState {
  std::unique_ptr<RequestHead> head = std::make_unique<RequestHead>();  // never null but in onRequestHead
  HeaderList trailers;
  std::string method, path, authority, cookies;
  std::string body;         // queued response body, at most per_stream_buffer bytes
  std::vector<std::pair<std::string, std::string>> response_trailers;

  std::size_t queued() const { return body.size() - body_off; }

  // As new, keeping its storage for the next stream while it is small (what
  // an ordinary request needs): a connection opens streams without
  // allocating once its worker has spares (H2ServerCodec::open), and no spare
  // holds more than about kKeptBytes of what a large one left.
  static constexpr std::size_t kKeptBytes = 4096;
  static void clearSmall(std::string& s) {
    s.clear();
    if (s.capacity() > kKeptBytes) std::string().swap(s);
  }
  void recycle() {
    static_cast<H2StreamState&>(*this) = H2StreamState{};
    if (!head) head = std::make_unique<RequestHead>();  // the caller kept it
    head->clearKeeping(kKeptBytes);
    trailers.clearKeeping(kKeptBytes);
    clearSmall(method);
    clearSmall(path);
    clearSmall(authority);
    clearSmall(cookies);
    clearSmall(body);
    std::vector<std::pair<std::string, std::string>>().swap(response_trailers);
  }
};

namespace {

bool hopByHop(HeaderKind k) {
  switch (k) {
    case HeaderKind::kConnection:
    case HeaderKind::kKeepAlive:
    case HeaderKind::kProxyConnection:
    case HeaderKind::kTransferEncoding:
    case HeaderKind::kUpgrade:
      return true;
    default:
      return false;
  }
}

// The nghttp2 name/value pairs of a head, pointing at the head's own bytes:
// nghttp2 copies every pair on submit and lowers the names as it does
// (nghttp2_submit_response and friends), so the views need only outlive the
// submit call.
class NvList {
 public:
  void clear() { nv_.clear(); }
  void reserve(std::size_t fields) { nv_.reserve(fields); }
  // `no_index`: a value unique to its message (X-Request-Id) is sent as a
  // literal never indexed (RFC 7541 §6.2.3): in the dynamic table it would
  // only evict the fields that repeat, and nghttp2's table keeps the entries
  // of one name in one chain, which every later lookup of that name walks.
  void add(std::string_view name, std::string_view value, bool no_index = false) {
    nghttp2_nv nv;
    // nghttp2 writes through neither: it reads them into its copy.
    nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
    nv.namelen = name.size();
    nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
    nv.valuelen = value.size();
    nv.flags = no_index ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    nv_.push_back(nv);
  }
  void addFields(const HeaderList& h, bool trailers) {
    for (std::size_t i = 0; i < h.size(); ++i) {
      if (h.dropped(i) || hopByHop(h.kind(i))) continue;
      if (trailers && (h.kind(i) == HeaderKind::kContentLength || h.kind(i) == HeaderKind::kTe)) continue;
      add(h.name(i), h.value(i), h.kind(i) == HeaderKind::kXRequestId);
    }
  }
  std::vector<nghttp2_nv>& build() { return nv_; }

 private:
  std::vector<nghttp2_nv> nv_;
};

// One list per worker thread, reused for every head it submits (a codec
// lives on one loop; nghttp2 copies the pairs on submit): no allocation
// per response once it has grown.
NvList& scratchNv() {
  thread_local NvList nv;
  nv.clear();
  return nv;
}

}  // namespace

// nghttp2's callbacks, as static functions with access to the codec.
struct H2Callbacks {
  static H2ServerCodec& codec(void* ud) { return *static_cast<H2ServerCodec*>(ud); }

  static int onBeginHeaders(nghttp2_session* session, const nghttp2_frame* frame, void* ud) {
    H2ServerCodec& c = codec(ud);
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    std::int32_t id = frame->hd.stream_id;
    ++c.streams_seen_;
    if (c.final_goaway_ || c.streams_seen_ > c.settings_.max_streams_per_connection ||
        c.streams_.size() >= c.settings_.max_concurrent_streams) {
      // Not in streams_: its fields, body and close are ignored (counted
      // as refused when the RST_STREAM goes out: onFrameSend).
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
      return c.glitch() ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    if (c.streams_seen_ == c.settings_.max_streams_per_connection) c.last_stream_ = id;
    c.open(id);
    return 0;
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                      const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* ud) {
    H2ServerCodec& c = codec(ud);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    H2ServerCodec::Stream* s = c.find(frame->hd.stream_id);
    if (!s || s->local) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    // RFC 9113 §6.5.2: each field counts its name, its value and 32.
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > c.settings_.max_header_list_bytes) s->oversized = true;
    if (s->oversized) return 0;  // decoded (HPACK state), not stored
    if (s->head_done) {
      s->trailers.add(n, v);
      return 0;
    }
    if (!n.empty() && n[0] == ':') {
      if (n == ":method") s->method.assign(v);
      else if (n == ":path") s->path.assign(v);
      else if (n == ":authority") s->authority.assign(v), s->has_authority = true;
      else if (n == ":protocol") s->head->protocol.assign(v), s->has_protocol = true;
      return 0;  // :scheme: the listener knows whether it is TLS
    }
    HeaderKind k = classifyHeader(n);
    if (hopByHop(k) || (k == HeaderKind::kTe && v != "trailers")) {
      s->malformed = true;  // RFC 9113 §8.2.2 (nghttp2 refuses these first)
      return 0;
    }
    if (k == HeaderKind::kCookie) {
      // RFC 9113 §8.2.3: crumbs joined again for an HTTP/1.1 upstream.
      if (!s->cookies.empty()) s->cookies.append("; ");
      s->cookies.append(v);
      return 0;
    }
    s->head->headers.add(n, v);
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    H2ServerCodec& c = codec(ud);
    const bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    H2ServerCodec::Stream* s = frame->hd.stream_id ? c.find(frame->hd.stream_id) : nullptr;
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS:
        if (!s || s->local) break;
        if (!s->head_done) {
          c.onHeadersDone(*s, end_stream);
        } else if (!s->request_ended) {
          s->request_ended = true;
          if (s->oversized) {
            c.resetStream(s->id, NGHTTP2_REFUSED_STREAM);  // trailers past the bound
            break;
          }
          c.cb_.onRequestEnd(s->id, &s->trailers);
        }
        break;
      case NGHTTP2_DATA:
        if (frame->hd.length == 0 && !end_stream && !c.glitch()) return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (s && !s->local && end_stream && !s->request_ended) {
          s->request_ended = true;
          c.cb_.onRequestEnd(s->id, nullptr);
        }
        break;
      case NGHTTP2_RST_STREAM:
        if (s && !s->response_ended && !s->local) {
          ++c.counters_.premature_resets;
          c.checkResets();
          if (c.error_ != H2ServerCodec::Error::kNone) return NGHTTP2_ERR_CALLBACK_FAILURE;
        }
        break;
      case NGHTTP2_PING:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !c.glitch()) return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
      case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && ++c.settings_seen_ > 1 && !c.glitch())
          return NGHTTP2_ERR_CALLBACK_FAILURE;
        break;
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        break;
      default:
        break;
    }
    return c.error_ == H2ServerCodec::Error::kNone ? 0 : NGHTTP2_ERR_CALLBACK_FAILURE;
  }

  // Every frame's header, before nghttp2 reads it: frames nghttp2 drops
  // without a callback are counted here.
  static int onBeginFrame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* ud) {
    H2ServerCodec& c = codec(ud);
    // A WINDOW_UPDATE or RST_STREAM for a stream that is over: nghttp2
    // keeps closed streams a while (the priority tree), so "found" is not
    // "open".
    auto over = [&] {
      nghttp2_stream* st = nghttp2_session_find_stream(session, hd->stream_id);
      return !st || nghttp2_stream_get_state(st) == NGHTTP2_STREAM_STATE_CLOSED;
    };
    bool odd = hd->type == NGHTTP2_PRIORITY ||
               ((hd->type == NGHTTP2_WINDOW_UPDATE || hd->type == NGHTTP2_RST_STREAM) && hd->stream_id &&
                hd->stream_id <= nghttp2_session_get_last_proc_stream_id(session) && over());
    if (odd && !c.glitch()) return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
  }

  // Invalid frames on a stream are counted by the RST_STREAM nghttp2 sends
  // for them (onFrameSend); here, only that the caller must not see it.
  static int onInvalidFrame(nghttp2_session*, const nghttp2_frame* frame, int, void* ud) {
    H2ServerCodec& c = codec(ud);
    if (H2ServerCodec::Stream* s = frame->hd.stream_id ? c.find(frame->hd.stream_id) : nullptr; s && !s->announced) {
      s->local = true;
    }
    return 0;
  }

  static int onData(nghttp2_session* session, std::uint8_t, std::int32_t id, const std::uint8_t* data,
                    std::size_t len, void* ud) {
    H2ServerCodec& c = codec(ud);
    H2ServerCodec::Stream* s = c.find(id);
    if (!s || s->local || !s->announced || s->request_ended) {
      nghttp2_session_consume(session, id, len);  // nobody takes it: the windows stay open
      return 0;
    }
    s->unconsumed += len;
    c.cb_.onRequestBody(id, reinterpret_cast<const char*>(data), len);
    return 0;
  }

  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* ud) {
    H2ServerCodec& c = codec(ud);
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        c.error_ == H2ServerCodec::Error::kNone) {
      c.fail(H2ServerCodec::Error::kProtocol, NGHTTP2_NO_ERROR);  // nghttp2 answered a connection error itself
    }
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code == NGHTTP2_REFUSED_STREAM) {
      ++c.counters_.streams_refused;  // ours (no slot) or nghttp2's (before the SETTINGS ACK)
    } else if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code != NGHTTP2_NO_ERROR) {
      // A stream tether reset for a fault of the client's (MadeYouReset).
      H2ServerCodec::Stream* s = c.find(frame->hd.stream_id);
      if (!s || !s->reset_by_us) {
        ++c.counters_.stream_protocol_errors;
        c.glitch();  // past the budget: the GOAWAY goes out next
      }
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (H2ServerCodec::Stream* s = c.find(frame->hd.stream_id)) {
        s->response_ended = true;
        if (s->stop_body && !s->request_ended && !s->closed) {
          s->stop_body = false;
          nghttp2_submit_rst_stream(c.session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
        }
      }
    }
    return 0;
  }

  static int onStreamClose(nghttp2_session* session, std::int32_t id, std::uint32_t code, void* ud) {
    H2ServerCodec& c = codec(ud);
    H2ServerCodec::Stream* s = c.find(id);
    if (!s) return 0;
    s->closed = true;
    if (code == NGHTTP2_NO_ERROR && s->request_ended && s->response_ended) c.refund();
    if (s->local) s->released = true;
    if (s->announced && !s->local && !s->reset_by_us && !(s->request_ended && s->response_ended)) {
      c.cb_.onStreamReset(id, code);
      s = c.find(id);  // the caller may have released it
      if (!s) return 0;
    }
    if (s->released) {
      if (s->unconsumed) nghttp2_session_consume_connection(session, s->unconsumed);
      c.drop(id);
    }
    return 0;
  }

  static ssize_t readBody(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length,
                          std::uint32_t* flags, nghttp2_data_source* source, void* ud) {
    H2ServerCodec& c = codec(ud);
    auto* s = static_cast<H2ServerCodec::Stream*>(source->ptr);
    std::size_t n = std::min(length, s->queued());
    if (n) {
      std::memcpy(buf, s->body.data() + s->body_off, n);  // copy_n from char to uint8_t is a byte loop
      s->body_off += n;
      if (s->body_off == s->body.size()) {
        s->body.clear();
        s->body_off = 0;
      }
    }
    if (s->queued() == 0 && s->body_end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (s->has_trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        NvList& nv = scratchNv();
        for (const auto& [name, value] : s->response_trailers) nv.add(name, value);
        auto& v = nv.build();
        nghttp2_submit_trailer(c.session_, s->id, v.data(), v.size());
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }
};

H2ServerCodec::H2ServerCodec(Callbacks& callbacks, const Settings& settings) : cb_(callbacks), settings_(settings) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
    if (cbs) nghttp2_session_callbacks_del(cbs);
    error_ = Error::kInternal;
    return;
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, H2Callbacks::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cbs, H2Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, H2Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, H2Callbacks::onInvalidFrame);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, H2Callbacks::onBeginFrame);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, H2Callbacks::onData);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, H2Callbacks::onFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, H2Callbacks::onStreamClose);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_outbound_ack(opt, 1000);
  nghttp2_option_set_max_continuations(opt, 8);
  // No closed streams kept for RFC 7540 priorities (deprecated by RFC 9113):
  // less bookkeeping per stream.
  nghttp2_option_set_no_closed_streams(opt, 1);
  int rv = nghttp2_session_server_new3(&session_, cbs, this, opt, h2Memory());
  nghttp2_session_callbacks_del(cbs);
  nghttp2_option_del(opt);
  if (rv != 0) {
    session_ = nullptr;
    error_ = Error::kInternal;
    return;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, settings_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings_.initial_window},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, settings_.max_frame_size},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, settings_.max_header_list_bytes},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},
  };
  std::size_t n = settings_.enable_connect_protocol ? 5 : 4;
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, n) != 0 ||
      nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                            static_cast<std::int32_t>(settings_.connection_window)) != 0) {
    error_ = Error::kInternal;
  }
}

H2ServerCodec::~H2ServerCodec() {
  if (session_) nghttp2_session_del(session_);
}

// Calls come in runs for one stream (a response's head, body and end): the
// last one found is kept, and forgotten when its stream goes.
H2ServerCodec::Stream* H2ServerCodec::find(std::int32_t id) const {
  if (id == last_id_ && last_) return last_;
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  last_id_ = id;
  last_ = it->second.get();
  return last_;
}

// At most kSpareStreams spares a thread, each holding a few hundred bytes
// (at most Stream::kKeptBytes in any one of its buffers). None under
// AddressSanitizer: there every closed stream is freed, so that a pointer
// kept to one is reported rather than aliasing the next stream.
#ifdef TETHER_ASAN
constexpr std::size_t kSpareStreams = 0;
#else
constexpr std::size_t kSpareStreams = 64;
#endif
thread_local std::vector<H2ServerCodec::StreamMap::node_type> H2ServerCodec::spare_streams_;

void H2ServerCodec::open(std::int32_t id) {
  if (spare_streams_.empty()) {
    auto s = std::make_unique<Stream>();
    s->id = id;
    streams_.emplace(id, std::move(s));
    return;
  }
  StreamMap::node_type n = std::move(spare_streams_.back());
  spare_streams_.pop_back();
  n.key() = id;
  n.mapped()->id = id;
  streams_.insert(std::move(n));
}

void H2ServerCodec::drop(std::int32_t id) {
  if (id == last_id_) last_ = nullptr;
  StreamMap::node_type n = streams_.extract(id);
  if (!n || spare_streams_.size() >= kSpareStreams) return;
  n.mapped()->recycle();
  spare_streams_.push_back(std::move(n));
}

bool H2ServerCodec::glitch() {
  ++counters_.glitches;
  if (++glitch_level_ > settings_.glitch_budget && error_ == Error::kNone) fail(Error::kGlitches, NGHTTP2_ENHANCE_YOUR_CALM);
  return error_ == Error::kNone;
}

void H2ServerCodec::refund() {
  if (glitch_level_) --glitch_level_;
}

void H2ServerCodec::fail(Error e, std::uint32_t goaway_code) {
  if (error_ != Error::kNone) return;
  error_ = e;
  switch (e) {
    case Error::kRapidReset: ++counters_.goaway_rapid_reset; break;
    case Error::kGlitches: ++counters_.goaway_glitches; break;
    case Error::kFlood: ++counters_.goaway_flood; break;
    case Error::kProtocol: ++counters_.goaway_protocol; break;
    default: break;
  }
  going_away_ = final_goaway_ = true;
  if (session_ && goaway_code != NGHTTP2_NO_ERROR) {
    nghttp2_session_terminate_session2(session_, last_stream_ ? last_stream_ : nghttp2_session_get_last_proc_stream_id(session_),
                                       goaway_code);
  }
}

void H2ServerCodec::checkResets() {
  std::uint64_t p = counters_.premature_resets;
  if (p > settings_.max_premature_resets ||
      (streams_seen_ >= settings_.rapid_reset_min_streams && p * 2 >= streams_seen_)) {
    fail(Error::kRapidReset, NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

void H2ServerCodec::answerLocally(Stream& s, std::uint16_t status) {
  s.local = true;
  char digits[4];
  auto r = std::to_chars(digits, digits + sizeof digits, status);
  NvList& nv = scratchNv();
  nv.add(":status", std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
  nv.add("content-length", "0");
  auto& v = nv.build();
  nghttp2_submit_response(session_, s.id, v.data(), v.size(), nullptr);
  // RFC 9113 §8.1: the answer came before the request's end; its body is
  // stopped once the answer is out (onFrameSend: nghttp2 would send a reset
  // queued now before the answer).
  s.stop_body = !s.request_ended;
}

void H2ServerCodec::onHeadersDone(Stream& s, bool end_stream) {
  s.head_done = true;
  s.request_ended = end_stream;
  RequestHead& h = *s.head;
  auto refuse = [&](std::uint16_t status) {
    glitch();
    answerLocally(s, status);
  };
  if (s.oversized) {
    ++counters_.headers_too_large;
    return refuse(431);
  }
  if (s.malformed) {
    s.local = true;  // counted when its RST_STREAM goes out
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  int m = methodCode(s.method);
  if (m < 0) return refuse(400);
  h.method = static_cast<std::uint8_t>(m);
  h.version_minor = 1;
  h.keep_alive = true;
  if (h.method == kMethodConnect && !s.has_protocol) return refuse(405);  // as over HTTP/1: not served
  h.upgrade = s.has_protocol;
  h.target = std::move(s.path);
  if (h.target.find('#') != std::string::npos) return refuse(400);
  if (h.target.empty() || (h.target[0] != '/' && !(h.target == "*" && h.method == kMethodOptions))) return refuse(400);

  // :authority is the Host (RFC 9113 §8.3.1); a Host field that names
  // another is malformed. The head gets a Host field as an HTTP/1.1 one has.
  long host = h.headers.find(HeaderKind::kHost);
  if (s.has_authority) {
    if (host >= 0 && h.headers.value(static_cast<std::size_t>(host)) != s.authority) return refuse(400);
    h.authority = std::move(s.authority);
    if (host < 0) h.headers.add("host", h.authority);
  } else if (host >= 0) {
    h.authority.assign(h.headers.value(static_cast<std::size_t>(host)));
  }
  if (h.authority.empty() || !validAuthority(h.authority)) return refuse(400);
  if (!s.cookies.empty()) h.headers.add("cookie", s.cookies);
  std::string().swap(s.cookies);

  // Framing: the HTTP/1.1 upstream request is Content-Length or chunked.
  long cl = h.headers.find(HeaderKind::kContentLength);
  if (cl >= 0) {
    std::string_view v = h.headers.value(static_cast<std::size_t>(cl));
    std::uint64_t n = 0;
    auto r = std::from_chars(v.data(), v.data() + v.size(), n);
    if (r.ec != std::errc() || r.ptr != v.data() + v.size()) return refuse(400);
    if (settings_.max_request_body_bytes && n > settings_.max_request_body_bytes) return refuse(413);
    h.framing = Framing::kLength;
    h.content_length = n;
  } else {
    h.framing = end_stream ? Framing::kNone : Framing::kChunked;
  }
  s.head_request = h.method == kMethodHead;
  s.announced = true;
  cb_.onRequestHead(s.id, s.head, end_stream);  // the head is the caller's from here on
  if (end_stream && find(s.id) == &s && !s.closed) cb_.onRequestEnd(s.id, nullptr);
}

H2ServerCodec::Error H2ServerCodec::feed(const char* data, std::size_t len) {
  if (error_ != Error::kNone || !session_) return error_;
  in_feed_ = true;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(data), len);
  in_feed_ = false;
  if (rv < 0 && error_ == Error::kNone) {
    if (rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS) {
      fail(Error::kFlood, NGHTTP2_ENHANCE_YOUR_CALM);
    } else if (rv == NGHTTP2_ERR_NOMEM || rv == NGHTTP2_ERR_CALLBACK_FAILURE) {
      fail(Error::kInternal, NGHTTP2_INTERNAL_ERROR);
    } else {
      fail(Error::kProtocol, NGHTTP2_PROTOCOL_ERROR);  // a no-op when nghttp2 queued its own GOAWAY
    }
  }
  // A connection error nghttp2 answers itself shows when its GOAWAY is
  // staged (onFrameSend): stage now, so that feed() returns it.
  if (!in_flight_) output();
  if (error_ == Error::kNone && streams_seen_ >= settings_.max_streams_per_connection && !final_goaway_) {
    ++counters_.goaway_graceful;
    going_away_ = final_goaway_ = true;
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_stream_, NGHTTP2_NO_ERROR, nullptr, 0);
  }
  noteWritable();
  return error_;
}

std::string_view H2ServerCodec::output() {
  if (in_flight_) return std::string_view(out_).substr(out_off_);
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  while (session_ && out_.size() - out_off_ < settings_.output_bound) {
    const std::uint8_t* p = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &p);
    if (n < 0) {
      fail(Error::kInternal, NGHTTP2_NO_ERROR);
      break;
    }
    if (n == 0) break;
    out_.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
  }
  return std::string_view(out_).substr(out_off_);
}

void H2ServerCodec::wrote(std::size_t n) {
  in_flight_ = false;
  out_off_ = std::min(out_.size(), out_off_ + n);
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  }
  noteWritable();
}

void H2ServerCodec::noteWritable() {
  std::int32_t ids[64];
  std::size_t n = 0;
  for (auto& [id, s] : streams_) {
    if (n == std::size(ids)) break;  // the rest on the next call
    if (s->blocked && writable(id) > 0) {
      s->blocked = false;
      ids[n++] = id;
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    if (find(ids[i])) cb_.onStreamWritable(ids[i]);
}

bool H2ServerCodec::submitResponse(std::int32_t stream, const ResponseHead& head, bool end_stream,
                                   const ExtraFields* extra) {
  Stream* s = find(stream);
  if (!s || s->closed || s->local || s->final_head || s->reset_by_us || error_ != Error::kNone) return false;
  std::uint16_t status = head.status;
  if (status == 101) {
    if (!s->has_protocol) return false;  // only an extended CONNECT is answered 101 (200)
    status = 200;  // RFC 8441 §5: extended CONNECT's success is a 200
  }
  if (status < 100 || status > 999) return false;
  char digits[4];
  auto r = std::to_chars(digits, digits + sizeof digits, status);
  NvList& nv = scratchNv();
  nv.reserve(head.headers.size() + 1 + (extra ? extra->count : 0));
  nv.add(":status", std::string_view(digits, static_cast<std::size_t>(r.ptr - digits)));
  nv.addFields(head.headers, false);
  if (extra) {
    for (int i = 0; i < extra->count; ++i) {
      const ExtraFields::Field& f = extra->items[i];
      HeaderKind k = classifyHeader(f.name);
      if (!hopByHop(k)) nv.add(f.name, f.value, k == HeaderKind::kXRequestId);
    }
  }
  auto& v = nv.build();
  if (status < 200) {
    return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, stream, nullptr, v.data(), v.size(), nullptr) >= 0;
  }
  s->final_head = true;
  s->bodyless = end_stream || s->head_request || status == 204 || status == 304;
  if (s->bodyless) {
    s->body_end = true;
    return nghttp2_submit_response(session_, stream, v.data(), v.size(), nullptr) == 0;
  }
  nghttp2_data_provider prd;
  prd.source.ptr = s;
  prd.read_callback = H2Callbacks::readBody;
  return nghttp2_submit_response(session_, stream, v.data(), v.size(), &prd) == 0;
}

std::size_t H2ServerCodec::writable(std::int32_t stream) const {
  Stream* s = find(stream);
  if (!s || s->closed || !s->final_head || s->bodyless || s->body_end || s->reset_by_us) return 0;
  std::int64_t window = std::min(nghttp2_session_get_stream_remote_window_size(session_, stream),
                                 nghttp2_session_get_remote_window_size(session_));
  std::int64_t room = static_cast<std::int64_t>(settings_.per_stream_buffer) - static_cast<std::int64_t>(s->queued());
  std::int64_t open = std::min(room, window - static_cast<std::int64_t>(s->queued()));
  return open > 0 ? static_cast<std::size_t>(open) : 0;
}

void H2ServerCodec::resume(Stream& s) {
  if (s.deferred) {
    s.deferred = false;
    nghttp2_session_resume_data(session_, s.id);
  }
}

std::size_t H2ServerCodec::sendBody(std::int32_t stream, const char* data, std::size_t len, bool end) {
  Stream* s = find(stream);
  if (!s || !s->final_head) return 0;
  if (s->bodyless) return len;  // HEAD, 204, 304: the body is not sent
  if (s->closed || s->body_end || s->reset_by_us) return 0;
  std::size_t n = std::min(len, writable(stream));
  if (n) s->body.append(data, n);
  if (n < len) {
    s->blocked = true;
    end = false;
  }
  if (end) s->body_end = true;
  if (n || end) resume(*s);
  return n;
}

bool H2ServerCodec::submitTrailers(std::int32_t stream, const HeaderList& trailers) {
  Stream* s = find(stream);
  if (!s || s->closed || !s->final_head || s->bodyless || s->body_end || s->reset_by_us) return false;
  s->response_trailers.clear();
  for (std::size_t i = 0; i < trailers.size(); ++i) {
    if (trailers.dropped(i) || hopByHop(trailers.kind(i))) continue;
    // Copied: they go out when the body has (readBody), and nghttp2 lowers
    // the names as it submits them.
    s->response_trailers.emplace_back(std::string(trailers.name(i)), std::string(trailers.value(i)));
  }
  s->has_trailers = !s->response_trailers.empty();
  s->body_end = true;
  resume(*s);
  return true;
}

void H2ServerCodec::stopRequestBody(std::int32_t stream) {
  Stream* s = find(stream);
  if (!s || s->closed || s->request_ended || s->reset_by_us) return;
  if (!s->response_ended) {
    s->stop_body = true;  // onFrameSend, with the END_STREAM
    return;
  }
  s->reset_by_us = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, NGHTTP2_NO_ERROR);
}

void H2ServerCodec::resetStream(std::int32_t stream, std::uint32_t code) {
  Stream* s = find(stream);
  if (!s || s->closed || s->reset_by_us) return;
  s->reset_by_us = true;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream, code);
}

void H2ServerCodec::consumed(std::int32_t stream, std::size_t n) {
  Stream* s = find(stream);
  if (!s) return;
  n = std::min(n, s->unconsumed);
  s->unconsumed -= n;
  if (s->closed) {
    nghttp2_session_consume_connection(session_, n);
  } else {
    nghttp2_session_consume(session_, stream, n);
  }
}

void H2ServerCodec::released(std::int32_t stream) {
  Stream* s = find(stream);
  if (!s) return;
  s->released = true;
  if (!s->closed) return;  // the slot frees when the stream closes
  if (s->unconsumed) nghttp2_session_consume_connection(session_, s->unconsumed);
  drop(stream);
}

void H2ServerCodec::shutdownNotice() {
  if (going_away_ || !session_) return;
  going_away_ = true;
  nghttp2_submit_shutdown_notice(session_);
}

void H2ServerCodec::goAway() {
  if (final_goaway_ || !session_) return;
  going_away_ = final_goaway_ = true;
  ++counters_.goaway_graceful;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

bool H2ServerCodec::wantsClose() const {
  if (!session_) return true;
  if (out_off_ != out_.size() || nghttp2_session_want_write(session_)) return false;
  if (error_ != Error::kNone) return true;
  if (!nghttp2_session_want_read(session_) && streams_.empty()) return true;
  return final_goaway_ && streams_.empty();
}

}  // namespace tether::http
