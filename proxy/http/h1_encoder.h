// HTTP/1.1 serialisation of heads, chunk framing and trailer sections: the
// one place tether writes HTTP/1 syntax. Sizes first, then writes into room
// the caller holds (a pool buffer, or a larger one for a large head); the
// writers never allocate and never write past size().
//
// Fields marked dropped are skipped. Values are written as held: the decoder
// admits no CR, LF or NUL in them, and policy adds only values of its own.
#pragma once

#include <cstddef>
#include <cstdint>

#include "proxy/http/head.h"

namespace tether::http {

// "METHOD target HTTP/1.1" CRLF, the head's fields, then `extra`'s (the
// fields policy adds, kept apart so that the head can be written again for a
// retry), CRLF.
std::size_t requestHeadSize(const RequestHead& h, const ExtraFields& extra);
std::size_t writeRequestHead(const RequestHead& h, const ExtraFields& extra, char* out);

// "HTTP/1.1 NNN reason" CRLF, the head's fields, `extra`'s, CRLF.
std::size_t responseHeadSize(const ResponseHead& h, const ExtraFields& extra);
std::size_t writeResponseHead(const ResponseHead& h, const ExtraFields& extra, char* out);

// A chunk's size line ("1a2f" CRLF); at most kChunkHeaderMax bytes. The data
// follows, then kCrlf.
inline constexpr std::size_t kChunkHeaderMax = 18;
std::size_t writeChunkHeader(std::uint64_t size, char* out);

// The last chunk and the trailer section: "0" CRLF, fields, CRLF.
std::size_t lastChunkSize(const HeaderList& trailers);
std::size_t writeLastChunk(const HeaderList& trailers, char* out);

// Re-encodes a decoded body as chunks into a buffer the caller owns:
// begin() reserves room for a size line, append() adds data, seal() writes
// the line and closes the chunk up against the previous one. The buffer
// holds sealed chunks back to back from its start.
class ChunkStager {
 public:
  // Room a chunk needs beyond its data.
  static constexpr std::size_t kOverhead = kChunkHeaderMax + 2;
  void begin(std::uint32_t end) {
    start_ = end;
    open_ = true;
  }
  bool open() const { return open_; }
  // Where data of the open chunk starts.
  std::uint32_t dataStart() const { return start_ + static_cast<std::uint32_t>(kChunkHeaderMax); }
  // Seals the open chunk whose data is [dataStart(), *end); an empty one is
  // taken back. Returns the new end.
  std::uint32_t seal(char* buf, std::uint32_t end);

 private:
  std::uint32_t start_ = 0;
  bool open_ = false;
};

}  // namespace tether::http
