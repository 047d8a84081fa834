#include "proxy/http/h1_encoder.h"

#include <cstring>

namespace tether::http {
namespace {

char* put(char* o, std::string_view s) {
  std::memcpy(o, s.data(), s.size());
  return o + s.size();
}

std::size_t fieldsSize(const HeaderList& h) { return h.lineBytes(); }

char* putFields(const HeaderList& h, char* o) { return o + h.writeLines(o); }

char* putExtra(const ExtraFields& e, char* o) {
  for (int i = 0; i < e.count; ++i) {
    o = put(o, e.items[i].name);
    *o++ = ':';
    *o++ = ' ';
    o = put(o, e.items[i].value);
    *o++ = '\r';
    *o++ = '\n';
  }
  return o;
}

}  // namespace

std::size_t requestHeadSize(const RequestHead& h, const ExtraFields& extra) {
  return methodName(h.method).size() + 1 + h.target.size() + 11 + fieldsSize(h.headers) + extra.bytes() + 2;
}

std::size_t writeRequestHead(const RequestHead& h, const ExtraFields& extra, char* out) {
  char* o = put(out, methodName(h.method));
  *o++ = ' ';
  o = put(o, h.target);
  o = put(o, " HTTP/1.1\r\n");
  o = putFields(h.headers, o);
  o = putExtra(extra, o);
  o = put(o, "\r\n");
  return static_cast<std::size_t>(o - out);
}

std::size_t responseHeadSize(const ResponseHead& h, const ExtraFields& extra) {
  return 13 + h.reason.size() + 2 + fieldsSize(h.headers) + extra.bytes() + 2;
}

std::size_t writeResponseHead(const ResponseHead& h, const ExtraFields& extra, char* out) {
  char line[14] = "HTTP/1.1 000 ";
  int s = h.status;
  line[9] = static_cast<char>('0' + (s / 100) % 10);
  line[10] = static_cast<char>('0' + (s / 10) % 10);
  line[11] = static_cast<char>('0' + s % 10);
  char* o = put(out, std::string_view(line, 13));
  o = put(o, h.reason);
  o = put(o, "\r\n");
  o = putFields(h.headers, o);
  o = putExtra(extra, o);
  o = put(o, "\r\n");
  return static_cast<std::size_t>(o - out);
}

std::size_t writeChunkHeader(std::uint64_t size, char* out) {
  static const char kHex[] = "0123456789abcdef";
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = kHex[size & 15];
    size >>= 4;
  } while (size);
  for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  out[n] = '\r';
  out[n + 1] = '\n';
  return static_cast<std::size_t>(n + 2);
}

std::size_t lastChunkSize(const HeaderList& trailers) { return 3 + fieldsSize(trailers) + 2; }

std::size_t writeLastChunk(const HeaderList& trailers, char* out) {
  char* o = put(out, "0\r\n");
  o = putFields(trailers, o);
  o = put(o, "\r\n");
  return static_cast<std::size_t>(o - out);
}

std::uint32_t ChunkStager::seal(char* buf, std::uint32_t end) {
  open_ = false;
  std::uint32_t data = dataStart();
  if (end <= data) return start_;
  std::uint32_t len = end - data;
  std::size_t n = writeChunkHeader(len, buf + start_);
  std::memmove(buf + start_ + n, buf + data, len);
  std::uint32_t e = start_ + static_cast<std::uint32_t>(n) + len;
  buf[e] = '\r';
  buf[e + 1] = '\n';
  return e + 2;
}

}  // namespace tether::http
