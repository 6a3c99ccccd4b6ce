#include "record/spill_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

namespace flux::record {
namespace {

constexpr size_t kReadBlockBytes = 1 << 20;

std::unexpected<Error> ioError(const std::string& what, const std::filesystem::path& path) {
  return fail(ErrorCode::kUnavailable, what + " " + path.string() + ": " + std::strerror(errno));
}

// An open descriptor holding an exclusive flock; both end with the object.
class LockedFile {
 public:
  LockedFile() = default;
  explicit LockedFile(int fd) : fd_(fd) {}
  LockedFile(LockedFile&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  LockedFile& operator=(LockedFile&& other) noexcept {
    std::swap(fd_, other.fd_);
    return *this;
  }
  ~LockedFile() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the flock
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// Opens path with flags and takes the lock; retries when the file was unlinked between the
// open and the lock (another process replayed and removed it). ENOENT without O_CREAT comes
// back as an empty LockedFile.
Result<LockedFile> openLocked(const std::filesystem::path& path, int flags) {
  for (;;) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0) {
      if (errno == ENOENT && (flags & O_CREAT) == 0) return LockedFile();
      return ioError("cannot open", path);
    }
    LockedFile file(fd);
    int locked;
    do {
      locked = ::flock(fd, LOCK_EX);
    } while (locked != 0 && errno == EINTR);
    if (locked != 0) return ioError("cannot lock", path);
    struct stat info {};
    if (::fstat(fd, &info) != 0) return ioError("cannot stat", path);
    if (info.st_nlink > 0) return file;
  }
}

Result<void> syncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ioError("cannot open", dir);
  int synced = ::fsync(fd);
  ::close(fd);
  if (synced != 0) return ioError("cannot fsync", dir);
  return {};
}

}  // namespace

SpillFile::SpillFile(std::filesystem::path dir, std::string name)
    : dir_(std::move(dir)), path_(dir_ / name) {}

bool SpillFile::exists() const {
  struct stat info {};
  return ::stat(path_.c_str(), &info) == 0;
}

Result<void> SpillFile::append(std::string_view lines) {
  if (lines.empty()) return {};
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return fail(ErrorCode::kUnavailable,
                "cannot create spill directory " + dir_.string() + ": " + ec.message());
  }
  auto file = openLocked(path_, O_WRONLY | O_APPEND | O_CREAT);
  if (!file) return std::unexpected(file.error());
  int fd = file->fd();
  struct stat info {};
  if (::fstat(fd, &info) != 0) return ioError("cannot stat", path_);
  const off_t original_size = info.st_size;
  size_t written = 0;
  while (written < lines.size()) {
    ssize_t n = ::write(fd, lines.data() + written, lines.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      auto error = ioError("cannot write", path_);
      // Only whole lines: cut back what this append wrote (we still hold the lock).
      if (::ftruncate(fd, original_size) != 0) {
        error.error().message += " (and cannot cut the partial write back)";
      }
      return error;
    }
    written += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) return ioError("cannot fdatasync", path_);
  // A file new to the directory is durable only once the directory entry is.
  if (original_size == 0) return syncDirectory(dir_);
  return {};
}

Result<SpillFile::ChunkOutcome> SpillFile::replayChunk(size_t max_lines, const StoreChunk& store) {
  auto file = openLocked(path_, O_RDONLY);
  if (!file) return std::unexpected(file.error());
  if (file->fd() < 0) return ChunkOutcome{0, true};
  int fd = file->fd();
  struct stat info {};
  if (::fstat(fd, &info) != 0) return ioError("cannot stat", path_);
  if (info.st_dev != replay_device_ || info.st_ino != replay_inode_ ||
      replay_offset_ > static_cast<uint64_t>(info.st_size)) {
    replay_device_ = info.st_dev;
    replay_inode_ = info.st_ino;
    replay_offset_ = 0;
  }
  const auto size = static_cast<uint64_t>(info.st_size);

  // Read whole lines until max_lines or the end of the file.
  std::string buffer;
  std::vector<size_t> line_ends;  // offsets in buffer of each line's '\n' (or its end)
  uint64_t at = replay_offset_;
  size_t scanned = 0;
  while (line_ends.size() < max_lines && at < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(kReadBlockBytes, size - at));
    size_t old_size = buffer.size();
    buffer.resize(old_size + want);
    ssize_t n = ::pread(fd, buffer.data() + old_size, want, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) {
      buffer.resize(old_size);
      continue;
    }
    if (n <= 0) return ioError("cannot read", path_);
    buffer.resize(old_size + static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
    for (; scanned < buffer.size() && line_ends.size() < max_lines; ++scanned) {
      if (buffer[scanned] == '\n') line_ends.push_back(scanned);
    }
  }
  size_t tail = line_ends.empty() ? 0 : line_ends.back() + 1;
  if (line_ends.size() < max_lines && tail < buffer.size()) {
    // A last line without its newline: torn by a crash mid-append (appends are whole under
    // the lock we hold). It goes to store like the others, which will find it unreadable.
    line_ends.push_back(buffer.size());
  }
  std::vector<std::string_view> lines;
  lines.reserve(line_ends.size());
  size_t start = 0;
  for (size_t end : line_ends) {
    if (end > start) lines.emplace_back(buffer.data() + start, end - start);
    start = end + 1;
  }
  uint64_t consumed =
      line_ends.empty() ? 0 : std::min<uint64_t>(line_ends.back() + 1, buffer.size());
  // The chunk reached the end when every byte of the file is in it.
  bool reached_end = replay_offset_ + consumed >= size;

  if (!lines.empty()) {
    if (auto stored = store(lines); !stored) return std::unexpected(stored.error());
  }
  replay_offset_ += consumed;
  if (!reached_end) return ChunkOutcome{lines.size(), false};
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) return ioError("cannot remove", path_);
  replay_offset_ = 0;
  replay_device_ = 0;
  replay_inode_ = 0;
  return ChunkOutcome{lines.size(), true};
}

}  // namespace flux::record
