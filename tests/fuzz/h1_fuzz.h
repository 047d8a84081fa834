// What fuzz_h1_request and fuzz_h1_response share: an H1Decoder driven over
// fuzzer bytes the way a connection drives it (tests/unit/proxy/http/
// h1_test_util.h does the same for the unit tests), the contract of
// proxy/http/h1_decoder.h checked at every event, and two properties:
//   - cut invariance: the input whole, cut where the fuzzer says, and byte by
//     byte gives the same transcript;
//   - round trip: each complete message, written again with h1_encoder.h and
//     decoded again, reads the same (head, fields, framing, body, trailers).
// A violation is __builtin_trap(), which libFuzzer reports as a crash.
//
// Input: byte 0 chooses options (limits, finish() at the end, what the
// response answers, shrink(), fields added on the round trip), byte 1 the
// cuts, the rest is the stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <llhttp.h>

#include "proxy/http/h1_decoder.h"
#include "proxy/http/h1_encoder.h"
#include "tests/fuzz/fuzz_check.h"

namespace tether::fuzz {

using http::Framing;
using http::H1Decoder;
using http::HeaderList;
using http::RequestHead;
using http::ResponseHead;

struct Options {
  H1Decoder::Limits limits;
  std::uint8_t method = http::kMethodGet;  // what each response answers
  bool upgrade = false;                    // ... and whether it asked to upgrade
  bool finish = false;                     // finish() after the last byte (the peer closed)
  bool shrink = false;                     // shrink() between messages
  bool extra = false;                      // the round trip adds policy's fields
};

inline Options optionsFrom(std::uint8_t b) {
  Options o;
  switch (b & 3) {
    case 0:
      break;  // the defaults tether runs with
    case 1:
      o.limits.max_head_bytes = 200;
      o.limits.max_trailer_bytes = 100;
      break;
    case 2:
      o.limits.max_chunk_line = 8;
      o.limits.max_trailer_bytes = 40;
      break;
    case 3:
      o.limits.max_body_bytes = 10;
      o.limits.max_head_bytes = 1000;
      break;
  }
  o.finish = b & 4;
  switch ((b >> 3) & 3) {
    case 0:
      o.method = http::kMethodGet;
      break;
    case 1:
      o.method = http::kMethodHead;
      break;
    case 2:
      o.method = http::kMethodPost;
      break;
    case 3:
      o.method = http::kMethodGet;
      o.upgrade = true;
      break;
  }
  o.shrink = b & 0x20;
  o.extra = b & 0x40;
  return o;
}

// For messages: bytes that are not printable ASCII as \xNN (a transcript
// holds whatever the input did, NUL included).
inline std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 0x20 && c < 0x7f) || c == '\n') {
      out += static_cast<char>(c);
    } else {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    }
  }
  return out;
}

inline std::string fieldsText(const HeaderList& h) {
  std::string s;
  for (std::size_t i = 0; i < h.size(); ++i) {
    s += '[';
    s += h.name(i);
    s += '=';
    s += h.value(i);
    s += ']';
  }
  return s;
}

inline const char* framingName(Framing f) {
  switch (f) {
    case Framing::kNone:
      return "none";
    case Framing::kLength:
      return "length";
    case Framing::kChunked:
      return "chunked";
    case Framing::kClose:
      return "close";
  }
  return "?";
}

inline std::string headText(const RequestHead& r) {
  return "HEAD " + std::string(http::methodName(r.method)) + " " + r.target +
         " auth=" + r.authority + " v1." + std::to_string(r.version_minor) + " " +
         framingName(r.framing) + " cl=" + std::to_string(r.content_length) +
         (r.keep_alive ? " ka" : " close") + (r.upgrade ? " upgrade" : "") +
         (r.absolute_form ? " absolute" : "") + " " + fieldsText(r.headers) + "\n";
}

inline std::string headText(const ResponseHead& r) {
  return "HEAD " + std::to_string(r.status) + " " + r.reason + " v1." +
         std::to_string(r.version_minor) + " " + framingName(r.framing) +
         " cl=" + std::to_string(r.content_length) + (r.keep_alive ? " ka" : " close") + " " +
         fieldsText(r.headers) + "\n";
}

