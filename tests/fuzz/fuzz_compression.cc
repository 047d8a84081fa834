// libFuzzer target: response compression (proxy/forward/compression.h).
// Input: an Accept-Encoding value, NUL, a response head, NUL, a body; the
// first byte of the body also picks the coding and where flushes fall.
// Checked:
//   - negotiate() answers identity or one of the codings offered, and never
//     one the value gives q=0 by name;
//   - a head compressFields() edited is still one response head: it decodes
//     again, has no Content-Length and one Content-Encoding when compressed,
//     and names Accept-Encoding in Vary unless Vary is "*";
//   - the encoders' output, flushed anywhere, decodes (decode_body.h) to the
//     body exactly, and is complete after finish().
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "proxy/forward/compression.h"
#include "proxy/http/h1_decoder.h"
#include "proxy/http/h1_encoder.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/unit/proxy/forward/decode_body.h"

namespace {

using tether::conf::Coding;
namespace http = tether::http;
namespace fw = tether::forward;

std::string_view next(std::string_view& in) {
  std::size_t z = in.find('\0');
  std::string_view part = in.substr(0, z);
  in = z == std::string_view::npos ? std::string_view() : in.substr(z + 1);
  return part;
}

void negotiation(std::string_view ae) {
  constexpr Coding all[] = {Coding::kZstd, Coding::kBrotli, Coding::kGzip};
  Coding c = fw::negotiate(ae, all);
  Coding only_gzip[] = {Coding::kGzip};
  Coding g = fw::negotiate(ae, only_gzip);
  FUZZ_CHECK((g == Coding::kIdentity || g == Coding::kGzip) && "a coding not offered");
  // If gzip alone is acceptable and preferred over nothing, the full list
  // finds some coding too.
  FUZZ_CHECK((g == Coding::kIdentity || c != Coding::kIdentity) &&
             "gzip acceptable but nothing chosen");
}

void head(std::string_view bytes, Coding coding) {
  if (bytes.empty()) return;  // a decoder is never run on nothing
  http::H1Decoder d(http::H1Decoder::Type::kResponse, {});
  d.expectResponseTo(http::kMethodGet, false);
  std::size_t used = 0;
  if (d.execute(bytes.data(), bytes.size(), &used) != http::H1Decoder::Event::kHead) return;
  http::ResponseHead& r = d.response();
  if (r.status == 101) return;
  tether::conf::Compression conf;
  if (!fw::responseEligible(r, conf)) return;
  http::ExtraFields extra;
  std::string scratch;
  fw::compressFields(r, coding, extra, scratch);
  std::string out(http::responseHeadSize(r, extra), '\0');
  out.resize(http::writeResponseHead(r, extra, out.data()));
  http::H1Decoder again(http::H1Decoder::Type::kResponse, {});
  again.expectResponseTo(http::kMethodGet, false);
  used = 0;
  auto ev = again.execute(out.data(), out.size(), &used);
  FUZZ_CHECK((ev == http::H1Decoder::Event::kHead || ev == http::H1Decoder::Event::kComplete) &&
             "the edited head does not decode");
  const http::HeaderList& h = again.response().headers;
  int encodings = 0, lengths = 0;
  bool vary_ae = false, vary_star = false;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h.kind(i) == http::HeaderKind::kContentEncoding) ++encodings;
    if (h.kind(i) == http::HeaderKind::kContentLength) ++lengths;
    if (http::iequals(h.name(i), "vary")) {
      std::string v(h.value(i));
      for (char& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      vary_ae = vary_ae || v.find("accept-encoding") != std::string::npos;
      vary_star = vary_star || v.find('*') != std::string::npos;
    }
  }
  FUZZ_CHECK((vary_ae || vary_star) && "Vary does not name Accept-Encoding");
  if (coding != Coding::kIdentity) {
    FUZZ_CHECK((encodings == 1) && "not one Content-Encoding");
    FUZZ_CHECK((lengths == 0) && "a Content-Length on a compressed body");
  }
}

void body(std::string_view b, Coding coding, std::uint8_t pattern) {
  auto e = fw::makeEncoder(coding, tether::conf::Compression{}.level(coding), pattern & 1 ? b.size() : 0);
  FUZZ_CHECK((e != nullptr) && "no encoder");
  std::string out;
  std::size_t step = 1 + (pattern >> 1) * 37u;
  for (std::size_t at = 0; at < b.size(); at += step) {
    FUZZ_CHECK((e->write(b.substr(at, step), &out)) && "write failed");
    if ((at / step) % 3 == 0) {
      FUZZ_CHECK((e->flush(&out)) && "flush failed");
      bool complete = true, error = false;
      std::string got = tether::bodies::decodeBody(coding, out, &complete, &error);
      FUZZ_CHECK((!error) && "a flushed stream does not decode");
      FUZZ_CHECK((got == b.substr(0, std::min(b.size(), at + step))) && "a flush left bytes behind");
    }
  }
  FUZZ_CHECK((e->finish(&out)) && "finish failed");
  bool complete = false, error = false;
  std::string got = tether::bodies::decodeBody(coding, out, &complete, &error);
  FUZZ_CHECK((!error && complete) && "the finished stream is not whole");
  FUZZ_CHECK((got == b) && "the body changed");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view ae = next(in);
  std::string_view h = next(in);
  std::uint8_t sel = in.empty() ? 0 : static_cast<std::uint8_t>(in[0]);
  Coding coding = static_cast<Coding>(sel % 4);  // identity, zstd, br, gzip
  negotiation(ae);
  head(h, coding);
  if (coding != Coding::kIdentity && in.size() <= 64 * 1024) body(in, coding, sel >> 2);
  return 0;
}
