// LogSink: lines from any thread, written to a FILE by one writer thread. Worker loops call
// write() (a short mutex-guarded push) and never block on the terminal or a pipe. The writer
// drains every kFlushInterval (or sooner when many lines wait), so a line shows within ~10 ms.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

namespace flux {

class LogSink {
 public:
  explicit LogSink(FILE* out);
  ~LogSink();  // drains what is queued, then joins the writer
  LogSink(const LogSink&) = delete;
  LogSink& operator=(const LogSink&) = delete;

  // Queues one line (a newline is added). Thread-safe.
  void write(std::string line);

 private:
  void run();

  static constexpr std::chrono::milliseconds kFlushInterval{10};
  static constexpr size_t kWakeAtLines = 512;

  FILE* out_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::string> lines_;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace flux