// A head's fields as llhttp hands them over piece by piece (strict mode, as
// tether builds it), from the head's bytes in one piece: the reference the
// decoder's own reading of its copy of the head (HeaderList::sealFields)
// must agree with. A second value piece for one field, or any line that starts
// with a blank, is an obs-fold.
struct ReferenceHead {
  std::vector<std::pair<std::string, std::string>> fields;
  bool complete = false;    // llhttp reached the end of the head
  bool fold = false;        // a value continued on another line
  bool empty_name = false;  // a field whose name is empty
  bool valued = false;      // the last field has had its value piece
};

inline ReferenceHead referenceHead(H1Decoder::Type type, std::string_view head) {
  llhttp_settings_t st;
  llhttp_settings_init(&st);
  st.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) {
    auto& r = *static_cast<ReferenceHead*>(p->data);
    r.fields.emplace_back(std::string(at, n), std::string());
    r.empty_name |= n == 0;
    r.valued = false;
    return 0;
  };
  st.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) {
    auto& r = *static_cast<ReferenceHead*>(p->data);
    if (r.valued || r.fields.empty()) {
      r.fold = true;
    } else {
      r.fields.back().second.assign(at, n);
    }
    r.valued = true;
    return 0;
  };
  st.on_headers_complete = [](llhttp_t* p) {
    static_cast<ReferenceHead*>(p->data)->complete = true;
    return static_cast<int>(HPE_PAUSED);
  };
  ReferenceHead r;
  llhttp_t p;
  llhttp_init(&p, type == H1Decoder::Type::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, &st);
  p.data = &r;
  llhttp_execute(&p, head.data(), head.size());
  // A line that starts with a blank is a fold, whatever llhttp hands over
  // for it (a fold of blanks after an empty value comes as that value).
  for (std::size_t i = 0; i + 1 < head.size(); ++i)
    if (head[i] == '\n' && (head[i + 1] == ' ' || head[i + 1] == '\t')) r.fold = true;
  for (auto& [name, value] : r.fields)
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
  return r;
}

// The decoder accepted a head whose bytes are `raw`: it read exactly the
// fields llhttp reports, and none that tether refuses.
inline void checkAgainstReference(H1Decoder::Type type, std::string_view raw, const HeaderList& h) {
  ReferenceHead ref = referenceHead(type, raw);
  FUZZ_CHECK(ref.complete);
  FUZZ_CHECK(!ref.fold && !ref.empty_name);
  bool same = ref.fields.size() == h.size();
  for (std::size_t i = 0; same && i < h.size(); ++i)
    same = ref.fields[i].first == h.name(i) && ref.fields[i].second == h.value(i);
  if (!same) {
    std::string want;
    for (const auto& [n, v] : ref.fields) want += "[" + n + "=" + v + "]";
    std::fprintf(stderr, "fields read as %s, llhttp reports %s\n", printable(fieldsText(h)).c_str(),
                 printable(want).c_str());
    __builtin_trap();
  }
}

// One complete message as decoded: what the round trip writes again.
struct Message {
  RequestHead request;
  std::vector<ResponseHead> interim;  // 1xx heads before the final one
  ResponseHead response;
  std::string body;
  HeaderList trailers;
};

struct Run {
  std::string transcript;  // heads, bodies, trailers, and the error's status
  int error = 0;
  std::string reason;  // the error's reason: for logs, it may name another fault of the same input
  std::vector<Message> messages;
  std::size_t leftover = 0;  // bytes not consumed when decoding stopped
};

inline bool isRequest(H1Decoder::Type t) { return t == H1Decoder::Type::kRequest; }

// What h1_encoder.h writes as held: "the decoder admits no CR, LF or NUL".
inline bool writable(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}
inline bool writable(const HeaderList& h) {
  for (std::size_t i = 0; i < h.size(); ++i)
    if (!writable(h.name(i)) || !writable(h.value(i))) return false;
  return true;
}

