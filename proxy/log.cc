#include "proxy/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/time.h>

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

void appendTime(std::string& out) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char buf[40];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
                        t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                        static_cast<int>(tv.tv_usec / 1000));
  out.append(buf, static_cast<std::size_t>(n));
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

void appendJsonEscaped(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20 || u == 0x7f) {
          out += "\\u00";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
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
