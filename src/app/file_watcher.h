// FileWatcher: inotify on <root>/functions/, recursively. Reports which function folders
// changed, debounced, on its own thread. Used by `flux dev` for hot reload.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include "base/error.h"

namespace flux::app {

class FileWatcher {
 public:
  // Called on the watcher's thread with the names of the entries directly under functions/
  // (function folders, shared folders or files) in which something was created, modified,
  // moved or deleted, after ~100 ms without further changes.
  using OnChange = std::function<void(std::set<std::string> folders)>;

  static Result<std::unique_ptr<FileWatcher>> start(std::filesystem::path functions_dir,
                                                    OnChange on_change);
  ~FileWatcher();  // stops and joins the thread

 private:
  FileWatcher() = default;
  void run();

  std::filesystem::path dir_;
  OnChange on_change_;
  int inotify_fd_ = -1;
  int stop_fd_ = -1;  // eventfd that wakes the thread to stop
  std::thread thread_;
};

}  // namespace flux::app