// Feeds `in` cut into pieces of the sizes `cuts` gives (cyclically; 0 = all
// at once) and checks the decoder's contract at every event.
inline Run decode(H1Decoder::Type type, std::string_view in, const Options& opt,
                  const std::vector<std::size_t>& cuts) {
  H1Decoder d(type, opt.limits);
  Run run;
  std::string body;
  d.setBodySink(
      [](void* ctx, const char* p, std::size_t n) { static_cast<std::string*>(ctx)->append(p, n); },
      &body);
  d.expectResponseTo(opt.method, opt.upgrade);
  const bool request = isRequest(type);
  std::string pending;
  std::uint64_t offset = 0;         // stream offset of pending[0]
  std::uint64_t message_start = 0;  // where the current head began
  std::string raw_body;             // bytes consumed after the final head
  bool after_head = false;
  bool stopped = false;
  Message cur;

  auto step = [&](bool at_eof) {
    for (int guard = 0; !stopped; ++guard) {
      FUZZ_CHECK(guard < 1000000);  // every call makes progress or returns
      std::size_t used = 0;
      const std::size_t len = pending.size();
      H1Decoder::Event ev = at_eof ? d.finish() : d.execute(pending.data(), len, &used);
      FUZZ_CHECK(used <= len);
      if (after_head) raw_body.append(pending, 0, used);
      pending.erase(0, used);
      offset += used;
      switch (ev) {
        case H1Decoder::Event::kNeedMore:
          if (!at_eof) FUZZ_CHECK(pending.empty());  // "every byte passed was consumed"
          return;
        case H1Decoder::Event::kHead: {
          FUZZ_CHECK(!at_eof);
          // The head's bytes, from its first (CR and LF before a message are
          // skipped, not part of it).
          std::uint64_t first = message_start;
          while (first < in.size() && (in[first] == '\r' || in[first] == '\n')) ++first;
          FUZZ_CHECK(offset - first <= opt.limits.max_head_bytes);
          checkAgainstReference(type, in.substr(first, offset - first), request ? d.request().headers : d.response().headers);
          // No body byte before a final head: a 1xx has none (RFC 9112 §6.3).
          FUZZ_CHECK(body.empty());
          if (request) {
            const RequestHead& r = d.request();
            FUZZ_CHECK(r.headers.bytes() <= opt.limits.max_head_bytes);
            FUZZ_CHECK(r.version_minor <= 1);
            FUZZ_CHECK(writable(r.target) && writable(r.authority) && writable(r.headers));
            FUZZ_CHECK(!r.target.empty());
            FUZZ_CHECK(r.target == "*" || r.target[0] == '/');
            FUZZ_CHECK(r.framing != Framing::kClose);
            FUZZ_CHECK(r.method != http::kMethodConnect);
            if (r.framing == Framing::kLength && opt.limits.max_body_bytes)
              FUZZ_CHECK(r.content_length <= opt.limits.max_body_bytes);
            FUZZ_CHECK(d.inBody());
            run.transcript += headText(r);
            cur.request = r;
            after_head = true;
          } else {
            const ResponseHead& r = d.response();
            FUZZ_CHECK(r.headers.bytes() <= opt.limits.max_head_bytes);
            FUZZ_CHECK(r.status >= 100 && r.status <= 999);
            FUZZ_CHECK(writable(r.headers));
            if (!writable(r.reason)) {
              std::fprintf(stderr, "reason phrase \"%s\" holds CR, LF or NUL\n",
                           printable(r.reason).c_str());
              __builtin_trap();
            }
            FUZZ_CHECK(r.version_minor <= 1);
            FUZZ_CHECK(r.status != 101 || opt.upgrade);
            run.transcript += headText(r);
            if (r.informational()) {
              FUZZ_CHECK(r.framing == Framing::kNone);
              cur.interim.push_back(r);
              message_start = offset;  // the final head is a head of its own
            } else {
              // RFC 9112 §6.3: these end at their blank line.
              if (r.status == 204 || r.status == 304 || opt.method == http::kMethodHead)
                FUZZ_CHECK(r.framing == Framing::kNone);
              FUZZ_CHECK(d.inBody());
              cur.response = r;
              after_head = true;
            }
          }
          if (after_head) FUZZ_CHECK(d.midMessage());
          break;
        }
        case H1Decoder::Event::kComplete: {
          FUZZ_CHECK(d.complete());
          FUZZ_CHECK(after_head);
          FUZZ_CHECK(d.bodyBytes() == body.size());
          FUZZ_CHECK(d.trailers().bytes() <= opt.limits.max_trailer_bytes);
          FUZZ_CHECK(writable(d.trailers()));
          Framing f = request ? cur.request.framing : cur.response.framing;
          // A Content-Length or close-delimited body is exactly the consumed
          // bytes after the head (h1_decoder.h: forwarded without a copy).
          if (f == Framing::kLength || f == Framing::kClose) FUZZ_CHECK(raw_body == body);
          if (f == Framing::kLength)
            FUZZ_CHECK(body.size() ==
                       (request ? cur.request.content_length : cur.response.content_length));
          if (f == Framing::kNone) FUZZ_CHECK(body.empty());
          if (f != Framing::kChunked) FUZZ_CHECK(d.trailers().empty());
          if (request && opt.limits.max_body_bytes)
            FUZZ_CHECK(body.size() <= opt.limits.max_body_bytes);
          run.transcript +=
              "BODY " + body + "\nTRAILERS " + fieldsText(d.trailers()) + "\nCOMPLETE\n";
          cur.body = body;
          cur.trailers = d.trailers();
          run.messages.push_back(std::move(cur));
          cur = Message{};
          bool tunnel = request ? d.request().upgrade : d.response().status == 101;
          body.clear();
          raw_body.clear();
          after_head = false;
          if (opt.shrink) d.shrink();
          d.nextMessage();
          FUZZ_CHECK(!d.complete() && !d.midMessage());
          message_start = offset;
          d.expectResponseTo(opt.method, opt.upgrade);
          if (tunnel) {
            stopped = true;  // what follows is the tunnel's
            return;
          }
          if (at_eof) return;
          break;
        }
        case H1Decoder::Event::kError: {
          const int status = d.errorStatus();
          if (request) {
            FUZZ_CHECK(status == 400 || status == 405 || status == 413 || status == 431 ||
                       status == 505);
          } else {
            FUZZ_CHECK(status == 502);
          }
          FUZZ_CHECK(!d.errorReason().empty());
          FUZZ_CHECK(!d.inBody() && !d.complete());
          // Dead from now on: nothing more is parsed, no other event.
          std::size_t again = 1;
          FUZZ_CHECK(d.execute(pending.data(), pending.size(), &again) ==
                         H1Decoder::Event::kError &&
                     again == 0);
          FUZZ_CHECK(d.finish() == H1Decoder::Event::kError);
          FUZZ_CHECK(d.errorStatus() == status);
          run.transcript += "ERROR " + std::to_string(status) + "\n";
          run.error = status;
          run.reason = std::string(d.errorReason());
          stopped = true;
          return;
        }
      }
      if (at_eof) return;
    }
  };

  std::size_t at = 0, k = 0;
  while (at < in.size() && !stopped) {
    std::size_t n =
        cuts.empty() || cuts[k % cuts.size()] == 0 ? in.size() - at : cuts[k % cuts.size()];
    ++k;
    if (n > in.size() - at) n = in.size() - at;
    pending.append(in.substr(at, n));
    at += n;
    step(false);
  }
  if (opt.finish && !stopped) step(true);
  run.leftover = pending.size() + (in.size() - at);
  return run;
}

