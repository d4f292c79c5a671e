// Output files written so that nothing is lost and nothing is left behind:
// every file goes to a uniquely named temporary beside its target and is then
// renamed over it. Temporaries carry a recognisable name,
// "<target>.marbm-tmp-<pid>-<n>[suffix]", so that a later run can remove the
// ones a killed process left (remove_stale_temporaries). Also: byte quoting
// for messages and an exclusive lock on an output folder.
#pragma once

#include <string>
#include <string_view>

namespace marbm::detail {

/// `text` with every byte that is not printable (control characters, DEL, NUL,
/// bytes of invalid UTF-8) written as \xNN and a backslash as \\, so that a
/// message quoting file contents is one readable line.
std::string printable(std::string_view text);

/// A fresh temporary name beside `target`: unique within the process and
/// across processes, with `suffix` appended (".png", say).
std::string temporary_name(const std::string& target, std::string_view suffix = {});

/// Removes, in `folder`, the temporaries (see temporary_name) of processes
/// that no longer run. Never throws; returns how many it removed.
int remove_stale_temporaries(const std::string& folder) noexcept;

/// The file a write to `path` must replace: `path` itself, or the end of its
/// symlink chain, so that a symlinked output keeps its link. Throws DataError
/// when `path` exists but is read-only (it is not replaced), or names no
/// regular file.
std::string replacement_target(const std::string& path, const char* what);

/// Writes `contents` to `path` atomically (temporary, then rename), through a
/// symlink and refusing read-only files (replacement_target). On any failure
/// the temporary is removed and DataError names `path` and `what`.
void write_file_atomically(const std::string& path, std::string_view contents, const char* what);

/// An exclusive advisory lock on an output folder, held until destruction;
/// throws RuntimeFailure naming the folder when another process holds it.
class FolderLock {
 public:
  FolderLock(const std::string& folder, const char* what);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace marbm::detail
