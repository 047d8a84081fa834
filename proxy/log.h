// Logging: one line per event, text or JSON, through spdlog.
//
// Every line is an event name plus key/value fields, so that the same call
// reads well as text ("listening kind=proxy address=127.0.0.1:8000") and as
// JSON ({"time":...,"level":"info","msg":"listening","kind":"proxy",...}).
// Thread-safe; may be called from any loop. init() runs once in main before
// any other thread starts.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "conf/config.h"

namespace tether::proxy::log {

struct Field {
  Field(std::string_view k, std::string_view v) : key(k), str(v) {}
  Field(std::string_view k, const char* v) : key(k), str(v) {}
  Field(std::string_view k, const std::string& v) : key(k), str(v) {}
  Field(std::string_view k, std::int64_t v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, std::uint64_t v) : key(k), num(static_cast<std::int64_t>(v)), is_num(true) {}
  Field(std::string_view k, int v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, unsigned v) : key(k), num(v), is_num(true) {}
  Field(std::string_view k, double v) : key(k), dbl(v), is_dbl(true) {}
  std::string_view key;
  std::string_view str;
  std::int64_t num = 0;
  double dbl = 0;
  bool is_num = false;
  bool is_dbl = false;
};

void init(conf::LogLevel level, conf::LogFormat format);
void setLevel(conf::LogLevel level);
conf::LogLevel level();
bool enabled(conf::LogLevel level);
conf::LogFormat format();

void write(conf::LogLevel level, std::string_view msg, std::initializer_list<Field> fields);

inline void trace(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(conf::LogLevel::kTrace)) write(conf::LogLevel::kTrace, m, f); }
inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(conf::LogLevel::kDebug)) write(conf::LogLevel::kDebug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(conf::LogLevel::kInfo)) write(conf::LogLevel::kInfo, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(conf::LogLevel::kWarn)) write(conf::LogLevel::kWarn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { if (enabled(conf::LogLevel::kError)) write(conf::LogLevel::kError, m, f); }

// Appends s to out as the body of a JSON string (no quotes).
void appendJsonEscaped(std::string& out, std::string_view s);
// Appends the wall-clock time as 2024-05-01T12:00:00.123Z (UTC).
void appendTime(std::string& out);
// Whether a text-format value needs quotes (empty, or holds ' ', '"', '=' or a control byte).
bool needsQuotes(std::string_view s);

}  // namespace tether::proxy::log