// Exactly sized heap room, so that ASan sees a write past what the encoder's
// size function promised.
struct Room {
  explicit Room(std::size_t n) : size(n), data(new char[n ? n : 1]) {}
  std::size_t size;
  std::unique_ptr<char[]> data;
};

// The body as chunks through ChunkStager (as the data path re-encodes a
// chunked body), `cut` choosing their sizes; an empty chunk is staged too,
// which the stager takes back.
inline void appendChunked(std::string& out, std::string_view body, const HeaderList& trailers,
                          std::uint8_t cut) {
  const std::size_t piece = cut % 7 == 0 ? body.size() + 1 : cut % 7;
  const std::size_t chunks = body.size() / piece + 2;
  Room buf(body.size() + chunks * http::ChunkStager::kOverhead);
  http::ChunkStager stager;
  std::uint32_t end = 0;
  for (std::size_t i = 0;; i += piece) {
    std::size_t n = i < body.size() ? std::min(piece, body.size() - i) : 0;
    stager.begin(end);
    FUZZ_CHECK(stager.open());
    std::uint32_t data = stager.dataStart();
    FUZZ_CHECK(data + n + 2 <= buf.size);
    std::copy(body.data() + i, body.data() + i + n, buf.data.get() + data);
    std::uint32_t sealed = stager.seal(buf.data.get(), data + static_cast<std::uint32_t>(n));
    FUZZ_CHECK(!stager.open());
    if (n == 0) {
      FUZZ_CHECK(sealed == end);  // an empty chunk is taken back
      break;
    }
    FUZZ_CHECK(sealed > end);
    end = sealed;
  }
  out.append(buf.data.get(), end);
  Room last(http::lastChunkSize(trailers));
  std::size_t w = http::writeLastChunk(trailers, last.data.get());
  FUZZ_CHECK(w == last.size);
  out.append(last.data.get(), w);
}

