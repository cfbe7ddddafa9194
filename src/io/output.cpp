// The output directory protocol (see hiq/io/output.h).
#include "hiq/io/output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "hiq/base/error.h"      // IoError
#include "hiq/base/interrupt.h"  // SetInterruptOutput
#include "hiq/base/log.h"        // Log
#include "hiq/base/watchdog.h"   // SetProgressDir
#include "hiq/dist/mpi.h"        // Comm

namespace hiq {
namespace {

namespace fs = std::filesystem;

constexpr const char* kLockName = ".hiq.lock";
constexpr const char* kStagingPrefix = ".staging-";

// OUT/.staging-<pid>.progress: the ranks' progress counts for the stall watchdog
// (hiq/base/watchdog.h); beside the staging directory, whose files are all published. Its name
// starts like a staging directory's, so an interrupted run's is removed with it.
fs::path ProgressDirOf(const fs::path& staging) { return staging.string() + ".progress"; }

std::string ErrnoText(int err) { return std::strerror(err); }

std::string Quote(const fs::path& p) { return "'" + p.string() + "'"; }

std::string ThisHost() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0) return "unknown-host";
  return name;
}

// Whether `pid` names a live process on this host (EPERM: it lives, under another user).
bool ProcessAlive(long pid) {
  if (pid <= 0) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

std::string ReadSmallFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Takes OUT/.hiq.lock for this process; throws IoError naming the holder when it is taken.
void TakeLock(const fs::path& dir, std::FILE* log) {
  const fs::path lock = dir / kLockName;
  const LockHolder me{ThisHost(), static_cast<long>(::getpid())};
  // The lock appears complete or not at all: written under a private name, then linked (link
  // fails with EEXIST when the lock exists, atomically, as O_EXCL does).
  const fs::path mine = dir / (std::string(kLockName) + "." + std::to_string(me.pid));
  WriteWholeFile(mine, LockText(me), "output directory " + Quote(dir) + " is not writable");
  struct Unlink {
    const fs::path& path;
    ~Unlink() { ::unlink(path.c_str()); }
  } unlink_mine{mine};
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (::link(mine.c_str(), lock.c_str()) == 0) return;
    const int err = errno;
    if (err != EEXIST) {
      throw IoError("cannot create the lock file " + Quote(lock) + ": " + ErrnoText(err));
    }
    const std::string text = ReadSmallFile(lock);
    LockHolder holder;
    if (!ParseLockText(text, &holder)) {
      throw IoError("output directory " + Quote(dir) + " is locked by " + Quote(lock) +
                    ", which does not hold 'host=H pid=P'; remove it if no hiq run uses " +
                    Quote(dir));
    }
    const std::string who = "pid " + std::to_string(holder.pid) + " on host " + holder.host;
    if (holder.host != me.host) {
      throw IoError("output directory " + Quote(dir) + " is locked by " + who +
                    ", another host, which this one cannot check (lock file " + Quote(lock) +
                    "); if that job is dead, remove the lock file");
    }
    if (ProcessAlive(holder.pid)) {
      throw IoError("output directory " + Quote(dir) + " is in use by " + who + " (lock file " +
                    Quote(lock) + "); wait for that run or choose another output directory");
    }
    Log(log, "hiq: taking over the stale lock %s of %s (no such process)\n", lock.c_str(),
        who.c_str());
    if (::unlink(lock.c_str()) != 0 && errno != ENOENT) {
      throw IoError("cannot remove the stale lock file " + Quote(lock) + ": " + ErrnoText(errno));
    }
  }
  throw IoError("output directory " + Quote(dir) + ": another run took the lock " + Quote(lock) +
                " while this one replaced a stale one");
}

