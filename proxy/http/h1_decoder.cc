#include "proxy/http/h1_decoder.h"

#include <llhttp.h>

#include <array>
#include <cstring>

namespace tether::http {

static_assert(kMethodDelete == HTTP_DELETE && kMethodGet == HTTP_GET && kMethodHead == HTTP_HEAD &&
              kMethodPost == HTTP_POST && kMethodPut == HTTP_PUT && kMethodConnect == HTTP_CONNECT &&
              kMethodOptions == HTTP_OPTIONS && kMethodTrace == HTTP_TRACE && kMethodPatch == HTTP_PATCH);

std::string_view methodName(std::uint8_t method) {
  // One table, built once from llhttp's map: no strlen per head, and "-"
  // for a code llhttp has no name for.
  static const std::array<std::string_view, 256> kNames = [] {
    std::array<std::string_view, 256> a;
    a.fill("-");
#define TETHER_METHOD(num, id, text) a[num] = #text;
    HTTP_METHOD_MAP(TETHER_METHOD)
#undef TETHER_METHOD
    return a;
  }();
  return kNames[method];
}

int methodCode(std::string_view name) {
  // llhttp_method_name() aborts on a code it has no name for: the map instead.
#define TETHER_METHOD(num, id, text) \
  if (name == #text) return num;
  HTTP_METHOD_MAP(TETHER_METHOD)
#undef TETHER_METHOD
  return -1;
}

namespace {

// Why llhttp paused: one reason per pause.
enum class Pause : std::uint8_t { kNone, kHead, kMessage, kChunkHeader };

}  // namespace

struct H1Decoder::Parser {
  llhttp_t p;
  Pause pause = Pause::kNone;
  bool upgraded = false;  // llhttp stopped with HPE_PAUSED_UPGRADE
};

// The llhttp callbacks, as statics of a friend so that they reach the
// decoder's state. Data callbacks return -1 to stop (HPE_USER); the
// decoder's error_status_ then says why.
struct Callbacks {
  static H1Decoder& d(llhttp_t* p) { return *static_cast<H1Decoder*>(p->data); }

  static int fail(H1Decoder& d, int status, const char* reason) {
    if (!d.error_status_) {
      d.error_status_ = status;
      d.error_reason_ = reason;
    }
    return -1;
  }

  static int onMessageBegin(llhttp_t* p) {
    H1Decoder& s = d(p);
    use(p, headSettings());
    s.state_ = H1Decoder::State::kHead;
    if (s.type_ == H1Decoder::Type::kRequest) {
      s.request_.clear();
    } else {
      s.response_.clear();
    }
    s.trailers_.clear();
    s.version_len_ = 0;
    s.in_name_ = s.field_open_ = s.in_trailers_ = s.last_chunk_ = false;
    s.body_bytes_ = s.trailer_start_ = 0;
    s.mirror_upto_ = s.message_start_;
    return 0;
  }

  // RFC 9112 §3: method SP target SP version, one space each: a request
  // line with more is refused rather than read one of several ways.
  static int onMethod(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    s.line_mark_ = s.offsetOf(at + len);
    return 0;
  }

  static int onUrl(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    if (s.request_.target.empty() && s.offsetOf(at) != s.line_mark_ + 1) return fail(s, 400, "malformed request line");
    s.request_.target.append(at, len);
    s.line_mark_ = s.offsetOf(at + len);
    return 0;
  }

  static int onStatus(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    // reason-phrase = *( HTAB / SP / VCHAR / obs-text ): no control byte
    // reaches a client's status line.
    for (std::size_t i = 0; i < len; ++i) {
      unsigned char c = static_cast<unsigned char>(at[i]);
      if ((c < 0x20 && c != '\t') || c == 0x7f) return fail(s, 502, "control byte in the reason phrase");
    }
    s.response_.reason.append(at, len);
    return 0;
  }

  static int onVersion(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    if (s.type_ == H1Decoder::Type::kRequest && s.version_len_ == 0 && s.offsetOf(at) != s.line_mark_ + 6) {
      return fail(s, 400, "malformed request line");  // " HTTP/" between target and version
    }
    if (s.version_len_ + len > sizeof s.version_) return fail(s, s.type_ == H1Decoder::Type::kRequest ? 400 : 502, "malformed version");
    std::memcpy(s.version_ + s.version_len_, at, len);
    s.version_len_ = static_cast<std::uint8_t>(s.version_len_ + len);
    return 0;
  }

  static int badField(H1Decoder& s, const char* reason) {
    return fail(s, s.type_ == H1Decoder::Type::kRequest ? 400 : 502, reason);
  }

  // A head's fields are mirrored (h1_decoder.h: the head's bytes copied once
  // per read); llhttp's name and value pieces only say where each field lies
  // in that copy, and how far the copy must reach.
  static std::uint32_t copyOffset(const H1Decoder& s, const char* at) {
    return static_cast<std::uint32_t>(s.offsetOf(at) - s.message_start_);
  }

  // Flattened: the field's push_back inlined, once per field.
  [[gnu::flatten]] static int onHeadName(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.heads().noteName(copyOffset(s, at), static_cast<std::uint32_t>(len));
    return 0;
  }

  static int onHeadValue(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.heads().noteValue(copyOffset(s, at), static_cast<std::uint32_t>(len));
    s.last_end_ = at + len;
    return 0;
  }

  // Trailer fields are copied piece by piece (trailerSettings, from the
  // last chunk on).
  static int onHeaderField(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    // A piece that does not continue the name in progress begins the next
    // field. (llhttp hands over a value piece, an empty one too, after every
    // name, so this only guards the order of pieces.)
    if (s.in_name_ && s.offsetOf(at) != s.name_end_) s.in_name_ = false;
    if (!s.in_name_) {
      if (endTrailer(s)) return -1;
      s.trailers_.beginField();
      s.in_name_ = s.field_open_ = true;
    }
    s.name_end_ = s.offsetOf(at + len);
    if (s.trailers_.lastNameLength() + len > HeaderList::kMaxNameBytes) return badField(s, "field name too long");
    s.trailers_.appendName(std::string_view(at, len));
    return 0;
  }

  static int onHeaderValue(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.cb_at_ = at;
    if (len == 0) return 0;  // llhttp reports an empty value where it found it
    // RFC 9112 §5.2: obs-fold is refused, including a fold after an empty
    // first line, which a piece cannot show by itself: what precedes it does.
    if (s.foldAt(at)) return badField(s, "obsolete line folding");
    HeaderList& f = s.trailers_;
    if (s.in_name_) {
      if (f.lastNameLength() == 0) return badField(s, "empty field name");
      s.in_name_ = false;
      f.endName();
      s.name_done_ = true;
    }
    f.appendValue(std::string_view(at, len));
    return 0;
  }

  // A trailer field ends when the next one begins or the section does (no
  // per-field completion callback: two fewer calls a field).
  static int endTrailer(H1Decoder& s) {
    if (!s.field_open_) return 0;
    HeaderList& f = s.trailers_;
    s.field_open_ = false;
    if (f.lastNameLength() == 0) return badField(s, "empty field name");
    if (!s.name_done_) f.endName();
    f.endValue();
    s.in_name_ = s.name_done_ = false;
    return 0;
  }

  static int onHeadersComplete(llhttp_t* p) {
    H1Decoder& s = d(p);
    // Every name and value byte into the copy, then its fields finished,
    // before the head is judged.
    s.mirrorTo(s.last_end_);
    if (const char* why = s.heads().sealFields()) return badField(s, why);
    return s.onHeadersComplete();
  }

  static int onChunkHeader(llhttp_t* p) {
    H1Decoder& s = d(p);
    if (p->content_length == 0) {
      s.last_chunk_ = true;
      s.in_trailers_ = true;
      use(p, trailerSettings());  // llhttp reads it at each callback
    }
    s.parser_->pause = Pause::kChunkHeader;
    return HPE_PAUSED;
  }

  // The first extension of a chunk marks where its size digits ended.
  static int onChunkExtensionName(llhttp_t* p, const char* at, std::size_t) {
    H1Decoder& s = d(p);
    if (!s.size_end_) s.size_end_ = s.offsetOf(at);
    return 0;
  }

  static int onBody(llhttp_t* p, const char* at, std::size_t len) {
    H1Decoder& s = d(p);
    s.body_bytes_ += len;
    s.line_start_ = s.offsetOf(at + len) + 2;  // the data's CRLF, then the next size line
    if (s.type_ == H1Decoder::Type::kRequest && s.limits_.max_body_bytes && s.body_bytes_ > s.limits_.max_body_bytes) {
      return fail(s, 413, "request body too large");
    }
    if (s.sink_) s.sink_(s.sink_ctx_, at, len);
    return 0;
  }

  static int onMessageComplete(llhttp_t* p) {
    H1Decoder& s = d(p);
    if (endTrailer(s)) return -1;
    s.parser_->pause = Pause::kMessage;
    // An upgrade (the request asking, or the 101 answering it): llhttp stops
    // with HPE_PAUSED_UPGRADE; what follows is not HTTP. Decided by the head:
    // trailer fields change nothing (llhttp would act on an Upgrade trailer).
    bool upgrade = s.type_ == H1Decoder::Type::kRequest ? s.request_.upgrade : s.response_.status == 101;
    if (p->upgrade && upgrade) return 0;
    return HPE_PAUSED;
  }

  static llhttp_settings_t settings(bool trailers) {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_message_begin = onMessageBegin;
    x.on_method = onMethod;
    x.on_url = onUrl;
    x.on_status = onStatus;
    x.on_version = onVersion;
    x.on_header_field = trailers ? onHeaderField : onHeadName;
    x.on_header_value = trailers ? onHeaderValue : onHeadValue;
    x.on_headers_complete = onHeadersComplete;
    x.on_chunk_header = onChunkHeader;
    x.on_chunk_extension_name = onChunkExtensionName;
    x.on_body = onBody;
    x.on_message_complete = onMessageComplete;
    return x;
  }
  // Two tables: a head's fields are noted as offsets into its copy, a
  // trailer's are copied piece by piece (onMessageBegin and onChunkHeader
  // switch).
  static const llhttp_settings_t* headSettings() {
    static const llhttp_settings_t st = settings(false);
    return &st;
  }
  static const llhttp_settings_t* trailerSettings() {
    static const llhttp_settings_t st = settings(true);
    return &st;
  }
  // llhttp keeps its table as a void*; it never writes through it.
  static void use(llhttp_t* p, const llhttp_settings_t* table) { p->settings = const_cast<llhttp_settings_t*>(table); }
};

H1Decoder::H1Decoder(Type type, const Limits& limits)
    : type_(type), limits_(limits), parser_(std::make_unique<Parser>()) {
  llhttp_init(&parser_->p, type == Type::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, Callbacks::headSettings());
  parser_->p.data = this;
}

H1Decoder::~H1Decoder() = default;

const char* H1Decoder::errorName() const {
  return llhttp_errno_name(static_cast<llhttp_errno_t>(llhttp_error_));
}

bool H1Decoder::midMessage() const {
  return state_ == State::kHead || state_ == State::kBody || (state_ == State::kIdle && base_offset_ > message_start_);
}

// Copies the consumed head bytes up to `upto` (in the current input) into
// the head's field list: the one copy of a head, in bulk.
void H1Decoder::mirrorTo(const char* upto) {
  if (!data_ || upto < data_) return;
  std::uint64_t to = offsetOf(upto);
  if (to <= mirror_upto_) return;
  std::uint64_t from = std::max(mirror_upto_, base_offset_);
  // Bytes before this input that were not copied are the CR and LF llhttp
  // skips before a message: they count towards the head's size (whatever
  // the cut) and stand in the copy as LF, so that offsets stay aligned.
  if (from > mirror_upto_) heads().mirrorFill(static_cast<std::size_t>(from - mirror_upto_), '\n');
  heads().mirror(data_ + (from - base_offset_), static_cast<std::size_t>(to - from));
  mirror_upto_ = to;
}

// The head ended at `p`: its copy is complete up to there, every field's
// line is known (the last one ends before the blank line).
const char* H1Decoder::sealHead(const char* p) {
  mirrorTo(p);
  std::uint64_t end = offsetOf(p) - message_start_;
  return heads().sealMirror(static_cast<std::uint32_t>(end >= 2 ? end - 2 : 0));
}

void H1Decoder::shrink() {
  request_.headers.shrink();
  response_.headers.shrink();
  trailers_.shrink();
  std::string().swap(request_.target);
  std::string().swap(request_.authority);
  std::string().swap(response_.reason);
}

void H1Decoder::trimStorage(std::size_t keep) {
  if (request_.headers.bytes() + response_.headers.bytes() + trailers_.bytes() > keep) shrink();
}

void H1Decoder::reset(std::size_t keep) {
  llhttp_init(&parser_->p, type_ == Type::kRequest ? HTTP_REQUEST : HTTP_RESPONSE, Callbacks::headSettings());
  parser_->p.data = this;
  parser_->pause = Pause::kNone;
  parser_->upgraded = false;
  state_ = State::kIdle;
  request_method_ = kMethodGet;
  upgrade_requested_ = false;
  if (request_.headers.bytes() + response_.headers.bytes() + trailers_.bytes() > keep) shrink();
  request_.clear();
  response_.clear();
  trailers_.clear();
  version_len_ = 0;
  data_ = nullptr;
  base_offset_ = message_start_ = line_start_ = body_bytes_ = trailer_start_ = size_end_ = mirror_upto_ = 0;
  prev_last_ = '\n';
  in_name_ = field_open_ = in_trailers_ = last_chunk_ = head_pending_ = complete_pending_ = false;
  error_status_ = 0;
  error_reason_ = "";
  llhttp_error_ = 0;
}

// Whether the value piece at `at` follows a line break with only blanks
// between: the continuation of an obs-fold.
bool H1Decoder::foldAt(const char* at) const {
  const char* q = at;
  while (q > data_ && blank(q[-1])) --q;
  char before = q > data_ ? q[-1] : prev_last_;
  return before == '\n';
}

H1Decoder::Event H1Decoder::fail(int status, const char* reason) {
  state_ = State::kError;
  if (!error_status_) {
    error_status_ = status;
    error_reason_ = reason;
  }
  return Event::kError;
}

H1Decoder::Event H1Decoder::execute(const char* data, std::size_t len, std::size_t* consumed) {
  *consumed = 0;
  if (state_ == State::kError) return Event::kError;
  if (complete_pending_) {
    complete_pending_ = false;
    state_ = State::kComplete;
    return Event::kComplete;
  }
  if (state_ == State::kComplete) return Event::kComplete;
  data_ = data;
  last_end_ = data;
  cb_at_ = nullptr;
  const bool request = type_ == Type::kRequest;
  const char* p = data;
  const char* end = data + len;
  // A head or a trailer section is read no further than one byte past its
  // bound: whatever the cut, a fault beyond the bound is never reached, and a
  // section that gets there is refused as too large. The same bytes, the
  // same answer.
  auto clip = [&](const char* from) {
    bool head = state_ == State::kHead || state_ == State::kIdle;
    if (!head && !in_trailers_) return data + len;
    std::uint64_t bound = head ? limits_.max_head_bytes : limits_.max_trailer_bytes;
    std::uint64_t seen = offsetOf(from) - (head ? message_start_ : trailer_start_);
    std::uint64_t room = bound + 1 > seen ? bound + 1 - seen : 0;
    return static_cast<std::uint64_t>(data + len - from) > room ? from + room : data + len;
  };
  auto pastTrailerBound = [&](const char* at) {
    return in_trailers_ && offsetOf(at) - trailer_start_ > limits_.max_trailer_bytes;
  };
  Event ev = Event::kNeedMore;
  for (;;) {
    parser_->pause = Pause::kNone;
    end = clip(p);
    llhttp_errno_t err = llhttp_execute(&parser_->p, p, static_cast<std::size_t>(end - p));
    if (err == HPE_OK) {
      p = end;
      break;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
      p = llhttp_get_error_pos(&parser_->p);
      if (err == HPE_PAUSED) {
        llhttp_resume(&parser_->p);
      } else {
        parser_->upgraded = true;
      }
      Pause why = parser_->pause;
      if (why == Pause::kChunkHeader) {
        // The line is [line_start_, p): size digits, extensions, CRLF. More
        // than 16 digits (zeros in front) is no size a 64-bit reader agrees on.
        std::uint64_t at = offsetOf(p);
        std::uint64_t digits_end = size_end_ ? size_end_ - 1 : at - 2;
        if (at - line_start_ > limits_.max_chunk_line + 2 || digits_end - line_start_ > 16) {
          ev = fail(request ? 400 : 502, at - line_start_ > limits_.max_chunk_line + 2 ? "chunk line too long" : "chunk size of more than 16 digits");
          break;
        }
        line_start_ = at;
        size_end_ = 0;
        if (last_chunk_) trailer_start_ = at;
        continue;
      }
      if ((why == Pause::kHead || head_pending_) && offsetOf(p) - message_start_ > limits_.max_head_bytes) {
        ev = fail(request ? 431 : 502, request ? "request header fields too large" : "response head too large");
        break;
      }
      if (why == Pause::kHead || head_pending_) {
        if (const char* bad = sealHead(p)) {
          ev = fail(request ? 400 : 502, bad);
          break;
        }
      }
      if (why == Pause::kHead && request && requestHeadersComplete() != 0) {
        ev = fail(error_status_, error_reason_);
        break;
      }
      if (why == Pause::kHead) {
        head_pending_ = false;
        state_ = State::kBody;
        line_start_ = offsetOf(p);
        ev = Event::kHead;
        break;
      }
      if (why == Pause::kMessage && pastTrailerBound(p)) {
        ev = fail(request ? 431 : 502, "trailer section too large");
        break;
      }
      if (why == Pause::kMessage || err == HPE_PAUSED_UPGRADE) {
        message_start_ = offsetOf(p);
        if (!request && response_.informational()) {
          // A 1xx is a head of its own; the final response follows.
          head_pending_ = false;
          state_ = State::kIdle;
          ev = Event::kHead;
          break;
        }
        if (head_pending_) {
          // A bodyless response (HEAD, 204, 304) completed behind its head:
          // the head first, the end on the next call.
          head_pending_ = false;
          complete_pending_ = true;
          state_ = State::kBody;
          ev = Event::kHead;
          break;
        }
        state_ = State::kComplete;
        ev = Event::kComplete;
        break;
      }
      continue;  // a pause we did not ask for: llhttp resumes where it stood
    }
    llhttp_error_ = err;
    // Where the fault was found: the byte llhttp stopped at, or, for a fault
    // our callback found, the start of the piece it was handed (the same
    // point whatever the cut).
    const char* at = err == HPE_USER && cb_at_ ? cb_at_ : llhttp_get_error_pos(&parser_->p);
    if ((state_ == State::kHead || state_ == State::kIdle) && at && offsetOf(at) - message_start_ > limits_.max_head_bytes) {
      // Past the head's bound, whatever the error: the answer a reader that
      // got the same bytes in smaller pieces gives (it stops at the bound).
      ev = fail(request ? 431 : 502, request ? "request header fields too large" : "response head too large");
    } else if (at && pastTrailerBound(at)) {
      ev = fail(request ? 431 : 502, "trailer section too large");
    } else if (error_status_) {
      ev = fail(error_status_, error_reason_);
    } else if (!request) {
      ev = fail(502, "malformed response");
    } else if (err == HPE_INVALID_VERSION) {
      // "HTTP/d.d" that is not 1.0 or 1.1: a version tether does not speak
      // (505); anything else on the line is malformed (400).
      std::string_view v(version_, version_len_);
      bool digits = v.size() == 3 && v[0] >= '0' && v[0] <= '9' && v[1] == '.' && v[2] >= '0' && v[2] <= '9';
      bool spoken = v == "1.0" || v == "1.1";
      bool other = digits && !spoken;
      ev = fail(other ? 505 : 400, other ? "HTTP version not supported" : "malformed request line");
    } else {
      ev = fail(400, "malformed request");
    }
    break;
  }
  *consumed = static_cast<std::size_t>(p - data);
  if (ev == Event::kNeedMore && state_ == State::kHead) mirrorTo(p);  // the head so far
  if (ev == Event::kNeedMore) {
    std::uint64_t at = offsetOf(p);
    if ((state_ == State::kHead || state_ == State::kIdle) && at - message_start_ > limits_.max_head_bytes) {
      ev = fail(request ? 431 : 502, request ? "request header fields too large" : "response head too large");
    } else if (pastTrailerBound(p)) {
      ev = fail(request ? 431 : 502, "trailer section too large");
    }
    if (ev == Event::kNeedMore && state_ == State::kBody && (parser_->p.flags & F_CHUNKED) && !last_chunk_ &&
        at > line_start_ && at - line_start_ > limits_.max_chunk_line + 2) {
      ev = fail(request ? 400 : 502, "chunk line too long");
    }
  }
  // Remember the last non-blank byte consumed, for the obs-fold check of a
  // value that starts the next input.
  for (const char* q = p; q > data; --q) {
    if (!blank(q[-1])) {
      prev_last_ = q[-1];
      break;
    }
  }
  base_offset_ += *consumed;
  data_ = nullptr;
  return ev;
}

H1Decoder::Event H1Decoder::finish() {
  if (state_ == State::kError) return Event::kError;
  if (state_ == State::kComplete || complete_pending_) return Event::kComplete;
  if (!midMessage()) return Event::kNeedMore;
  if (type_ == Type::kResponse && state_ == State::kBody && response_.framing == Framing::kClose) {
    parser_->pause = Pause::kNone;
    llhttp_errno_t err = llhttp_finish(&parser_->p);
    if ((err == HPE_OK || err == HPE_PAUSED) && parser_->pause == Pause::kMessage) {
      state_ = State::kComplete;
      return Event::kComplete;
    }
  }
  return fail(type_ == Type::kRequest ? 400 : 502, "connection closed mid-message");
}

void H1Decoder::nextMessage() {
  if (state_ == State::kError) return;
  // A fresh parser state for each message: nothing llhttp learnt from the
  // last one (a Connection or Upgrade trailer, an upgrade refused) carries
  // over. The heads were read from the head alone.
  llhttp_reset(&parser_->p);
  parser_->upgraded = false;
  state_ = State::kIdle;
  // The last message's trailer section is over: the bytes before the next
  // head (blank lines a peer may send) are held to the head's bound, not to
  // the trailers', whatever the cut.
  complete_pending_ = head_pending_ = in_trailers_ = last_chunk_ = false;
  message_start_ = base_offset_;
  request_method_ = kMethodGet;
  upgrade_requested_ = false;
}

// ---------------------------------------------------------------------------
// Heads: framing decided once, RFC 9112's rules checked.

int H1Decoder::onHeadersComplete() {
  head_pending_ = true;
  if (type_ == Type::kResponse) return responseHeadersComplete();
  // A request head is judged where it ends, in execute(): after its size,
  // so that the answer is the one a reader of smaller pieces gives.
  parser_->pause = Pause::kHead;
  return HPE_PAUSED;
}

namespace {

std::string_view trim(std::string_view v) {
  while (!v.empty() && blank(v.front())) v.remove_prefix(1);
  while (!v.empty() && blank(v.back())) v.remove_suffix(1);
  return v;
}

// reg-name bytes: unreserved, pct-encoded's '%', sub-delims without ','.
constexpr auto kRegName = [] {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (char c : std::string_view("-._~%!$&'()*+;=")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

}  // namespace

// RFC 9112 §3.2 / RFC 3986 §3.2.2: uri-host [ ":" port ]; a reg-name of
// unreserved, pct-encoded and sub-delims (without ',', which no host has and
// which some proxies would read as a list), or a bracketed IP literal. Empty
// is allowed (a target without authority).
bool validAuthority(std::string_view a) {
  if (a.empty()) return true;
  std::size_t i = 0;
  if (a[0] == '[') {
    std::size_t e = a.find(']');
    if (e == std::string_view::npos || e < 3) return false;
    for (std::size_t k = 1; k < e; ++k) {
      char c = a[k];
      bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' || c == '.';
      if (!ok) return false;
    }
    i = e + 1;
  } else {
    while (i < a.size() && kRegName[static_cast<unsigned char>(a[i])]) ++i;  // ':' is not a reg-name byte
    if (i == 0) return false;
  }
  if (i == a.size()) return true;
  if (a[i] != ':') return false;
  std::size_t digits = a.size() - i - 1;
  if (digits > 5) return false;
  for (std::size_t k = i + 1; k < a.size(); ++k)
    if (a[k] < '0' || a[k] > '9') return false;
  return true;
}

namespace {

bool namesFraming(const ConnectionTokens& t) {
  return t.names("content-length") || t.names("transfer-encoding") || t.names("host");
}

}  // namespace

int H1Decoder::requestHeadersComplete() {
  llhttp_t* p = &parser_->p;
  RequestHead& r = request_;
  auto refuse = [&](int status, const char* why) { return Callbacks::fail(*this, status, why); };
  if (version_len_ == 0) return refuse(400, "request line without a version");
  if (p->http_major != 1 || p->http_minor > 1) return refuse(505, "HTTP version not supported");
  r.method = p->method;
  r.version_minor = p->http_minor;
  r.keep_alive = llhttp_should_keep_alive(p) != 0;
  r.upgrade = p->upgrade != 0;
  if (p->method == HTTP_CONNECT) return refuse(405, "CONNECT is not served here");

  const HeaderList& h = r.headers;
  std::size_t te = 0, hosts = 0;
  long host_at = -1, te_at = -1;
  ConnectionTokens conn;
  for (std::size_t i = 0; i < h.size(); ++i) {
    switch (h.kind(i)) {
      case HeaderKind::kTransferEncoding: ++te; te_at = static_cast<long>(i); break;
      case HeaderKind::kHost: ++hosts; host_at = static_cast<long>(i); break;
      case HeaderKind::kConnection: conn.add(h.value(i)); break;
      default: break;
    }
  }
  if (conn.overflow) return refuse(400, "more than 16 Connection options");
  if (namesFraming(conn)) return refuse(400, "Connection names a framing or routing field");
  if (te) {
    // RFC 9112 §6.1: tether decodes chunked only, so it is the one coding.
    if (te > 1 || !iequals(trim(h.value(static_cast<std::size_t>(te_at))), "chunked")) {
      return refuse(400, "Transfer-Encoding other than chunked");
    }
    if (r.version_minor == 0) return refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
    if (p->flags & F_CONTENT_LENGTH) return refuse(400, "both Transfer-Encoding and Content-Length");
    r.framing = Framing::kChunked;
  } else if (p->flags & F_CONTENT_LENGTH) {
    r.framing = Framing::kLength;
    r.content_length = p->content_length;
    if (limits_.max_body_bytes && r.content_length > limits_.max_body_bytes) {
      return refuse(413, "request body too large");
    }
  }
  if (hosts > 1) return refuse(400, "more than one Host field");
  if (host_at >= 0 && !validAuthority(trim(h.value(static_cast<std::size_t>(host_at))))) {
    return refuse(400, "invalid Host field");
  }
  if (hosts == 0 && r.version_minor >= 1) return refuse(400, "missing Host field");

  // The target: origin-form, asterisk-form (OPTIONS only) or absolute-form.
  std::string& t = r.target;
  if (t.find('#') != std::string::npos) return refuse(400, "fragment in the request target");
  if (t == "*") {
    if (p->method != HTTP_OPTIONS) return refuse(400, "asterisk-form target for a method other than OPTIONS");
  } else if (!t.empty() && t[0] == '/') {
    // origin-form
  } else {
    std::size_t colon = t.find("://");
    if (colon == std::string::npos) return refuse(400, "malformed request target");
    std::string_view scheme(t.data(), colon);
    if (!iequals(scheme, "http") && !iequals(scheme, "https")) return refuse(400, "request target scheme not http(s)");
    std::size_t a = colon + 3;
    std::size_t e = t.find_first_of("/?", a);
    if (e == std::string::npos) e = t.size();
    std::string_view auth(t.data() + a, e - a);
    if (auth.empty() || !validAuthority(auth)) return refuse(400, "malformed authority in the request target");
    if (host_at >= 0 && !iequals(trim(h.value(static_cast<std::size_t>(host_at))), auth)) {
      return refuse(400, "Host does not match the request target");
    }
    r.authority.assign(auth);
    std::string origin = e < t.size() && t[e] == '/' ? t.substr(e) : "/" + t.substr(e);
    t = std::move(origin);
    r.absolute_form = true;
  }
  if (!r.absolute_form && host_at >= 0) r.authority.assign(trim(h.value(static_cast<std::size_t>(host_at))));
  return 0;
}

int H1Decoder::responseHeadersComplete() {
  llhttp_t* p = &parser_->p;
  ResponseHead& r = response_;
  auto refuse = [&](const char* why) { return Callbacks::fail(*this, 502, why); };
  if (p->http_major != 1 || p->http_minor > 1) return refuse("unsupported response version");
  r.status = static_cast<std::uint16_t>(p->status_code);
  r.version_minor = p->http_minor;
  r.keep_alive = llhttp_should_keep_alive(p) != 0;
  if (r.status < 100 || r.status > 999) return refuse("malformed status");
  if (r.status == 101 && !upgrade_requested_) return refuse("101 to a request that did not ask to upgrade");
  const HeaderList& h = r.headers;
  ConnectionTokens conn;
  std::size_t te = 0;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h.kind(i) == HeaderKind::kConnection) conn.add(h.value(i));
    te += h.kind(i) == HeaderKind::kTransferEncoding;
  }
  if (conn.overflow) return refuse("more than 16 Connection options");
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool length = (p->flags & F_CONTENT_LENGTH) != 0;
  if (te && length) return refuse("both Transfer-Encoding and Content-Length");
  if (r.status < 200 || r.status == 204 || r.status == 304 || request_method_ == HTTP_HEAD) {
    r.framing = Framing::kNone;
    if (r.informational()) return 1;  // no body whatever it says; the final head follows
    if (r.status == 101) return 2;  // no body: what follows is the tunnel's (HPE_PAUSED_UPGRADE)
    return 1;  // RFC 9112 §6.3: ends at its blank line, whatever it says
  }
  if (chunked) {
    r.framing = Framing::kChunked;
  } else if (te) {
    r.framing = Framing::kClose;  // a coding other than chunked last: read to the close
    r.keep_alive = false;
  } else if (length) {
    r.framing = Framing::kLength;
    r.content_length = p->content_length;
  } else {
    r.framing = Framing::kClose;
    r.keep_alive = false;
  }
  parser_->pause = Pause::kHead;
  return HPE_PAUSED;
}

}  // namespace tether::http