inline bool iequals(std::string_view a, std::string_view b) { return http::iequals(a, b); }

inline bool sameFields(const HeaderList& a, const HeaderList& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a.name(i) != b.name(i) || a.value(i) != b.value(i) || a.kind(i) != b.kind(i)) return false;
  return true;
}

// `read` is what `wrote` keeps (the fields not dropped), then `extra`.
inline bool sameFields(const HeaderList& read, const HeaderList& wrote,
                       const http::ExtraFields& extra) {
  std::size_t r = 0;
  for (std::size_t i = 0; i < wrote.size(); ++i) {
    if (wrote.dropped(i)) continue;
    if (r >= read.size() || read.name(r) != wrote.name(i) || read.value(r) != wrote.value(i) ||
        read.kind(r) != wrote.kind(i))
      return false;
    ++r;
  }
  for (int i = 0; i < extra.count; ++i, ++r)
    if (r >= read.size() || read.name(r) != extra.items[i].name ||
        read.value(r) != extra.items[i].value)
      return false;
  return r == read.size();
}

// Writes `m` again with the encoder, decodes that, and checks that it reads
// the same. The encoder writes HTTP/1.1, so an HTTP/1.0 message is compared
// but for what its version changes (keep-alive; a request's Host).
inline void roundTrip(H1Decoder::Type type, const Message& m, const Options& opt,
                      std::uint8_t cut) {
  const bool request = isRequest(type);
  // What policy does before a write (h1_encoder.h): fields added, kept apart
  // from the head, and a field dropped (one that changes no framing).
  http::ExtraFields extra;
  Message sent = m;
  HeaderList& fields = request ? sent.request.headers : sent.response.headers;
  if (opt.extra) {
    extra.add("Via", "1.1 tether");
    extra.add("X-Request-Id", "0123456789abcdef");
    if (!fields.empty() && fields.kind(cut % fields.size()) == http::HeaderKind::kOther)
      fields.drop(cut % fields.size());
  }
  std::string wire;
  if (request) {
    const RequestHead& h = sent.request;
    if (h.version_minor == 0 && h.headers.find(http::HeaderKind::kHost) < 0) return;
    Room head(http::requestHeadSize(h, extra));
    std::size_t w = http::writeRequestHead(h, extra, head.data.get());
    FUZZ_CHECK(w == head.size);
    wire.append(head.data.get(), w);
    if (h.framing == Framing::kChunked) {
      appendChunked(wire, m.body, m.trailers, cut);
    } else {
      wire += m.body;
    }
  } else {
    const http::ExtraFields none{};
    for (const ResponseHead& i : m.interim) {
      Room head(http::responseHeadSize(i, none));
      std::size_t w = http::writeResponseHead(i, none, head.data.get());
      FUZZ_CHECK(w == head.size);
      wire.append(head.data.get(), w);
    }
    const ResponseHead& h = sent.response;
    Room head(http::responseHeadSize(h, extra));
    std::size_t w = http::writeResponseHead(h, extra, head.data.get());
    FUZZ_CHECK(w == head.size);
    wire.append(head.data.get(), w);
    if (h.framing == Framing::kChunked) {
      appendChunked(wire, m.body, m.trailers, cut);
    } else {
      wire += m.body;
    }
  }
  Options again = opt;
  // The fields are written "Name: value", which may be longer than they came.
  again.limits.max_head_bytes = again.limits.max_trailer_bytes = 1 << 20;
  again.limits.max_chunk_line = 4096;
  again.finish = !request && m.response.framing == Framing::kClose;
  again.shrink = false;
  Run r = decode(type, wire, again, {});
  if (r.error != 0 || r.messages.size() != 1 || r.leftover != 0) {
    std::fprintf(stderr, "round trip: wrote\n%s\nread\n%s%s\n", printable(wire).c_str(),
                 printable(r.transcript).c_str(), r.reason.c_str());
  }
  FUZZ_CHECK(r.error == 0);
  FUZZ_CHECK(r.messages.size() == 1);
  FUZZ_CHECK(r.leftover == 0);
  const Message& b = r.messages[0];
  FUZZ_CHECK(b.body == m.body);
  FUZZ_CHECK(sameFields(b.trailers, m.trailers));
  if (request) {
    const RequestHead &x = m.request, &y = b.request;
    FUZZ_CHECK(y.method == x.method);
    FUZZ_CHECK(y.target == x.target);
    FUZZ_CHECK(iequals(y.authority, x.authority));
    FUZZ_CHECK(y.framing == x.framing);
    FUZZ_CHECK(y.content_length == x.content_length);
    FUZZ_CHECK(y.upgrade == x.upgrade);
    if (x.version_minor == 1) FUZZ_CHECK(y.keep_alive == x.keep_alive);
    FUZZ_CHECK(sameFields(y.headers, sent.request.headers, extra));
  } else {
    FUZZ_CHECK(b.interim.size() == m.interim.size());
    for (std::size_t i = 0; i < m.interim.size(); ++i) {
      FUZZ_CHECK(b.interim[i].status == m.interim[i].status);
      FUZZ_CHECK(b.interim[i].reason == m.interim[i].reason);
      FUZZ_CHECK(sameFields(b.interim[i].headers, m.interim[i].headers));
    }
    const ResponseHead &x = m.response, &y = b.response;
    FUZZ_CHECK(y.status == x.status);
    FUZZ_CHECK(y.reason == x.reason);
    FUZZ_CHECK(y.framing == x.framing);
    FUZZ_CHECK(y.content_length == x.content_length);
    if (x.version_minor == 1) FUZZ_CHECK(y.keep_alive == x.keep_alive);
    FUZZ_CHECK(sameFields(y.headers, sent.response.headers, extra));
  }
}

