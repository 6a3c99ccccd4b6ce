#include "app/file_watcher.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace flux::app {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kEventMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_DELETE | IN_DELETE_SELF;
constexpr std::chrono::milliseconds kQuietPeriod{100};

// Watch descriptor -> its directory relative to the watched root ("" for the root itself).
using WatchMap = std::unordered_map<int, fs::path>;

// Watches `relative` under root and every directory below it. Only a failure on `relative`
// itself is an error: a subdirectory can vanish while we walk, and the parent's events still
// report changes inside it.
Result<void> watchTree(int inotify_fd, const fs::path& root, const fs::path& relative,
                       WatchMap& watches) {
  fs::path top = root / relative;
  int wd = inotify_add_watch(inotify_fd, top.c_str(), kEventMask | IN_ONLYDIR);
  if (wd < 0) {
    int error = errno;
    std::string message = "cannot watch " + top.string() + ": " + strerror(error);
    if (error == ENOSPC) {
      message += " (raise the limit: sysctl fs.inotify.max_user_watches=524288)";
    }
    return fail(error == ENOENT ? ErrorCode::kNotFound : ErrorCode::kUnavailable, message);
  }
  // A directory moved within the tree keeps its descriptor: the assignment updates its path.
  watches[wd] = relative;
  std::error_code ec;
  fs::recursive_directory_iterator it(top, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (!it->is_directory(type_ec) || it->is_symlink(type_ec)) continue;
    int sub_wd =
        inotify_add_watch(inotify_fd, it->path().c_str(), kEventMask | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (sub_wd >= 0) watches[sub_wd] = it->path().lexically_relative(root);
  }
  return {};
}

}  // namespace

Result<std::unique_ptr<FileWatcher>> FileWatcher::start(std::filesystem::path functions_dir,
                                                        OnChange on_change) {
  std::error_code ec;
  fs::path dir = fs::absolute(functions_dir, ec).lexically_normal();
  if (ec || !fs::is_directory(dir, ec)) {
    return fail(ErrorCode::kNotFound,
                "cannot watch " + functions_dir.string() + ": not a directory");
  }
  std::unique_ptr<FileWatcher> watcher(new FileWatcher());
  watcher->dir_ = std::move(dir);
  watcher->on_change_ = std::move(on_change);
  watcher->inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (watcher->inotify_fd_ < 0) {
    std::string message = std::string("inotify_init1: ") + strerror(errno);
    if (errno == EMFILE) {
      message += " (raise the limit: sysctl fs.inotify.max_user_instances=1024)";
    }
    return fail(ErrorCode::kUnavailable, message);
  }
  watcher->stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (watcher->stop_fd_ < 0) {
    return fail(ErrorCode::kInternal, std::string("eventfd: ") + strerror(errno));
  }
  // Watch the whole tree now, so that changes made as soon as start() returns are queued.
  // run() walks it again to learn the descriptors: adding an existing watch returns the same
  // descriptor, and nothing is lost in between.
  WatchMap initial;
  if (auto watched = watchTree(watcher->inotify_fd_, watcher->dir_, {}, initial); !watched) {
    return std::unexpected(std::move(watched.error()));
  }
  watcher->thread_ = std::thread([self = watcher.get()] { self->run(); });
  return watcher;
}

FileWatcher::~FileWatcher() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    // An eventfd write of 1 cannot fail short of overflow; the thread wakes on any count.
    (void)!write(stop_fd_, &one, sizeof one);
    thread_.join();
  }
  if (inotify_fd_ >= 0) close(inotify_fd_);
  if (stop_fd_ >= 0) close(stop_fd_);
}

void FileWatcher::run() {
  WatchMap watches;
  (void)watchTree(inotify_fd_, dir_, {}, watches);

  std::set<std::string> pending;
  Clock::time_point last_event;
  auto note = [&pending, &last_event](std::string folder) {
    if (folder.empty()) return;
    pending.insert(std::move(folder));
    last_event = Clock::now();
  };
  // After an overflow we no longer know what changed: report every folder.
  auto noteEverything = [this, &note, &watches]() {
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::error_code type_ec;
      if (it->is_directory(type_ec)) note(it->path().filename().string());
    }
    (void)watchTree(inotify_fd_, dir_, {}, watches);
  };

  alignas(inotify_event) char buffer[16 * 1024];
  for (;;) {
    int timeout_ms = -1;
    if (!pending.empty()) {
      auto remaining =
          std::chrono::ceil<std::chrono::milliseconds>(last_event + kQuietPeriod - Clock::now());
      timeout_ms = static_cast<int>(std::max<int64_t>(0, remaining.count()));
    }
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {inotify_fd_, POLLIN, 0}};
    int ready = poll(fds, 2, timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    if ((fds[1].revents & (POLLERR | POLLNVAL)) != 0) return;
    if ((fds[1].revents & POLLIN) != 0) {
      for (;;) {
        ssize_t length = read(inotify_fd_, buffer, sizeof buffer);
        if (length < 0 && errno == EINTR) continue;
        if (length <= 0) break;  // EAGAIN: drained
        for (ssize_t offset = 0; offset < length;) {
          const auto* event = reinterpret_cast<const inotify_event*>(buffer + offset);
          offset += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
          if ((event->mask & IN_Q_OVERFLOW) != 0) {
            noteEverything();
            continue;
          }
          auto watch = watches.find(event->wd);
          if (watch == watches.end()) continue;
          if ((event->mask & IN_IGNORED) != 0) {
            watches.erase(watch);
            continue;
          }
          // Files beside the function folders (a shared helpers.ts) count too: functions may
          // import them. The path component reported is then the file's own name.
          fs::path relative = watch->second;
          if (event->len > 0) relative /= event->name;
          if (relative.empty()) continue;  // the root itself went away
          note(relative.begin()->string());
          if ((event->mask & IN_ISDIR) != 0 && (event->mask & (IN_CREATE | IN_MOVED_TO)) != 0) {
            (void)watchTree(inotify_fd_, dir_, relative, watches);
          }
        }
      }
    }
    if (!pending.empty() && Clock::now() >= last_event + kQuietPeriod) {
      on_change_(std::exchange(pending, {}));
    }
  }
}

}  // namespace flux::app
