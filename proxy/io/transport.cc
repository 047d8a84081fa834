#include "proxy/io/transport.h"

#include <cstring>
#include <string>
#include <iterator>
#include <utility>

namespace tether::proxy {

// ---------------------------------------------------------------------------
// TCP

char* TcpTransport::readSpace(std::size_t* len) {
  char* p = nullptr;
  if (!owner_.plainRoom(&p, len)) {
    *len = 0;
    return nullptr;
  }
  return p;
}

Transport::Result TcpTransport::received(std::size_t n) {
  owner_.plainAdded(n);
  return {true, false, false, Fault::kNone};
}

int TcpTransport::write(uv_buf_t* bufs, unsigned n) { return owner_.socketWrite(bufs, n); }

void TcpTransport::writeOwn(const char* data, std::size_t len) { writeCopied(owner_.socket(), data, len); }

void TcpTransport::socketWritten(int status) { owner_.plainWritten(status); }

int writeWhatFits(uv_stream_t* to, uv_buf_t* bufs, unsigned n, unsigned* first) {
  std::size_t total = 0;
  for (unsigned i = 0; i < n; ++i) total += bufs[i].len;
  int w = uv_try_write(to, bufs, n);
  if (w == static_cast<int>(total)) return 0;
  if (w < 0 && w != UV_EAGAIN) return w;
  std::size_t done = w > 0 ? static_cast<std::size_t>(w) : 0;
  unsigned i = 0;
  while (i < n && done >= bufs[i].len) done -= bufs[i++].len;
  bufs[i].base += done;
  bufs[i].len -= done;
  *first = i;
  return 1;
}

void writeCopied(uv_stream_t* to, const char* data, std::size_t len) {
  uv_buf_t b = uv_buf_init(const_cast<char*>(data), static_cast<unsigned>(len));
  int w = uv_try_write(to, &b, 1);  // UV_EAGAIN while earlier writes are queued: order kept
  if (w == static_cast<int>(len)) return;
  std::size_t done = w > 0 ? static_cast<std::size_t>(w) : 0;
  struct Copy {
    uv_write_t req;
    std::string data;
  };
  Copy* c = new Copy{{}, std::string(data + done, len - done)};
  c->req.data = c;
  uv_buf_t cb = uv_buf_init(c->data.data(), static_cast<unsigned>(c->data.size()));
  if (uv_write(&c->req, to, &cb, 1, [](uv_write_t* req, int) { delete static_cast<Copy*>(req->data); }) != 0) {
    delete c;
  }
}

// ---------------------------------------------------------------------------
// TLS

TlsTransport::TlsTransport(TransportOwner& owner, SSL* ssl, BufferPool& pool, std::shared_ptr<const TlsContext> ctx)
    : Transport(owner), tls_(ssl, pool, std::move(ctx)) {}

void TlsTransport::fail(const char* what) {
  if (failed_) return;
  failed_ = true;
  owner_.transportFailed(what, tls_.error());
}

Transport::Result TlsTransport::received(std::size_t n) {
  tls_.received(n);
  return decrypt();
}

Transport::Result TlsTransport::eof() {
  if (!tls_.buffered()) return {false, true, false, Fault::kNone};
  eof_ = true;  // after what is still held
  return decrypt();
}

// The handshake first; then plaintext into the owner's buffer until it is
// full (the rest waits here: buffered()) or the records held are used up.
Transport::Result TlsTransport::decrypt() {
  Result r;
  if (failed_) return r;
  if (tls_.handshaking()) {
    int first = tls_.firstByte();
    if (first >= 'A' && first <= 'Z') {
      // A plain-text request on a TLS port (a TLS record starts with 0x16).
      r.fault = Fault::kNotTls;
      return r;
    }
    long h = tls_.handshake();
    if (h == TlsStream::kError) {
      pump();  // the alert
      r.fault = Fault::kHandshake;
      return r;
    }
    pump();  // our flight of the handshake
    if (failed_ || h != 1) return r;
    r.handshook = true;
  }
  for (;;) {
    char* p = nullptr;
    std::size_t room = 0;
    if (!owner_.plainRoom(&p, &room) || room == 0) break;
    long n = tls_.read(p, room);
    if (n > 0) {
      owner_.plainAdded(static_cast<std::size_t>(n));
      r.data = true;
      continue;
    }
    if (n == TlsStream::kEof) r.eof = true;
    if (n == TlsStream::kError) {
      fail("tls: read failed");
      return r;
    }
    break;
  }
  if (eof_ && !tls_.buffered()) r.eof = true;
  pump();  // what reading produced: session tickets, alerts
  return r;
}

int TlsTransport::write(uv_buf_t* bufs, unsigned n) {
  if (failed_) return UV_EPIPE;
  for (unsigned i = 0; i < n; ++i) {
    if (bufs[i].len == 0) continue;
    if (count_ == std::size(pending_)) {
      fail("tls: more pieces than a write carries");
      return UV_EINVAL;
    }
    pending_[count_++] = bufs[i];
  }
  data_write_ = true;
  pump();
  if (failed_) return UV_EPIPE;
  return data_write_ ? 1 : 0;
}

void TlsTransport::writeOwn(const char* data, std::size_t len) {
  raw_.append(data, len);
  pump();
}

// Encrypts what waits, in order, and writes the ciphertext out, one queued
// write at a time; then a deferred shutdown, after a close_notify.
void TlsTransport::pump() {
  TlsStream& st = tls_;
  for (;;) {
    if (failed_ || st.outInFlight()) return;  // socketWritten carries on
    bool room = true;
    while (room && (next_ < count_ || !raw_.empty())) {
      bool plain = next_ < count_;
      const char* p = plain ? pending_[next_].base : raw_.data();
      std::size_t len = plain ? pending_[next_].len : raw_.size();
      long w = st.write(p, len);
      if (w == TlsStream::kError) {
        fail("tls: write failed");
        return;
      }
      if (w == TlsStream::kWantMore) {
        room = false;
      } else if (plain) {
        pending_[next_].base += w;
        pending_[next_].len -= static_cast<std::size_t>(w);
        if (pending_[next_].len == 0) ++next_;
      } else {
        raw_.erase(0, static_cast<std::size_t>(w));
      }
    }
    if (next_ == count_) next_ = count_ = 0;
    bool all_encrypted = count_ == 0 && raw_.empty();
    if (all_encrypted && shutdown_ && !notify_sent_) {
      notify_sent_ = true;
      st.shutdown();
    }
    if (st.outLen()) {
      uv_buf_t b = uv_buf_init(const_cast<char*>(st.outData()), static_cast<unsigned>(st.outLen()));
      int r = owner_.socketWrite(&b, 1);
      if (r < 0) {
        fail("tls: write failed");
        return;
      }
      if (r == 1) {  // b is what the queued write carries
        st.sent(st.outLen() - b.len);
        st.inFlight(b.len);
        return;
      }
      st.sent(st.outLen());
      if (!room || (all_encrypted && shutdown_)) continue;  // room again, or the close_notify
    }
    if (!all_encrypted) continue;
    break;
  }
  // Everything written.
  data_write_ = false;
  if (shutdown_) {
    uv_shutdown_t* req = std::exchange(shutdown_, nullptr);
    if (uv_shutdown(req, owner_.socket(), shutdown_cb_) != 0) {
      shutdown_ = req;  // cancel() completes it
      fail("tls: shutdown failed");
    }
  }
}

void TlsTransport::socketWritten(int status) {
  tls_.written();
  if (status != 0) {
    fail("tls: write failed");
    return;
  }
  bool waiting = data_write_;
  pump();
  if (failed_) return;
  if (waiting && !data_write_) owner_.plainWritten(0);
}

int TlsTransport::shutdown(uv_shutdown_t* req, uv_shutdown_cb cb) {
  shutdown_ = req;
  shutdown_cb_ = cb;
  pump();
  return 0;
}

void TlsTransport::cancel() {
  if (uv_shutdown_t* req = std::exchange(shutdown_, nullptr)) shutdown_cb_(req, UV_ECANCELED);
}

}  // namespace tether::proxy
