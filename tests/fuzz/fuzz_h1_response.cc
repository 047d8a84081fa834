// libFuzzer target: the HTTP/1 response decoder (proxy/http/h1_decoder.h), as
// upstream connections and health checks run it: 1xx heads, HEAD answers,
// 101 with and without an upgrade asked for, trailers, close-delimited bodies
// ended by finish(). See h1_fuzz.h for the input layout and what is checked.
#include "tests/fuzz/h1_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return tether::fuzz::fuzzOne(tether::http::H1Decoder::Type::kResponse, data, size);
}
