// Drives an H1Decoder over a byte string cut into pieces, and writes what it
// saw as a transcript: the same transcript whatever the cut is the property
// every codec test checks.
#pragma once

#include <random>
#include <string>
#include <vector>

#include "proxy/http/h1_decoder.h"

namespace tether::http::testing {

inline const char* framingName(Framing f) {
  switch (f) {
    case Framing::kNone: return "none";
    case Framing::kLength: return "length";
    case Framing::kChunked: return "chunked";
    case Framing::kClose: return "close";
  }
  return "?";
}

inline std::string fieldsText(const HeaderList& h) {
  std::string s;
  for (std::size_t i = 0; i < h.size(); ++i) {
    s += "[";
    s += h.name(i);
    s += "=";
    s += h.value(i);
    s += "]";
  }
  return s;
}

struct Decoded {
  std::string transcript;
  int error = 0;
  std::size_t messages = 0;
  std::size_t leftover = 0;  // bytes not consumed when decoding stopped
};

// Feeds `pieces` in order; for responses, every message answers `method`.
inline Decoded decode(H1Decoder::Type type, const std::vector<std::string>& pieces,
                  H1Decoder::Limits limits = {}, std::uint8_t method = kMethodGet,
                  bool upgrade = false, bool finish = false) {
  H1Decoder d(type, limits);
  Decoded run;
  std::string body;
  d.setBodySink([](void* ctx, const char* p, std::size_t n) { static_cast<std::string*>(ctx)->append(p, n); }, &body);
  d.expectResponseTo(method, upgrade);
  std::string pending;
  bool stopped = false;
  auto step = [&](bool at_eof) {
    for (int guard = 0; guard < 100000 && !stopped; ++guard) {
      std::size_t used = 0;
      H1Decoder::Event ev = at_eof ? d.finish() : d.execute(pending.data(), pending.size(), &used);
      pending.erase(0, used);
      switch (ev) {
        case H1Decoder::Event::kNeedMore:
          return;
        case H1Decoder::Event::kHead:
          if (type == H1Decoder::Type::kRequest) {
            const RequestHead& r = d.request();
            run.transcript += "HEAD " + std::string(methodName(r.method)) + " " + r.target + " auth=" + r.authority +
                              " v1." + std::to_string(r.version_minor) + " " + framingName(r.framing) + " cl=" +
                              std::to_string(r.content_length) + (r.keep_alive ? " ka" : " close") +
                              (r.upgrade ? " upgrade" : "") + " " + fieldsText(r.headers) + "\n";
          } else {
            const ResponseHead& r = d.response();
            run.transcript += "HEAD " + std::to_string(r.status) + " " + r.reason + " " + framingName(r.framing) +
                              " cl=" + std::to_string(r.content_length) + (r.keep_alive ? " ka" : " close") + " " +
                              fieldsText(r.headers) + "\n";
          }
          break;
        case H1Decoder::Event::kComplete:
          run.transcript += "BODY " + body + "\nTRAILERS " + fieldsText(d.trailers()) + "\nCOMPLETE\n";
          body.clear();
          ++run.messages;
          d.nextMessage();
          d.expectResponseTo(method, upgrade);
          if (at_eof) return;
          if ((type == H1Decoder::Type::kRequest && d.request().upgrade) ||
              (type == H1Decoder::Type::kResponse && d.response().status == 101)) {
            stopped = true;  // what follows is the tunnel's
            return;
          }
          break;
        case H1Decoder::Event::kError:
          run.transcript += "ERROR " + std::to_string(d.errorStatus()) + " " + std::string(d.errorReason()) + "\n";
          run.error = d.errorStatus();
          stopped = true;
          return;
      }
      if (at_eof) return;
    }
  };
  for (const std::string& p : pieces) {
    if (stopped) break;
    pending += p;
    step(false);
  }
  if (finish && !stopped) step(true);
  run.leftover = pending.size();
  return run;
}

inline std::vector<std::string> whole(const std::string& s) { return {s}; }

inline std::vector<std::string> bytewise(const std::string& s) {
  std::vector<std::string> v;
  for (char c : s) v.emplace_back(1, c);
  return v;
}

inline std::vector<std::string> randomCuts(const std::string& s, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> v;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t n = 1 + rng() % 23;
    v.push_back(s.substr(i, n));
    i += n;
  }
  return v;
}

inline std::vector<std::string> splitAt(const std::string& s, std::size_t at) {
  return {s.substr(0, at), s.substr(at)};
}

}  // namespace tether::http::testing
