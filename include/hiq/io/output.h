// hiq/io/output.h - the output directory protocol of `hiq plan`, `hiq quantize` and `hiq export`:
// an output directory never shows a mix of two runs nor a half-written result (docs/FORMATS.md,
// "The output directory").
//
//  - One run at a time: OUT/.hiq.lock (created atomically, holding "host=H pid=P") is taken by
//    rank 0 before any computation. A second run is refused at once naming the holder; a lock of
//    a dead process on this host is reported and taken over; a lock of another host is refused
//    (this host cannot tell whether that job lives).
//  - The path is checked first: not an existing non-directory, creatable, writable (taking the
//    lock is the write test). The outcome is broadcast: every rank throws the same IoError.
//  - Everything is written under OUT/.staging-<pid>/ (same filesystem, so rename is atomic);
//    Commit() removes the completion markers first, renames the other files into place, removes
//    what a previous run left that this output does not have (e.g. shards of another rank
//    count), and renames the markers last. A run that fails before Commit() leaves the previous
//    output byte for byte as it was. Leftover staging directories of dead runs are removed when
//    the next run takes the lock.
// Owns: the lock (released by Commit() or the destructor, on rank 0) and the staging directory.
// Collective: Open and Commit are called by every rank of `comm` in the same order.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace hiq {

class Comm;  // hiq/dist/mpi.h

// Who holds a lock file, as written in it.
struct LockHolder {
  std::string host;
  long pid = 0;
};

// The lock file's text for `holder`, and its parse (false if the text is not one).
std::string LockText(const LockHolder& holder);
bool ParseLockText(std::string_view text, LockHolder* holder);

// The completion markers, removed first and renamed last, in this order. A reader of OUT (eval
// --plan, eval --quantized) looks at them only.
inline const std::vector<std::string> kPlanMarkers = {"fixed/plan.json", "plan.json"};
inline const std::vector<std::string> kQuantizeMarkers = {"fixed/plan.json", "plan.json",
                                                          "model.h5"};
// `hiq export`'s Hugging Face directory: transformers reads config.json first.
inline const std::vector<std::string> kExportMarkers = {"config.json"};

// The files of one kind of output that a commit may remove as stale (relative, sorted).
using ManagedFiles = std::vector<std::string> (*)(const std::filesystem::path& dir);

class OutputDir {
 public:
  // Collective. Rank 0 checks and creates `dir`, takes the lock, removes dead staging
  // directories and creates its own; `log` (may be null) receives the line about a stale lock.
  // IoError on every rank, naming the path and the cause, if any of it fails.
  static OutputDir Open(const std::filesystem::path& dir, const Comm& comm, std::FILE* log);

  OutputDir(OutputDir&& other) noexcept;
  OutputDir& operator=(OutputDir&&) = delete;
  OutputDir(const OutputDir&) = delete;
  // Releases the lock if Commit() did not; the staging directory is removed on rank 0 (the
  // other ranks may still be writing into it only when the job is aborting anyway).
  ~OutputDir();

  const std::filesystem::path& dir() const { return dir_; }
  // Where this run writes: OUT/.staging-<pid of rank 0>, the same on every rank.
  const std::filesystem::path& staging() const { return staging_; }

  // Collective: publishes the staging directory's files in OUT under the protocol above, with
  // `markers` (paths relative to OUT, each staged) renamed last in order; then removes the
  // staging directory and releases the lock. IoError naming the file and the cause.
  // `managed`: which files of OUT are of this kind (ManagedOutputFiles for plan and quantize,
  // ManagedExportFiles for export); only those are ever removed, markers among them first.
  void Commit(const std::vector<std::string>& markers, ManagedFiles managed);

 private:
  OutputDir(const Comm& comm, std::filesystem::path dir, std::filesystem::path staging);
  const Comm* comm_;
  std::filesystem::path dir_, staging_;
  bool locked_ = false;  // rank 0 holds the lock
};

// The files of an output directory that hiq wrote (markers, plan.h5, shards): the ones a Commit
// may remove as stale, relative to OUT, sorted. Other files are never touched.
std::vector<std::string> ManagedOutputFiles(const std::filesystem::path& dir);
// The same for `hiq export`'s directory: config.json, tokenizer.model, model.safetensors, its
// index and model-NNNNN-of-NNNNN.safetensors (another run's sharding is stale).
std::vector<std::string> ManagedExportFiles(const std::filesystem::path& dir);

// Writes `bytes` to `path` (created or truncated) with write(2) and closes it; IoError naming
// `what: cannot write 'path'` and the errno text (ENOSPC, EFBIG, ...) on any failure, after
// which the partial file is removed.
void WriteWholeFile(const std::filesystem::path& path, std::string_view bytes,
                    const std::string& what);

}  // namespace hiq
