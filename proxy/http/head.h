// Neutral HTTP message heads: what a request or a response says, whatever
// protocol carried it. A head owns its bytes (one arena per field list), so
// nothing in it points into a read buffer that a later read may overwrite.
//
// Heads are filled by a codec (h1_decoder.h), changed by policy (headers
// dropped or added, the target rewritten) and written by an encoder
// (h1_encoder.h). Not thread-safe; a head lives on one loop.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/headers.h"

namespace tether::http {

// A field list in arrival order, owning its bytes. Each field is kept as
// the line it is written as ("Name: value" CRLF), so that an encoder writes a
// run of kept fields with one copy; drop() hides a field without moving the
// others. A codec fills it one of two ways: mirrored (the head's bytes copied
// in bulk as they are consumed, fields as offsets into that copy: one copy
// per read) or by pieces (trailers, fields policy adds).
class HeaderList {
 public:
  struct Field {
    std::uint32_t off = 0;        // the line starts here: the name
    std::uint32_t value_off = 0;  // after "Name: "
    std::uint32_t value_len = 0;
    std::uint32_t line_len = 0;   // 0 while the field is still arriving
    std::uint16_t name_len = 0;
    HeaderKind kind = HeaderKind::kOther;
    bool dropped = false;
    bool underscore = false;  // the name holds '_'
  };

  std::size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  std::string_view name(std::size_t i) const { return {arena_.data() + fields_[i].off, fields_[i].name_len}; }
  std::string_view value(std::size_t i) const { return {arena_.data() + fields_[i].value_off, fields_[i].value_len}; }
  HeaderKind kind(std::size_t i) const { return fields_[i].kind; }
  bool dropped(std::size_t i) const { return fields_[i].dropped; }
  bool underscore(std::size_t i) const { return fields_[i].underscore; }
  void drop(std::size_t i) {
    Field& f = fields_[i];
    if (f.dropped) return;
    f.dropped = true;
    live_bytes_ -= f.line_len ? f.line_len : f.name_len + f.value_len + 4u;
  }
  // Bytes of names and values held (the bound codecs enforce).
  std::size_t bytes() const { return arena_.size(); }
  // Bytes the kept fields take as lines: what an encoder writes.
  std::size_t lineBytes() const { return live_bytes_; }
  // Writes the kept fields' lines to `out`, a run of kept fields in one
  // copy; returns the bytes written (lineBytes()).
  std::size_t writeLines(char* out) const;

  void add(std::string_view name, std::string_view value) {
    beginField();
    appendName(name);
    endName();
    appendValue(value);
    endValue();
  }
  // Field-by-pieces, as a codec fills it: beginField, appendName*, endName,
  // appendValue*, endValue.
  void beginField() {
    Field f;
    f.off = f.value_off = static_cast<std::uint32_t>(arena_.size());
    fields_.push_back(f);
  }
  void appendName(std::string_view piece) {
    arena_.append(piece);
    fields_.back().name_len = static_cast<std::uint16_t>(fields_.back().name_len + piece.size());
  }
  // The name's bytes as held (possibly several pieces, possibly empty).
  std::size_t lastNameLength() const { return fields_.back().name_len; }
  void endName();
  void appendValue(std::string_view piece) {
    arena_.append(piece);
    fields_.back().value_len += static_cast<std::uint32_t>(piece.size());
  }
  // The value is complete: trailing blanks trimmed, the line closed.
  void endValue() {
    Field& f = fields_.back();
    if (f.line_len) return;
    while (f.value_len && (arena_.back() == ' ' || arena_.back() == '\t')) {
      arena_.pop_back();
      --f.value_len;
    }
    arena_.append("\r\n", 2);
    f.line_len = static_cast<std::uint32_t>(arena_.size()) - f.off;
    live_bytes_ += f.line_len;
  }

