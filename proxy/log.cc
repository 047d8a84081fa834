#include "proxy/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>

namespace tether::proxy::log {
namespace {

std::atomic<int> g_level{static_cast<int>(conf::LogLevel::kInfo)};
std::atomic<conf::LogFormat> g_format{conf::LogFormat::kText};
std::shared_ptr<spdlog::logger> g_logger;

const char* levelName(conf::LogLevel l) {
  switch (l) {
    case conf::LogLevel::kTrace: return "trace";
    case conf::LogLevel::kDebug: return "debug";
    case conf::LogLevel::kInfo: return "info";
    case conf::LogLevel::kWarn: return "warn";
    case conf::LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

// The date and time to the second are formatted once per second (per
// thread: each worker logs on its own); only the milliseconds are written
// for each line.
void appendTime(std::string& out) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  thread_local time_t cached_sec = -1;
  thread_local char cached[40];  // "YYYY-MM-DDTHH:MM:SS." (a year of up to 11 digits fits)
  thread_local int cached_len = 0;
  if (tv.tv_sec != cached_sec) {
    tm t;
    gmtime_r(&tv.tv_sec, &t);
    int n = std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900,
                          t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec);
    cached_len = n < 0 ? 0 : std::min(n, static_cast<int>(sizeof cached) - 1);
    cached_sec = tv.tv_sec;
  }
  const int ms = static_cast<int>(tv.tv_usec / 1000);
  const char digits[4] = {static_cast<char>('0' + ms / 100), static_cast<char>('0' + ms / 10 % 10),
                          static_cast<char>('0' + ms % 10), 'Z'};
  out.append(cached, static_cast<std::size_t>(cached_len));
  out.append(digits, 4);
}

bool needsQuotes(std::string_view s) {
  if (s.empty()) return true;
  for (char c : s)
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}

// A field's value: numbers as they are, strings quoted (and escaped) when asked.
static void appendValue(std::string& line, const Field& f, bool quote) {
  if (f.is_num) {
    line += std::to_string(f.num);
  } else if (f.is_dbl) {
    char buf[32];
    int n = std::snprintf(buf, sizeof buf, "%.6f", f.dbl);
    line.append(buf, static_cast<std::size_t>(n));
  } else if (quote) {
    line += '"';
    appendJsonEscaped(line, f.str);
    line += '"';
  } else {
    line += f.str;
  }
}

// Runs of bytes that need no escape are appended whole.
void appendJsonEscaped(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::size_t plain = 0;  // start of the run not yet appended
  for (std::size_t i = 0; i < s.size(); ++i) {
    const unsigned char u = static_cast<unsigned char>(s[i]);
    if (u >= 0x20 && u != '"' && u != '\\' && u != 0x7f) continue;
    out.append(s.data() + plain, i - plain);
    plain = i + 1;
    switch (u) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[u >> 4], kHex[u & 15]};
        out.append(esc, 6);
      }
    }
  }
  out.append(s.data() + plain, s.size() - plain);
}

void init(conf::LogLevel level, conf::LogFormat format) {
  g_level = static_cast<int>(level);
  g_format = format;
  if (!g_logger) {
    g_logger = spdlog::stderr_logger_mt("tether");
    g_logger->set_pattern("%v");
    g_logger->set_level(spdlog::level::trace);
    g_logger->flush_on(spdlog::level::trace);
  }
}

void setLevel(conf::LogLevel level) { g_level = static_cast<int>(level); }
conf::LogLevel level() { return static_cast<conf::LogLevel>(g_level.load(std::memory_order_relaxed)); }
bool enabled(conf::LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }
conf::LogFormat format() { return g_format.load(std::memory_order_relaxed); }

void write(conf::LogLevel level, std::string_view msg, std::initializer_list<Field> fields) {
  thread_local std::string line;
  line.clear();
  if (format() == conf::LogFormat::kJson) {
    line += "{\"time\":\"";
    appendTime(line);
    line += "\",\"level\":\"";
    line += levelName(level);
    line += "\",\"msg\":\"";
    appendJsonEscaped(line, msg);
    line += '"';
    for (const Field& f : fields) {
      line += ",\"";
      appendJsonEscaped(line, f.key);
      line += "\":";
      appendValue(line, f, true);
    }
    line += '}';
  } else {
    appendTime(line);
    line += ' ';
    line += levelName(level);
    line += ' ';
    line += msg;
    for (const Field& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      appendValue(line, f, needsQuotes(f.str));
    }
  }
  if (g_logger) {
    g_logger->log(spdlog::level::info, std::string_view(line));
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

}  // namespace tether::proxy::log
