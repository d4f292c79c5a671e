// Atomic output files, stale temporaries, printable quoting and folder locks
// (detail/files.hpp).
#include "detail/files.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "marbm/error.hpp"

namespace marbm::detail {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view temporary_marker = ".marbm-tmp-";

// Length of the valid UTF-8 sequence starting at text[k], or 0.
std::size_t utf8_length(std::string_view text, std::size_t k) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(k);
  std::size_t length = 0;
  unsigned min = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2, min = 0x80;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3, min = 0x800;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (k + length > text.size()) return 0;
  unsigned code = lead & (0xff >> (length + 1));
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(k + i) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(k + i) & 0x3f);
  }
  if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

bool process_is_running(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
  return errno == EPERM;  // it runs, as another user
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t k = 0; k < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[k]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++k;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t length = utf8_length(text, k)) {
        out.append(text.substr(k, length));
        k += length;
        continue;
      }
    }
    char escaped[5];
    std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
    out += escaped;
    ++k;
  }
  return out;
}

std::string temporary_name(const std::string& target, std::string_view suffix) {
  static std::atomic<unsigned long> counter{0};
  return target + std::string(temporary_marker) + std::to_string(::getpid()) + "-" + std::to_string(counter++) +
         std::string(suffix);
}

int remove_stale_temporaries(const std::string& folder) noexcept {
  int removed = 0;
  try {
    std::error_code error;
    for (fs::directory_iterator it(folder.empty() ? "." : folder, error), last; !error && it != last;
         it.increment(error)) {
      const std::string name = it->path().filename().string();
      const std::size_t at = name.rfind(temporary_marker);
      if (at == std::string::npos || at == 0) continue;
      // <target>.marbm-tmp-<pid>-<n>[suffix]
      const char* digits = name.c_str() + at + temporary_marker.size();
      char* end = nullptr;
      const long pid = std::strtol(digits, &end, 10);
      if (end == digits || *end != '-' || !(end[1] >= '0' && end[1] <= '9')) continue;
      if (process_is_running(pid)) continue;
      std::error_code ignored;
      if (it->is_regular_file(ignored) && fs::remove(it->path(), ignored)) ++removed;
    }
  } catch (...) {
  }
  return removed;
}

std::string replacement_target(const std::string& path, const char* what) {
  std::error_code error;
  fs::path target(path);
  // Follow a symlink chain (a bounded number of links, as the kernel does).
  for (int links = 0; fs::is_symlink(target, error); ++links) {
    MARBM_EXPECTS(links < 40, DataError, path + ": too many levels of symbolic links");
    fs::path next = fs::read_symlink(target, error);
    MARBM_EXPECTS(!error, DataError, path + ": cannot read the symbolic link (" + error.message() + ")");
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  const fs::file_status status = fs::status(target, error);
  if (fs::exists(status)) {
    MARBM_EXPECTS(fs::is_regular_file(status), DataError,
                  path + ": exists and is not a regular file; the " + std::string(what) + " is not written");
    // Read-only: no write permission for this process, or none for anyone
    // (which even root respects here).
    struct stat info {};
    const bool no_write_bits = ::stat(target.c_str(), &info) == 0 && (info.st_mode & 0222) == 0;
    MARBM_EXPECTS(::access(target.c_str(), W_OK) == 0 && !no_write_bits, DataError,
                  path + ": the existing file is read-only; the " + std::string(what) + " is not written");
  }
  return target.string();
}

void write_file_atomically(const std::string& path, std::string_view contents, const char* what) {
  const std::string target = replacement_target(path, what);
  const fs::path folder = fs::path(target).parent_path();
  remove_stale_temporaries(folder.string());
  const std::string temporary = temporary_name(target);
  auto give_up = [&](const std::string& message) {
    std::error_code ignored;
    fs::remove(temporary, ignored);
    throw DataError(message);
  };
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  MARBM_EXPECTS(fd >= 0, DataError,
                path + ": cannot write the " + std::string(what) + " (" + std::strerror(errno) + ")");
  std::size_t written = 0;
  while (written < contents.size()) {
    const ssize_t got = ::write(fd, contents.data() + written, contents.size() - written);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      give_up(path + ": writing the " + std::string(what) + " failed (" + reason + ")");
    }
    written += static_cast<std::size_t>(got);
  }
  if (::close(fd) != 0) give_up(path + ": writing the " + std::string(what) + " failed (" + std::strerror(errno) + ")");
  // Keep the mode an existing file had (umask permitting new ones).
  struct stat existing {};
  if (::stat(target.c_str(), &existing) == 0) ::chmod(temporary.c_str(), existing.st_mode & 07777);
  std::error_code error;
  fs::rename(temporary, target, error);
  if (error) give_up(path + ": cannot move the " + std::string(what) + " into place (" + error.message() + ")");
}

FolderLock::FolderLock(const std::string& folder, const char* what) {
  const std::string lock_path = (fs::path(folder.empty() ? "." : folder) / ".marbm.lock").string();
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  MARBM_EXPECTS(fd_ >= 0, RuntimeFailure,
                folder + ": cannot create the lock file " + lock_path + " (" + std::strerror(errno) + ")");
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int code = errno;
    ::close(fd_);
    fd_ = -1;
    if (code == EWOULDBLOCK) {
      throw RuntimeFailure(folder + ": another " + std::string(what) +
                           " is writing to this folder; wait for it or choose another folder");
    }
    throw RuntimeFailure(folder + ": cannot lock the folder (" + std::strerror(code) + ")");
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace marbm::detail
