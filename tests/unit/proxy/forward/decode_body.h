// The reference decoders of the codings tether compresses with (libzstd,
// libbrotlidec, zlib), for the unit tests and the fuzz target of
// proxy/forward/compression.h: a body as a client would read it.
#pragma once

#include <brotli/decode.h>
#include <zlib.h>
#include <zstd.h>

#include <string>

#include "conf/config.h"

namespace tether::bodies {

// Decodes `in` as far as it goes. *complete: the stream's end was read
// (zstd: a whole frame; brotli: the last meta-block; gzip: the trailer).
// *error: the bytes are not a stream of that coding.
inline std::string decodeBody(conf::Coding c, const std::string& in, bool* complete, bool* error) {
  std::string out;
  *complete = false;
  *error = false;
  if (c == conf::Coding::kZstd) {
    ZSTD_DStream* d = ZSTD_createDStream();
    ZSTD_initDStream(d);
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    for (;;) {
      char buf[65536];
      ZSTD_outBuffer ob{buf, sizeof buf, 0};
      std::size_t rc = ZSTD_decompressStream(d, &ob, &ib);
      if (ZSTD_isError(rc)) {
        *error = true;
        break;
      }
      out.append(buf, ob.pos);
      *complete = rc == 0;  // a frame decoded and flushed whole
      if (ib.pos == ib.size && ob.pos < ob.size) break;
    }
    ZSTD_freeDStream(d);
  } else if (c == conf::Coding::kBrotli) {
    BrotliDecoderState* d = BrotliDecoderCreateInstance(nullptr, nullptr, nullptr);
    std::size_t avail_in = in.size();
    const auto* next_in = reinterpret_cast<const std::uint8_t*>(in.data());
    BrotliDecoderResult rc;
    do {
      std::uint8_t buf[65536];
      std::size_t avail_out = sizeof buf;
      std::uint8_t* next_out = buf;
      rc = BrotliDecoderDecompressStream(d, &avail_in, &next_in, &avail_out, &next_out, nullptr);
      out.append(reinterpret_cast<char*>(buf), sizeof buf - avail_out);
    } while (rc == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT);
    *error = rc == BROTLI_DECODER_RESULT_ERROR;
    *complete = rc == BROTLI_DECODER_RESULT_SUCCESS;
    BrotliDecoderDestroyInstance(d);
  } else if (c == conf::Coding::kGzip) {
    z_stream z{};
    inflateInit2(&z, 16 + 15);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    int rc;
    do {
      char buf[65536];
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      rc = inflate(&z, Z_SYNC_FLUSH);
      out.append(buf, sizeof buf - z.avail_out);
    } while (rc == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
    *error = !(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
    *complete = rc == Z_STREAM_END;
    inflateEnd(&z);
  } else {
    out = in;
    *complete = true;
  }
  return out;
}

}  // namespace tether::bodies