// Rank 0's part of Open: the checks, the lock, the staging directory. Returns the staging path.
fs::path OpenOnRankZero(const fs::path& dir, std::FILE* log) {
  std::error_code ec;
  const fs::file_status status = fs::status(dir, ec);
  if (fs::exists(status) && !fs::is_directory(status)) {
    throw IoError("output " + Quote(dir) + " exists and is not a directory");
  }
  fs::create_directories(dir, ec);
  if (ec) throw IoError("cannot create output directory " + Quote(dir) + ": " + ec.message());
  TakeLock(dir, log);
  const fs::path lock = dir / kLockName;
  try {
    // With the lock held no other run lives here: every staging directory is a dead run's.
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      if (e.path().filename().string().rfind(kStagingPrefix, 0) == 0) {
        Log(log, "hiq: removing %s, left by an interrupted run\n", e.path().c_str());
        fs::remove_all(e.path());
      }
    }
    const fs::path staging = dir / (kStagingPrefix + std::to_string(::getpid()));
    fs::create_directory(staging, ec);
    if (ec) throw IoError("cannot create " + Quote(staging) + ": " + ec.message());
    fs::create_directory(ProgressDirOf(staging), ec);
    if (ec) throw IoError("cannot create " + Quote(ProgressDirOf(staging)) + ": " + ec.message());
    return staging;
  } catch (const fs::filesystem_error& e) {
    ::unlink(lock.c_str());
    throw IoError("output directory " + Quote(dir) + ": " + e.what());
  } catch (...) {
    ::unlink(lock.c_str());
    throw;
  }
}

// The regular files under `root`, relative to it, sorted. Temporary names of a writer that
// did not finish (".tmp") are never published.
std::vector<std::string> FilesUnder(const fs::path& root) {
  std::vector<std::string> files;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), root).generic_string();
    if (rel.find(".tmp") != std::string::npos) continue;
    files.push_back(rel);
  }
  std::sort(files.begin(), files.end());
  return files;
}

void RemoveIfThere(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) throw IoError("cannot remove " + Quote(path) + ": " + ec.message());
}

void Rename(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec) throw IoError("cannot create " + Quote(to.parent_path()) + ": " + ec.message());
  fs::rename(from, to, ec);
  if (ec) throw IoError("cannot rename " + Quote(from) + " to " + Quote(to) + ": " + ec.message());
}

void CommitOnRankZero(const fs::path& dir, const fs::path& staging,
                      const std::vector<std::string>& markers, ManagedFiles managed) {
  const std::vector<std::string> staged = FilesUnder(staging);
  const std::set<std::string> staged_set(staged.begin(), staged.end());
  // Every marker of this kind that is there goes first, also one this run does not write (a
  // plan re-run removes the model.h5 of an earlier quantize run, whose plan it replaces).
  std::set<std::string> all_markers;
  for (const std::string& f : managed(dir)) {
    for (const auto* kind : {&kQuantizeMarkers, &kExportMarkers}) {
      if (std::find(kind->begin(), kind->end(), f) != kind->end()) all_markers.insert(f);
    }
  }
  for (const std::string& m : markers) {
    if (!staged_set.contains(m)) {
      throw IoError("output directory " + Quote(dir) + ": the staged output " + Quote(staging) +
                    " lacks its completion marker " + m);
    }
    all_markers.insert(m);
  }
  // 1. No marker: from here until step 4 a reader sees an incomplete directory, never a mix.
  for (const std::string& m : all_markers) RemoveIfThere(dir / m);
  // 2. The new files.
  for (const std::string& f : staged) {
    if (std::find(markers.begin(), markers.end(), f) == markers.end()) {
      Rename(staging / f, dir / f);
    }
  }
  // 3. What the previous run wrote and this one does not have.
  for (const std::string& f : managed(dir)) {
    if (!staged_set.contains(f)) RemoveIfThere(dir / f);
  }
  for (const char* sub : {"shards", "fixed"}) {  // emptied by step 3
    std::error_code ec;
    if (fs::is_directory(dir / sub, ec) && fs::is_empty(dir / sub, ec)) fs::remove(dir / sub, ec);
  }
  // 4. The markers, the command's own last.
  for (const std::string& m : markers) Rename(staging / m, dir / m);
  std::error_code ec;
  fs::remove_all(staging, ec);
}

}  // namespace

std::string LockText(const LockHolder& holder) {
  return "host=" + holder.host + " pid=" + std::to_string(holder.pid) + "\n";
}

