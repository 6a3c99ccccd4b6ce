#include "base/log.h"

namespace flux {

LogSink::LogSink(FILE* out) : out_(out), writer_([this] { run(); }) {}

LogSink::~LogSink() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_one();
  writer_.join();
}

void LogSink::write(std::string line) {
  bool wake;
  {
    std::lock_guard lock(mutex_);
    lines_.push_back(std::move(line));
    wake = lines_.size() >= kWakeAtLines;
  }
  // Under load the writer wakes on its own every kFlushInterval: no futex wake per line.
  if (wake) ready_.notify_one();
}

void LogSink::run() {
  std::deque<std::string> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      ready_.wait_for(lock, kFlushInterval,
                      [this] { return stopping_ || lines_.size() >= kWakeAtLines; });
      if (lines_.empty()) {
        if (stopping_) return;
        continue;
      }
      batch.swap(lines_);
    }
    for (const std::string& line : batch) {
      fwrite(line.data(), 1, line.size(), out_);
      fputc('\n', out_);
    }
    // Flushed per batch so that `flux dev | grep` sees lines as they happen.
    fflush(out_);
    batch.clear();
  }
}

}  // namespace flux