  // Mirrored: the codec appends the head's bytes with mirror() as they are
  // consumed, and notes where llhttp found each name and value piece
  // (offsets into that copy) with noteName() and noteValue(). sealFields()
  // then finishes every field once the copy reaches the last value (names
  // classified, '_' noted, values trimmed), and sealMirror() closes every
  // line once the whole head is in (end: where its blank line starts).
  // Both return why tether refuses the head, or nullptr.
  static constexpr std::uint32_t kMaxNameBytes = 0xffff;  // Field::name_len
  void mirror(const char* p, std::size_t n) { arena_.append(p, n); }
  void mirrorFill(std::size_t n, char c) { arena_.append(n, c); }
  // A name piece at `off`: the next field, or more of the open name when it
  // continues it (a name cut between two reads).
  void noteName(std::uint32_t off, std::uint32_t len) {
    if (note_ == Note::kName && off == note_end_) {
      Field& f = fields_.back();
      if (f.name_len + len > kMaxNameBytes) name_too_long_ = true;
      f.name_len = static_cast<std::uint16_t>(f.name_len + len);
    } else {
      if (len > kMaxNameBytes) name_too_long_ = true;
      Field f;
      f.off = off;
      f.name_len = static_cast<std::uint16_t>(len);
      f.value_off = off + len;  // the colon: an empty value until one comes
      fields_.push_back(f);
      note_ = Note::kName;
    }
    note_end_ = off + len;
  }
  // A value piece: the field's value, or more of it when it continues it.
  // Any other piece (a second value, a value with no name before it) is a
  // line folded onto the one before (obs-fold), refused by sealFields().
  void noteValue(std::uint32_t off, std::uint32_t len) {
    if (note_ == Note::kName || (note_ == Note::kValue && off == note_end_)) {
      Field& f = fields_.back();
      if (f.value_len == 0 && len) f.value_off = off;
      f.value_len += len;
      note_ = Note::kValue;
      note_end_ = off + len;
    } else {
      folded_ = true;
    }
  }
  // The copy holds a head that llhttp (strict mode) accepted up to its last
  // field's value, every piece noted: lines of a token name, ':', OWS, a
  // value, OWS, CRLF; the copy may stop inside the last of them. Refused: an
  // empty name, a name past kMaxNameBytes, obs-fold.
  const char* sealFields();
  const char* sealMirror(std::uint32_t end);

  // The first field of `k` not dropped; -1 if none.
  long find(HeaderKind k) const {
    for (std::size_t i = 0; i < fields_.size(); ++i)
      if (fields_[i].kind == k && !fields_[i].dropped) return static_cast<long>(i);
    return -1;
  }
  // Empties the list, keeping its storage (a codec reuses it per message).
  void clear() {
    arena_.clear();
    fields_.clear();
    live_bytes_ = 0;
    folded_ = name_too_long_ = false;
    note_ = Note::kNone;
  }
  // The storage held, used or not.
  std::size_t capacityBytes() const { return arena_.capacity() + fields_.capacity() * sizeof(Field); }
  // As clear(), keeping the storage only while it is at most max_bytes (a
  // reused head or codec allocates nothing for an ordinary message, and
  // keeps nothing large that one big message left).
  void clearKeeping(std::size_t max_bytes) {
    clear();
    if (capacityBytes() > max_bytes) shrink();
  }
  // Gives the storage back (a pooled codec after a burst of large heads).
  void shrink() {
    std::string().swap(arena_);
    std::vector<Field>().swap(fields_);
    live_bytes_ = 0;
    folded_ = name_too_long_ = false;
    note_ = Note::kNone;
  }

 private:

  std::string arena_;
  std::vector<Field> fields_;
  std::size_t live_bytes_ = 0;
  // Noting pieces: what the last one was, where it ended, and whether a
  // line was folded.
  enum class Note : std::uint8_t { kNone, kName, kValue };
  Note note_ = Note::kNone;
  bool folded_ = false;
  bool name_too_long_ = false;  // a name past kMaxNameBytes (Field::name_len's range)
  std::uint32_t note_end_ = 0;
};

// Fields policy adds to a head for one write, as views into storage that
// outlives the write (the caller's, or `digits` here for a number). Kept
// apart from the head so that the head can be written again for another
// attempt. At most kMax; add() beyond it is a bug of ours and is ignored.
struct ExtraFields {
  static constexpr int kMax = 10;
  struct Field {
    std::string_view name;
    std::string_view value;
  };
  Field items[kMax];
  int count = 0;
  char digits[24];  // a value of our own (Content-Length)

