#include "proxy/access_log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "proxy/log.h"
#include "proxy/net.h"

namespace tether::proxy {
namespace {

constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;

std::string openError(const std::string& path, int err) {
  return "access_log.path: cannot open \"" + path + "\": " + std::strerror(err);
}

// Seconds with six decimals, written without printf (several per line).
void appendSeconds(std::string& out, std::int64_t micros) {
  if (micros < 0) {
    out += "-1";
    return;
  }
  char buf[32];
  char* end = std::to_chars(buf, buf + 20, micros / 1'000'000).ptr;
  *end++ = '.';
  std::int64_t frac = micros % 1'000'000;
  for (int k = 5; k >= 0; --k, frac /= 10) end[k] = static_cast<char>('0' + frac % 10);
  out.append(buf, static_cast<std::size_t>(end + 6 - buf));
}

void appendValue(std::string& out, const AccessField& f, bool json) {
  switch (f.kind) {
    case AccessField::Kind::kInt:
      out += std::to_string(f.num);
      return;
    case AccessField::Kind::kSeconds:
      appendSeconds(out, f.num);
      return;
    case AccessField::Kind::kBool:
      out += f.num ? "true" : "false";
      return;
    case AccessField::Kind::kString:
      break;
  }
  if (json || log::needsQuotes(f.str)) {
    out += '"';
    log::appendJsonEscaped(out, f.str);
    out += '"';
  } else {
    out += f.str;
  }
}

}  // namespace

void formatAccessLine(std::string& out, conf::LogFormat format,
                      std::initializer_list<AccessField> fields) {
  if (format == conf::LogFormat::kJson) {
    out += "{\"time\":\"";
    log::appendTime(out);
    out += "\",\"msg\":\"access\"";
    for (const AccessField& f : fields) {
      out += ",\"";
      log::appendJsonEscaped(out, f.key);
      out += "\":";
      appendValue(out, f, true);
    }
    out += "}\n";
    return;
  }
  log::appendTime(out);
  out += " access";
  for (const AccessField& f : fields) {
    out += ' ';
    out += f.key;
    out += '=';
    appendValue(out, f, false);
  }
  out += '\n';
}

// --- AccessLogFile ---------------------------------------------------------------

AccessLogFile::~AccessLogFile() {
  if (own_) ::close(fd_);
}

std::string AccessLogFile::use(const std::string& path) {
  if (path == path_ && (own_ || path.empty())) return {};
  int fd = STDOUT_FILENO;
  if (!path.empty()) {
    fd = ::open(path.c_str(), kOpenFlags, 0644);
    if (fd < 0) return openError(path, errno);
  }
  int old = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (own_) old = fd_;
    fd_ = fd;
    own_ = !path.empty();
    path_ = path;
  }
  if (old >= 0) ::close(old);
  return {};
}

std::string AccessLogFile::reopen() {
  if (path_.empty()) return {};
  int fd = ::open(path_.c_str(), kOpenFlags, 0644);
  if (fd < 0) return openError(path_, errno);
  int old = -1;
  {
    // Waits for a write in progress: its lines end up whole in the old file.
    std::lock_guard<std::mutex> lock(mu_);
    if (own_) old = fd_;
    fd_ = fd;
    own_ = true;
  }
  if (old >= 0) ::close(old);
  return {};
}

std::string AccessLogFile::check(const std::string& path) {
  if (path.empty()) return {};
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return openError(path, EISDIR);
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return openError(path, errno);
    ::close(fd);
    return {};
  }
  if (errno != ENOENT) return openError(path, errno);
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  if (::access(dir.c_str(), W_OK | X_OK) != 0) return openError(path, errno);
  return {};
}

void AccessLogFile::write(std::string_view data) {
  std::lock_guard<std::mutex> lock(mu_);
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // A non-blocking descriptor (a stdout shared with a parent that set
      // O_NONBLOCK): wait until it takes more, as a blocking one would.
      pollfd p{fd_, POLLOUT, 0};
      ::poll(&p, 1, -1);
      continue;
    }
    int err = n < 0 ? errno : EIO;
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    std::int64_t now = wallClockMs();
    std::int64_t last = last_error_log_ms_.load(std::memory_order_relaxed);
    if (now - last >= 10'000 && last_error_log_ms_.compare_exchange_strong(last, now)) {
      log::error("access log write failed",
                 {{"path", path_.empty() ? "stdout" : path_},
                  {"error", std::strerror(err)},
                  {"dropped_bytes", static_cast<std::uint64_t>(data.size())}});
    }
    return;
  }
}

// --- AccessLog -------------------------------------------------------------------

AccessLog::~AccessLog() {
  if (!buf_.empty()) file_.write(buf_);
}

void AccessLog::start(uv_loop_t* loop, const conf::AccessLog& cfg) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  started_ = true;
  configure(cfg);
}

void AccessLog::configure(const conf::AccessLog& cfg) {
  format_ = cfg.format;
  cap_ = static_cast<std::size_t>(cfg.buffer);
  if (buf_.size() >= cap_ || cfg.flush == 0) flush();
  if (buf_.capacity() < cap_) buf_.reserve(cap_ + 4096);
  if (!started_ || closed_) return;
  if (cfg.flush != flush_ms_ || !uv_is_active(reinterpret_cast<uv_handle_t*>(&timer_))) {
    flush_ms_ = cfg.flush;
    uv_timer_stop(&timer_);
    if (flush_ms_ > 0) {
      auto ms = static_cast<std::uint64_t>(flush_ms_);
      uv_timer_start(&timer_, onTimer, ms, ms);
    }
  }
}

void AccessLog::add(std::initializer_list<AccessField> fields) {
  formatAccessLine(buf_, format_, fields);
  if (buf_.size() >= cap_ || flush_ms_ == 0 || closed_ || !started_) flush();
}

void AccessLog::flush() {
  if (buf_.empty()) return;
  file_.write(buf_);
  buf_.clear();
}

void AccessLog::close() {
  flush();
  if (!started_ || closed_) return;
  closed_ = true;
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

void AccessLog::onTimer(uv_timer_t* t) { static_cast<AccessLog*>(t->data)->flush(); }

}  // namespace tether::proxy
