// Test drivers for the HTTP/2 server codec: an nghttp2 client session that
// speaks well-formed HTTP/2 through memory, a raw frame builder for the
// frames a well-behaved client would never send, and a recorder of the
// codec's events. No sockets; everything runs inside the test's call.
#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "proxy/http/h2_server.h"

namespace tether::http::testing {

using Fields = std::vector<std::pair<std::string, std::string>>;

inline std::vector<nghttp2_nv> toNv(const Fields& f) {
  std::vector<nghttp2_nv> nv;
  for (const auto& [n, v] : f) {
    nv.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

// One raw frame (RFC 9113 §4.1).
inline std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, const std::string& payload) {
  std::string f;
  std::size_t n = payload.size();
  f.push_back(static_cast<char>(n >> 16));
  f.push_back(static_cast<char>(n >> 8));
  f.push_back(static_cast<char>(n));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int sh = 24; sh >= 0; sh -= 8) f.push_back(static_cast<char>((stream >> sh) & (sh == 24 ? 0x7f : 0xff)));
  return f + payload;
}

inline std::string be32(std::uint32_t v) {
  std::string s;
  for (int sh = 24; sh >= 0; sh -= 8) s.push_back(static_cast<char>(v >> sh));
  return s;
}

inline const std::string kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
inline std::string clientStart() { return kPreface + frame(NGHTTP2_SETTINGS, 0, 0, ""); }

// An HPACK encoder with its own dynamic table: header blocks with any
// fields, valid or not.
class Hpack {
 public:
  Hpack() { nghttp2_hd_deflate_new(&d_, 4096); }
  ~Hpack() { nghttp2_hd_deflate_del(d_); }
  std::string block(const Fields& f) {
    auto nv = toNv(f);
    std::string out(nghttp2_hd_deflate_bound(d_, nv.data(), nv.size()), '\0');
    ssize_t n = nghttp2_hd_deflate_hd(d_, reinterpret_cast<std::uint8_t*>(out.data()), out.size(), nv.data(), nv.size());
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  }

 private:
  nghttp2_hd_deflater* d_ = nullptr;
};

inline Fields getRequest(const std::string& path = "/", const std::string& method = "GET") {
  return {{":method", method}, {":scheme", "https"}, {":authority", "chat.example"}, {":path", path}};
}

// What the codec told its caller, and hooks to answer from inside.
struct Recorder : H2ServerCodec::Callbacks {
  struct Req {
    RequestHead head;
    bool end_stream_at_head = false;
    std::string body;
    bool ended = false;
    HeaderList trailers;
    bool had_trailers = false;
    long reset = -1;
    int writable = 0;
  };
  std::map<std::int32_t, Req> reqs;
  std::vector<std::int32_t> order;
  std::function<void(std::int32_t)> on_head, on_writable, on_reset;

  void onRequestHead(std::int32_t id, std::unique_ptr<RequestHead>& h, bool end_stream) override {
    reqs[id].head = *h;
    reqs[id].end_stream_at_head = end_stream;
    order.push_back(id);
    if (on_head) on_head(id);
  }
  void onRequestBody(std::int32_t id, const char* d, std::size_t n) override { reqs[id].body.append(d, n); }
  void onRequestEnd(std::int32_t id, const HeaderList* t) override {
    reqs[id].ended = true;
    if (t) reqs[id].trailers = *t, reqs[id].had_trailers = true;
  }
  void onStreamReset(std::int32_t id, std::uint32_t code) override {
    reqs[id].reset = code;
    if (on_reset) on_reset(id);
  }
  void onStreamWritable(std::int32_t id) override {
    ++reqs[id].writable;
    if (on_writable) on_writable(id);
  }
};

// A well-behaved HTTP/2 client (nghttp2's own), through memory.
class Client {
 public:
  struct Resp {
    std::vector<std::string> statuses;  // 1xx heads first
    Fields headers, trailers;
    std::vector<std::string> never_indexed;  // names sent as literals never indexed (RFC 7541 §6.2.3)
    std::string body;
    bool ended = false;
    long closed = -1;  // the stream's close code
    int heads = 0;
  };
  std::map<std::int32_t, Resp> resps;
  long goaway_code = -1;
  std::int32_t goaway_last = -1;
  int goaways = 0;
  std::uint32_t peer_connect_protocol = 0;