  void clear() { count = 0; }
  void add(std::string_view name, std::string_view value) {
    if (count < kMax) items[count++] = Field{name, value};
  }
  std::size_t bytes() const {
    std::size_t n = 0;
    for (int i = 0; i < count; ++i) n += items[i].name.size() + items[i].value.size() + 4;
    return n;
  }
};

// How a message's body is delimited, decided once by the codec from the
// message as received (RFC 9112 §6).
enum class Framing : std::uint8_t {
  kNone,     // no body: HEAD answers, 1xx, 204, 304, requests without length
  kLength,   // Content-Length
  kChunked,  // Transfer-Encoding: chunked
  kClose,    // responses only: the body ends when the connection does
};

struct RequestHead {
  std::uint8_t method = 0;       // an llhttp method code; see methodName()
  std::uint8_t version_minor = 1;  // HTTP/1.0 or HTTP/1.1
  bool keep_alive = true;        // what the client asks for
  bool upgrade = false;          // Connection: upgrade with an Upgrade header
  bool absolute_form = false;    // the target arrived as scheme://authority/...
  Framing framing = Framing::kNone;
  std::uint64_t content_length = 0;
  std::string target;     // origin-form ("/p?q") or "*": what goes upstream
  std::string authority;  // from an absolute-form target, else the Host field; may be empty
  std::string protocol;   // HTTP/2 extended CONNECT's :protocol (RFC 8441), e.g. "websocket"; else empty
  HeaderList headers;

  // As clear(), keeping each buffer's storage only while it is at most
  // max_bytes (HeaderList::clearKeeping).
  void clearKeeping(std::size_t max_bytes) {
    clear();
    headers.clearKeeping(max_bytes);
    for (std::string* s : {&target, &authority, &protocol})
      if (s->capacity() > max_bytes) std::string().swap(*s);
  }
  void clear() {
    method = 0;
    protocol.clear();
    version_minor = 1;
    keep_alive = true;
    upgrade = absolute_form = false;
    framing = Framing::kNone;
    content_length = 0;
    target.clear();
    authority.clear();
    headers.clear();
  }
};

struct ResponseHead {
  std::uint16_t status = 0;
  std::uint8_t version_minor = 1;
  bool keep_alive = true;  // what the backend allows
  Framing framing = Framing::kNone;
  std::uint64_t content_length = 0;
  std::string reason;
  HeaderList headers;

  bool informational() const { return status >= 100 && status < 200 && status != 101; }
  void clear() {
    status = 0;
    version_minor = 1;
    keep_alive = true;
    framing = Framing::kNone;
    content_length = 0;
    reason.clear();
    headers.clear();
  }
};

// "GET", "POST", ... for an llhttp method code; "-" for one it does not know.
std::string_view methodName(std::uint8_t method);
// The llhttp method code of a method name as sent (case-sensitive, as RFC
// 9110 §9.1 says); -1 for a method llhttp does not know.
int methodCode(std::string_view name);
// RFC 9112 §3.2 / RFC 3986 §3.2.2 authority syntax (uri-host [":" port]);
// empty is allowed. For the Host field and HTTP/2's :authority alike.
bool validAuthority(std::string_view authority);

// Method codes the policy layer asks about (llhttp's values, checked against
// llhttp.h in head.cc).
inline constexpr std::uint8_t kMethodDelete = 0, kMethodGet = 1, kMethodHead = 2, kMethodPost = 3,
                              kMethodPut = 4, kMethodConnect = 5, kMethodOptions = 6, kMethodTrace = 7,
                              kMethodPatch = 28;

}  // namespace tether::http
