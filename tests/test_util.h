// Shared helpers for hiq's tests: where the real data lives, temp dirs, running the binary.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

#include "hiq/base/sha256.h"  // Sha256HexOfFile

namespace hiq::test {

// ../shared/data (or $HIQ_DATA): the real stories260K model, the oracle and the text.
inline std::filesystem::path DataDir() {
  if (const char* env = std::getenv("HIQ_DATA"); env && *env) return env;
  return HIQ_TEST_DATA_DIR;
}
inline std::filesystem::path SourceDir() { return HIQ_TEST_SOURCE_DIR; }
inline std::filesystem::path HiqBinary() { return HIQ_TEST_BINARY; }
// The CLI tests' command prefixes: the binary, and the binary under `mpirun -np np`.
inline std::string Hiq() { return HiqBinary().string(); }
inline std::string Mpirun(int np) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " " + Hiq();
}
// The last non-empty line of a command's output (where hiq prints its key=value result).
inline std::string LastLine(const std::string& text) {
  std::istringstream in(text);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

// A fresh, empty directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "hiq") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (tag + "-XXXXXX")).string();
    char* made = mkdtemp(tmpl.data());
    if (made == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int exit_code = -1;  // -1 if it did not exit normally
  std::string output;  // stdout and stderr together
};

// Runs a shell command line (the real hiq binary, mpirun, ...) and collects its output.
// Open MPI refuses to run as root without consent, and CI runs as root.
inline CommandResult RunCommand(const std::string& command) {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  CommandResult r;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Every file under `dir` (relative path -> SHA-256), for "left byte for byte as it was".
inline std::map<std::string, std::string> FileHashes(const std::filesystem::path& dir) {
  std::map<std::string, std::string> hashes;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) {
      hashes[std::filesystem::relative(e.path(), dir).string()] = Sha256HexOfFile(e.path());
    }
  }
  return hashes;
}

// FileHashes without the resume store (OUT/.resume/, docs/OPERATIONS.md): what a run publishes.
// --overwrite discards the store at once, and its entries hold timings, so "the output as it was"
// is about the published files.
inline std::map<std::string, std::string> OutputHashes(const std::filesystem::path& dir) {
  std::map<std::string, std::string> hashes = FileHashes(dir);
  std::erase_if(hashes, [](const auto& kv) { return kv.first.starts_with(".resume/"); });
  return hashes;
}

// The prefix that runs a command under RLIMIT_FSIZE = `bytes`, so that a write past it fails
// with EFBIG. Open MPI cannot make its shared-memory files under such a limit: tcp and PMIx's
// hash store instead.
inline std::string UnderFileSizeLimit(long bytes) {
  return "env PMIX_MCA_gds=hash OMPI_MCA_btl=self,tcp prlimit --fsize=" + std::to_string(bytes) +
         " ";
}

// Expect `statement` to throw `exception_type` whose what() contains `substring`.
#define EXPECT_THROW_WITH(statement, exception_type, substring)                       \
  do {                                                                                \
    try {                                                                             \
      statement;                                                                      \
      ADD_FAILURE() << "expected " #exception_type " containing: " << (substring);    \
    } catch (const exception_type& e) {                                               \
      EXPECT_NE(std::string(e.what()).find(substring), std::string::npos)             \
          << "message was: " << e.what() << "\nexpected to contain: " << (substring); \
    }                                                                                 \
  } while (0)

// Expect `statement` to throw `exception_type` whose what() is exactly `message`.
#define EXPECT_THROW_MSG(statement, exception_type, message)          \
  do {                                                                \
    try {                                                             \
      statement;                                                      \
      ADD_FAILURE() << "expected " #exception_type ": " << (message); \
    } catch (const exception_type& e) {                               \
      EXPECT_EQ(std::string(e.what()), std::string(message));         \
    }                                                                 \
  } while (0)

}  // namespace hiq::test
