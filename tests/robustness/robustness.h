// The robustness table: every bad input and fault the tests try, each a row that is both a test
// (Hostile/Robustness.Refuses/<name>: run the real binary, check the exit code, the exact message
// line and that nothing in the output looks complete) and a row of docs/ROBUSTNESS.md (generated
// from the same rows; RobustnessDocs.TableIsCurrent fails when the file is stale, and
// HIQ_UPDATE_DOCS=1 build/tests/test_robustness rewrites it).
//
// A part of hiq adds its cases from its own file, tests/robustness/<part>.cpp:
//   static const int kRegistered = RegisterCases({{.name = ..., .area = ..., ...}, ...});
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "test_util.h"

namespace hiq::test {

// One case's scratch directory ($TMP in messages), removed when the case ends.
class Sandbox {
 public:
  Sandbox();
  const std::filesystem::path& path() const { return dir_.path(); }
  std::filesystem::path operator/(const std::string& name) const { return dir_ / name; }
  // $TMP/out: where a case points a command's output.
  std::filesystem::path Out() const { return dir_ / "out"; }
  // "hiq" alone for np = 1, else the binary under mpirun with np ranks (as tests/test_cli.cpp).
  std::string Hiq(int np = 1) const;
  // A writable copy of the real stories260K model directory at $TMP/<name>.
  std::filesystem::path CopyModel(const std::string& name = "model") const;
  // Writes `text` to $TMP/<name> and returns its path.
  std::filesystem::path Write(const std::string& name, const std::string& text) const;
  // A complete small plan config at $TMP/<name>: stories260K, calibration from the real text with
  // few short sequences (seconds, not minutes), output $TMP/out, then `extra` YAML appended.
  std::filesystem::path PlanConfig(const std::string& extra = "",
                                   const std::string& name = "config.yaml") const;

 private:
  TempDir dir_;
};

struct RobustCase {
  std::string name;  // the test's parameter name: CamelCase, unique
  std::string area;  // checkpoint | tokenizer | text | token file | config | plan | output | disk |
                     // signal | ranks
  std::string what;  // the bad input or fault, one line
  // Prepares the inputs under the sandbox; returns the shell command line to run.
  std::function<std::string(Sandbox&)> command;
  int exit_code = 1;
  // One exact line of the output (stdout + stderr), with the sandbox written $TMP, the data
  // directory $DATA and SHA-256 digests <sha256>; "rank *: " matches any rank's line (for a
  // failure every rank meets alike).
  std::string message;
  // After the run: what must hold in the sandbox. Unset: nothing under $TMP/out looks complete
  // (ExpectNothingComplete).
  std::function<void(Sandbox&, const CommandResult&)> check = nullptr;
};

// gtest prints a parameter by this (its bytes otherwise).
inline void PrintTo(const RobustCase& c, std::ostream* os) { *os << c.name; }

int RegisterCases(std::vector<RobustCase> cases);
const std::vector<RobustCase>& RegisteredCases();

// `hiq ARGS` once (its output, complete, at $TMP/out; a copy at $TMP/before), then `hiq ARGS`
// again under RLIMIT_FSIZE = `bytes`: the command line of a case whose check is that the second
// run's EFBIG leaves $TMP/out as $TMP/before. `again` is added to the second run only (plan and
// quantize refuse a complete output without --overwrite).
std::string AgainUnderFileSizeLimit(const Sandbox& s, const std::string& args, long bytes,
                                    const std::string& again = "");
// The check of such a case: $TMP/out holds what $TMP/before holds, byte for byte.
void ExpectOutputAsBefore(Sandbox& s, const CommandResult& result);

// No completion marker (plan.json, model.h5) anywhere under `dir`.
void ExpectNothingComplete(const std::filesystem::path& dir);

// `text` with the sandbox's and the data directory's paths replaced by $TMP and $DATA, any
// 64-digit hex run by <sha256>, the pid of a staging, temporary or private lock name
// (".staging-123") by $PID, and this host's name after "host " or "host=" by $HOST.
std::string Normalize(const std::string& text, const Sandbox& sandbox);

}  // namespace hiq::test
