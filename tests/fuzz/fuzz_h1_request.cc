// libFuzzer target: the HTTP/1 request decoder (proxy/http/h1_decoder.h), as
// the downstream side and the admin listener run it. See h1_fuzz.h for the
// input layout and what is checked.
#include "tests/fuzz/h1_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return tether::fuzz::fuzzOne(tether::http::H1Decoder::Type::kRequest, data, size);
}
