// The access log: one line per request, a stream of its own.
//
// Independent of the application log (proxy/log.h) and of log.level: lines go
// to stdout, or to access_log.path, never to stderr. Two parts:
//
//   AccessLogFile  process-wide, in Runtime: the descriptor. Opened by Server
//                  on the main thread before any worker starts, reopened there
//                  on SIGUSR1 (logrotate's postrotate) and when a reload names
//                  another path. write() may be called from any loop.
//   AccessLog      one per worker, loop-affine: add() formats a line into a
//                  buffer, written to the file when it holds access_log.buffer
//                  bytes, every access_log.flush (a timer on the worker's
//                  loop), and when the worker stops (close()).
//
// Backpressure: a full buffer is never dropped. It is written synchronously,
// and the worker's loop waits until the descriptor has taken every byte
// (nginx does the same with `buffer=`). A reader of stdout that stalls stalls
// the workers that log to it: the price of losing no line.
//
// Line integrity: a write carries whole lines only, and the writes of all
// workers are serialized by a mutex in AccessLogFile, taken once per flush
// (per buffer or per access_log.flush), never per request. Lines of different
// workers never interleave, on a pipe either.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace tether::proxy {

// One key and its typed value. Keys and string values must outlive add().
struct AccessField {
  enum class Kind : std::uint8_t { kString, kInt, kSeconds, kBool };
  AccessField(std::string_view k, std::string_view v) : key(k), str(v) {}
  AccessField(std::string_view k, const char* v) : key(k), str(v) {}
  AccessField(std::string_view k, std::int64_t v) : key(k), num(v), kind(Kind::kInt) {}
  AccessField(std::string_view k, std::uint64_t v)
      : key(k), num(static_cast<std::int64_t>(v)), kind(Kind::kInt) {}
  AccessField(std::string_view k, int v) : key(k), num(v), kind(Kind::kInt) {}
  AccessField(std::string_view k, bool v) : key(k), num(v ? 1 : 0), kind(Kind::kBool) {}
  // A duration given in microseconds, written in seconds with six decimals
  // (0.000250); a negative one (not measured) is written -1.
  static AccessField seconds(std::string_view k, std::int64_t micros) {
    AccessField f(k, micros);
    f.kind = Kind::kSeconds;
    return f;
  }

  std::string_view key;
  std::string_view str;
  std::int64_t num = 0;
  Kind kind = Kind::kString;
};

// Appends one line, newline included: JSON {"time":...,"msg":"access",<fields>}
// or text `TIME access key=value ...` (values quoted when they hold a space, a
// quote, '=' or a control byte). "msg":"access" keeps the lines apart from the
// application log's where both streams end up together (journald, docker logs).
void formatAccessLine(std::string& out, conf::LogFormat format,
                      std::initializer_list<AccessField> fields);

class AccessLogFile {
 public:
  AccessLogFile() = default;
  ~AccessLogFile();
  AccessLogFile(const AccessLogFile&) = delete;
  AccessLogFile& operator=(const AccessLogFile&) = delete;

  // Main thread. Makes `path` ("" = stdout) the destination, opening it
  // (O_APPEND, created 0644 less the umask) unless it is already the one
  // open. On failure returns "access_log.path: cannot open ...: reason" and
  // the previous destination stays.
  std::string use(const std::string& path);
  // Main thread, SIGUSR1: opens the current path again (after logrotate
  // renamed it); stdout is left alone. Lines written before the call are in
  // the old file, whole; lines after, in the new one. On failure the old
  // descriptor stays and the error is returned.
  std::string reopen();
  // --check-config: whether `path` could be opened, without creating it.
  static std::string check(const std::string& path);

  // Any thread: writes every byte of data (whole lines), blocking until the
  // descriptor took them (poll() on EAGAIN). An I/O error other than EAGAIN
  // or EINTR drops the rest of this write, counts it and logs it (at most
  // every 10 s).
  void write(std::string_view data);

  const std::string& path() const { return path_; }  // main thread
  std::uint64_t writeErrors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  std::mutex mu_;  // held across one write(), and to swap fd_
  int fd_ = 1;     // stdout until use() says otherwise
  bool own_ = false;
  std::string path_;
  std::atomic<std::uint64_t> write_errors_{0};
  std::atomic<std::int64_t> last_error_log_ms_{0};
};

class AccessLog {
 public:
  explicit AccessLog(AccessLogFile& file) : file_(file) {}
  ~AccessLog();  // writes what is still buffered
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // On the worker's loop, once, before it runs: the flush timer.
  void start(uv_loop_t* loop, const conf::AccessLog& cfg);
  // On the loop (a reload): format, buffer size and flush interval.
  void configure(const conf::AccessLog& cfg);
  // On the loop: one line. Written at once when the buffer is full (see
  // above) or when access_log.flush is 0.
  void add(std::initializer_list<AccessField> fields);
  // On the loop: writes what is buffered.
  void flush();
  // On the loop, when the worker stops: flushes and closes the timer (the
  // loop can end). add() after close() writes each line at once.
  void close();

  std::size_t buffered() const { return buf_.size(); }

 private:
  static void onTimer(uv_timer_t* t);

  AccessLogFile& file_;
  uv_timer_t timer_;
  std::string buf_;
  std::size_t cap_ = 64 * 1024;
  conf::Millis flush_ms_ = 1'000;
  conf::LogFormat format_ = conf::LogFormat::kJson;
  bool started_ = false;
  bool closed_ = false;
};

}  // namespace tether::proxy