  explicit Client(std::vector<nghttp2_settings_entry> settings = {}, bool auto_window = true) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, onHeader);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, onBeginHeaders);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, onData);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, onFrame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, onClose);
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (!auto_window) nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_client_new2(&s_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  }
  ~Client() { nghttp2_session_del(s_); }
  nghttp2_session* session() { return s_; }

  // A request; `body` is sent after the head (none: END_STREAM on HEADERS).
  std::int32_t request(const Fields& f, const std::string* body = nullptr, const Fields* trailers = nullptr) {
    auto nv = toNv(f);
    Out* o = nullptr;
    nghttp2_data_provider prd{};
    if (body) {
      outs_.push_back(std::make_unique<Out>());
      o = outs_.back().get();
      o->data = *body;
      if (trailers) o->trailers = *trailers, o->has_trailers = true;
      o->c = this;
      prd.source.ptr = o;
      prd.read_callback = readBody;
    }
    std::int32_t id = nghttp2_submit_request(s_, nullptr, nv.data(), nv.size(), body ? &prd : nullptr, nullptr);
    if (o) o->id = id;
    return id;
  }
  std::string take() {
    std::string out;
    for (int i = 0; i < 10000; ++i) {
      const std::uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(s_, &p);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
    }
    return out;
  }
  void give(std::string_view in) {
    nghttp2_session_mem_recv(s_, reinterpret_cast<const std::uint8_t*>(in.data()), in.size());
  }

 private:
  struct Out {
    Client* c = nullptr;
    std::int32_t id = 0;
    std::string data;
    std::size_t off = 0;
    Fields trailers;
    bool has_trailers = false;
  };
  static Client& me(void* ud) { return *static_cast<Client*>(ud); }
  static ssize_t readBody(nghttp2_session* s, std::int32_t id, std::uint8_t* buf, std::size_t len, std::uint32_t* flags,
                          nghttp2_data_source* src, void*) {
    Out* o = static_cast<Out*>(src->ptr);
    std::size_t n = std::min(len, o->data.size() - o->off);
    std::copy_n(o->data.data() + o->off, n, buf);
    o->off += n;
    if (o->off == o->data.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (o->has_trailers) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        auto nv = toNv(o->trailers);
        nghttp2_submit_trailer(s, id, nv.data(), nv.size());
      }
    }
    return static_cast<ssize_t>(n);
  }
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* f, void* ud) {
    me(ud).resps[f->hd.stream_id].heads++;
    return 0;
  }
  static int onHeader(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl,
                      const std::uint8_t* v, std::size_t vl, std::uint8_t flags, void* ud) {
    Resp& r = me(ud).resps[f->hd.stream_id];
    std::string name(reinterpret_cast<const char*>(n), nl), value(reinterpret_cast<const char*>(v), vl);
    if (flags & NGHTTP2_NV_FLAG_NO_INDEX) r.never_indexed.push_back(name);
    if (name == ":status") r.statuses.push_back(value);
    else if (f->headers.cat == NGHTTP2_HCAT_HEADERS && !r.statuses.empty() && r.statuses.back()[0] != '1')
      r.trailers.emplace_back(name, value);
    else r.headers.emplace_back(name, value);
    return 0;
  }
  static int onData(nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* d, std::size_t n, void* ud) {
    me(ud).resps[id].body.append(reinterpret_cast<const char*>(d), n);
    return 0;
  }
  static int onFrame(nghttp2_session* s, const nghttp2_frame* f, void* ud) {
    Client& c = me(ud);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM && (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS))
      c.resps[f->hd.stream_id].ended = true;
    if (f->hd.type == NGHTTP2_GOAWAY) {
      c.goaway_code = f->goaway.error_code;
      c.goaway_last = f->goaway.last_stream_id;
      ++c.goaways;
    }
    if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK))
      c.peer_connect_protocol = nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL);
    return 0;
  }
  static int onClose(nghttp2_session*, std::int32_t id, std::uint32_t code, void* ud) {
    me(ud).resps[id].closed = code;
    return 0;
  }
  nghttp2_session* s_ = nullptr;
  std::vector<std::unique_ptr<Out>> outs_;
};

// Moves bytes both ways until neither side has any (bounded).
inline void pump(Client& c, H2ServerCodec& codec) {
  for (int i = 0; i < 1000; ++i) {
    std::string up = c.take();
    if (!up.empty()) codec.feed(up.data(), up.size());
    std::string down(codec.output());
    codec.wrote(down.size());
    if (!down.empty()) c.give(down);
    if (up.empty() && down.empty()) return;
  }
}

// The codec's output, all of it, acknowledged as written.
inline std::string drain(H2ServerCodec& codec) {
  std::string all;
  for (int i = 0; i < 100000; ++i) {
    std::string_view v = codec.output();
    if (v.empty()) break;
    all.append(v);
    codec.wrote(v.size());
  }
  return all;
}

}  // namespace tether::http::testing
