// proxy/access_log: the line format, the per-worker buffer and the shared file.
#include "proxy/access_log.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace tether::proxy {
namespace {

std::string line(conf::LogFormat format, std::initializer_list<AccessField> fields) {
  std::string out;
  formatAccessLine(out, format, fields);
  return out;
}

std::string readAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::size_t countLines(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// A directory under /tmp, removed (with the files the test names) at the end.
class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/tether_access_XXXXXX";
    path_ = ::mkdtemp(name);
  }
  ~TempDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    ::rmdir(path_.c_str());
  }
  std::string file(const std::string& name) {
    files_.push_back(path_ + "/" + name);
    return files_.back();
  }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

conf::AccessLog config(conf::Millis flush, conf::Bytes buffer) {
  conf::AccessLog c;
  c.flush = flush;
  c.buffer = buffer;
  return c;
}

TEST(AccessLine, JsonIsOneTypedObjectPerLine) {
  std::string s = line(conf::LogFormat::kJson, {{"path", "/a\"b\\c\n"},
                                                {"status", 200},
                                                {"bytes_out", std::uint64_t{12345678901}},
                                                AccessField::seconds("duration", 1'234'567),
                                                AccessField::seconds("ttfb", -1),
                                                AccessField::seconds("upstream_connect", 250),
                                                {"upstream_reused", true},
                                                {"tls", "-"}});
  ASSERT_EQ(s.back(), '\n');
  EXPECT_EQ(countLines(s), 1u);
  nlohmann::json j = nlohmann::json::parse(s);
  EXPECT_TRUE(j["time"].is_string());
  EXPECT_EQ(j["msg"], "access");
  EXPECT_EQ(j["path"], "/a\"b\\c\n");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["bytes_out"], 12345678901u);
  EXPECT_TRUE(j["duration"].is_number_float());
  EXPECT_DOUBLE_EQ(j["duration"].get<double>(), 1.234567);
  EXPECT_EQ(j["ttfb"], -1);
  EXPECT_TRUE(j["upstream_reused"].is_boolean());
  EXPECT_EQ(j["upstream_reused"], true);
  EXPECT_NE(s.find("\"duration\":1.234567,"), std::string::npos) << s;
  EXPECT_NE(s.find("\"upstream_connect\":0.000250,"), std::string::npos) << s;
}