bool ParseLockText(std::string_view text, LockHolder* holder) {
  if (!text.starts_with("host=") || !text.ends_with('\n')) return false;
  const size_t space = text.find(" pid=");
  if (space == std::string_view::npos || space <= 5) return false;
  const std::string_view pid = text.substr(space + 5, text.size() - space - 6);
  if (pid.empty() || pid.size() > 18 ||
      !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  holder->host = std::string(text.substr(5, space - 5));
  if (holder->host.find_first_of(" \n") != std::string::npos) return false;
  holder->pid = std::stol(std::string(pid));
  return true;
}

OutputDir::OutputDir(const Comm& comm, fs::path dir, fs::path staging)
    : comm_(&comm), dir_(std::move(dir)), staging_(std::move(staging)) {}

OutputDir::OutputDir(OutputDir&& other) noexcept
    : comm_(other.comm_),
      dir_(std::move(other.dir_)),
      staging_(std::exchange(other.staging_, {})),
      locked_(std::exchange(other.locked_, false)) {}

OutputDir OutputDir::Open(const fs::path& dir, const Comm& comm, std::FILE* log) {
  std::string error, staging;
  if (comm.rank() == 0) {
    try {
      staging = OpenOnRankZero(dir, log).string();
    } catch (const IoError& e) {
      error = e.what();
    } catch (const fs::filesystem_error& e) {
      error = "output directory " + Quote(dir) + ": " + e.what();
    }
  }
  // Every rank fails alike, before any computation.
  comm.Broadcast(error, 0);
  if (!error.empty()) throw IoError(error);
  comm.Broadcast(staging, 0);
  OutputDir out(comm, dir, staging);
  out.locked_ = comm.rank() == 0;
  SetProgressDir(ProgressDirOf(out.staging_), comm.size());
  const std::string lock = (dir / kLockName).string();
  SetInterruptOutput(dir.c_str(), out.locked_ ? lock.c_str() : nullptr);
  return out;
}

OutputDir::~OutputDir() {
  if (staging_.empty()) return;  // moved from
  SetProgressDir({}, 0);
  if (!locked_) return;
  std::error_code ignored;
  fs::remove_all(ProgressDirOf(staging_), ignored);
  fs::remove_all(staging_, ignored);
  ::unlink((dir_ / kLockName).c_str());
  SetInterruptOutput(nullptr, nullptr);
}

void OutputDir::Commit(const std::vector<std::string>& markers, ManagedFiles managed) {
  // Every rank's files are staged before rank 0 publishes them; no rank publishes progress
  // after the barrier, so its directory can go.
  SetProgressDir({}, 0);
  comm_->Barrier();
  std::string error;
  if (comm_->rank() == 0) {
    try {
      fs::remove_all(ProgressDirOf(staging_));
      CommitOnRankZero(dir_, staging_, markers, managed);
    } catch (const IoError& e) {
      error = e.what();
    } catch (const fs::filesystem_error& e) {
      error = "output directory " + Quote(dir_) + ": " + e.what();
    }
    if (error.empty()) {
      ::unlink((dir_ / kLockName).c_str());
      locked_ = false;
    }
  }
  comm_->Broadcast(error, 0);
  if (!error.empty()) throw IoError(error);
  SetInterruptOutput(nullptr, nullptr);  // complete: an interrupt now loses nothing
}

std::vector<std::string> ManagedOutputFiles(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const char* name :
       {"fixed/plan.h5", "fixed/plan.json", "model.h5", "plan.h5", "plan.json"}) {
    if (fs::is_regular_file(dir / name, ec)) files.push_back(name);
  }
  if (fs::is_directory(dir / "shards", ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(dir / "shards", ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_regular_file(ec) && name.starts_with("rank-") && name.ends_with(".h5") &&
          name.find("-of-") != std::string::npos) {
        files.push_back("shards/" + name);
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

void WriteWholeFile(const fs::path& path, std::string_view bytes, const std::string& what) {
  auto fail = [&](int err) {
    ::unlink(path.c_str());
    throw IoError(what + ": cannot write " + Quote(path) + ": " + ErrnoText(err));
  };
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw IoError(what + ": cannot create " + Quote(path) + ": " + ErrnoText(err));
  }
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t put = ::write(fd, p, left);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) {
      const int err = put < 0 ? errno : EIO;
      ::close(fd);
      fail(err);
    }
    p += put;
    left -= static_cast<size_t>(put);
  }
  if (::close(fd) != 0) fail(errno);
}

std::vector<std::string> ManagedExportFiles(const fs::path& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool shard = name.starts_with("model-") && name.ends_with(".safetensors") &&
                       name.find("-of-") != std::string::npos;
    if (e.is_regular_file(ec) &&
        (shard || name == "config.json" || name == "tokenizer.model" ||
         name == "model.safetensors" || name == "model.safetensors.index.json")) {
      files.push_back(name);
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace hiq