inline std::vector<std::size_t> cutsFrom(std::uint8_t seed, std::size_t len) {
  std::vector<std::size_t> cuts;
  if (seed == 0) return {1};  // byte by byte
  std::mt19937 rng(seed);
  const std::size_t most = 1 + seed % 48;
  for (std::size_t total = 0; total < len;) {
    std::size_t n = 1 + rng() % most;
    cuts.push_back(n);
    total += n;
  }
  return cuts;
}

// The same answer whatever the cut: the same events, and at an error the
// same status (the reason may name another fault the same input has, found
// first in another cut).
inline void checkTranscripts(const Run& a, const Run& b, const char* what) {
  // Where decoding stopped matters (pipelined or tunnel bytes) unless it
  // stopped at an error: the connection then dies.
  if (a.transcript != b.transcript || (!a.error && a.leftover != b.leftover)) {
    std::fprintf(stderr,
                 "cut invariance (%s): whole\n%s(%s; leftover %zu)\ncut\n%s(%s; leftover %zu)\n",
                 what, printable(a.transcript).c_str(), a.reason.c_str(), a.leftover,
                 printable(b.transcript).c_str(), b.reason.c_str(), b.leftover);
    __builtin_trap();
  }
}

inline int fuzzOne(H1Decoder::Type type, const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  const Options opt = optionsFrom(data[0]);
  const std::uint8_t seed = data[1];
  std::string_view in(reinterpret_cast<const char*>(data + 2), size - 2);
  Run whole = decode(type, in, opt, {});
  checkTranscripts(whole, decode(type, in, opt, cutsFrom(seed, in.size())), "fuzzer's cuts");
  if (in.size() <= 512 && seed != 0)
    checkTranscripts(whole, decode(type, in, opt, {1}), "byte by byte");
  for (const Message& m : whole.messages) roundTrip(type, m, opt, seed);
  return 0;
}

}  // namespace tether::fuzz