// Every byte below 0x20, 0x7f, '"' and '\\' escaped, wherever it stands in
// a run of plain bytes; the rest (UTF-8 included) as it is.
TEST(AccessLine, JsonEscapesEveryControlByteAndKeepsTheRest) {
  std::string raw;
  for (int c = 0; c < 0x80; ++c) raw += std::string("ab") + static_cast<char>(c);
  raw += "\xc3\xa9";
  std::string s = line(conf::LogFormat::kJson, {{"path", raw}, AccessField::seconds("duration", 12'000'000'000)});
  nlohmann::json j = nlohmann::json::parse(s, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << s;
  EXPECT_EQ(j["path"].get<std::string>(), raw);
  EXPECT_NE(s.find("ab\\u001fab ab!ab\\\"ab#"), std::string::npos) << s;
  EXPECT_NE(s.find("ab\\u007f"), std::string::npos) << s;
  EXPECT_NE(s.find("\"duration\":12000.000000"), std::string::npos) << s;
  // The time: YYYY-MM-DDTHH:MM:SS.mmmZ.
  std::string t = j["time"].get<std::string>();
  ASSERT_EQ(t.size(), 24u) << t;
  EXPECT_EQ(t[4], '-');
  EXPECT_EQ(t[10], 'T');
  EXPECT_EQ(t[19], '.');
  EXPECT_EQ(t[23], 'Z');
}

TEST(AccessLine, TextQuotesOnlyWhatNeedsIt) {
  std::string s = line(conf::LogFormat::kText, {{"method", "GET"},
                                                {"path", "/a b"},
                                                {"client", ""},
                                                {"status", 404},
                                                {"upstream_reused", false},
                                                AccessField::seconds("duration", 5)});
  EXPECT_NE(s.find(" access method=GET path=\"/a b\" client=\"\" status=404 "
                   "upstream_reused=false duration=0.000005\n"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.find("level"), std::string::npos) << s;  // the access log has no level
}

TEST(AccessLog, BuffersUntilFullThenWritesWholeLines) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  AccessLogFile file;
  ASSERT_EQ(file.use(path), "");
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    AccessLog log(file);
    log.start(&loop, config(3'600'000, 1024));
    std::size_t written_at = 0;
    for (int i = 0; i < 100 && written_at == 0; ++i) {
      log.add({{"request_id", "r"}, {"i", i}, {"pad", std::string(100, 'x')}});
      if (!readAll(path).empty()) written_at = static_cast<std::size_t>(i) + 1;
    }
    // Nothing reached the file until the buffer held 1 KiB; then all of it.
    std::string first = readAll(path);
    ASSERT_GT(written_at, 1u);
    EXPECT_GE(first.size(), 1024u);
    EXPECT_EQ(countLines(first), written_at);
    EXPECT_EQ(first.back(), '\n');
    EXPECT_EQ(log.buffered(), 0u);
    log.add({{"request_id", "last"}});
    EXPECT_GT(log.buffered(), 0u);
    log.close();  // the worker stops: the rest is written
    EXPECT_EQ(log.buffered(), 0u);
    EXPECT_EQ(countLines(readAll(path)), written_at + 1);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(AccessLog, TheTimerFlushesWithoutMoreLines) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  AccessLogFile file;
  ASSERT_EQ(file.use(path), "");
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    AccessLog log(file);
    log.start(&loop, config(20, 64 * 1024));
    log.add({{"request_id", "timed"}});
    EXPECT_EQ(readAll(path), "");
    auto t0 = std::chrono::steady_clock::now();
    while (readAll(path).empty() &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    EXPECT_EQ(countLines(readAll(path)), 1u);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
    log.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(AccessLog, FlushZeroWritesEachLineAtOnce) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  AccessLogFile file;
  ASSERT_EQ(file.use(path), "");
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    AccessLog log(file);
    log.start(&loop, config(0, 64 * 1024));
    log.add({{"request_id", "a"}});
    EXPECT_EQ(countLines(readAll(path)), 1u);
    // A reload back to buffering starts the timer.
    log.configure(config(1'000, 64 * 1024));
    log.add({{"request_id", "b"}});
    EXPECT_EQ(countLines(readAll(path)), 1u);
    log.close();
    EXPECT_EQ(countLines(readAll(path)), 2u);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// The backpressure rule: a destination that takes bytes slowly makes add()
// wait; every line arrives, whole and in order.
TEST(AccessLog, AFullPipeBlocksAndLosesNothing) {
  TempDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(reader, 0);
  ::fcntl(reader, F_SETPIPE_SZ, 4096);  // full after some hundred lines
  AccessLogFile file;
  ASSERT_EQ(file.use(fifo), "");

  constexpr int kLines = 2000;
  std::string got;
  std::thread slow([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    char buf[512];
    while (countLines(got) < kLines && std::chrono::steady_clock::now() < deadline) {
      ssize_t n = ::read(reader, buf, sizeof buf);
      if (n > 0) {
        got.append(buf, static_cast<std::size_t>(n));
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  });
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    AccessLog log(file);
    log.start(&loop, config(3'600'000, 1024));
    for (int i = 0; i < kLines; ++i) log.add({{"i", i}, {"pad", "0123456789abcdef0123456789"}});
    log.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  EXPECT_EQ(uv_loop_close(&loop), 0);
  slow.join();
  ::close(reader);
  std::istringstream in(got);
  std::string l;
  int expect = 0;
  while (std::getline(in, l)) {
    nlohmann::json j = nlohmann::json::parse(l);
    ASSERT_EQ(j["i"], expect) << l;
    ++expect;
  }
  EXPECT_EQ(expect, kLines);
  EXPECT_EQ(file.writeErrors(), 0u);
}

TEST(AccessLogFile, ReopenAfterARenameStartsANewFile) {
  TempDir dir;
  const std::string path = dir.file("access.log");
  const std::string rotated = dir.file("access.log.1");
  AccessLogFile file;
  ASSERT_EQ(file.use(path), "");
  file.write("one\n");
  ASSERT_EQ(::rename(path.c_str(), rotated.c_str()), 0);
  file.write("two\n");  // still the old descriptor: the renamed file
  ASSERT_EQ(file.reopen(), "");
  file.write("three\n");
  EXPECT_EQ(readAll(rotated), "one\ntwo\n");
  EXPECT_EQ(readAll(path), "three\n");
  // The same path again is no reopen; another one is.
  EXPECT_EQ(file.use(path), "");
  EXPECT_EQ(file.path(), path);
}

TEST(AccessLogFile, ErrorsNameThePathAndTheReason) {
  AccessLogFile file;
  EXPECT_EQ(file.use("/nonexistent-dir/access.log"),
            "access_log.path: cannot open \"/nonexistent-dir/access.log\": No "
            "such file or directory");
  EXPECT_EQ(file.path(), "");  // still stdout
  EXPECT_EQ(AccessLogFile::check("/nonexistent-dir/access.log"),
            "access_log.path: cannot open \"/nonexistent-dir/access.log\": No "
            "such file or directory");
  EXPECT_EQ(AccessLogFile::check("/tmp"), "access_log.path: cannot open \"/tmp\": Is a directory");
  TempDir dir;
  const std::string path = dir.file("not-created.log");
  EXPECT_EQ(AccessLogFile::check(path), "");
  EXPECT_NE(::access(path.c_str(), F_OK), 0);  // --check-config creates nothing
  EXPECT_EQ(AccessLogFile::check(""), "");     // stdout
}

}  // namespace
}  // namespace tether::proxy
