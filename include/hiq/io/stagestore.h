// hiq/io/stagestore.h - one entry of the resume store (OUT/.resume/, docs/FORMATS.md "The resume
// store"): a stage's result together with the fingerprint of exactly what it depends on, recorded
// component by component, so that `hiq quantize --resume` can reuse it and a refusal can name
// what differs.
//
//  - An entry is one file: a text line "hiq-resume-entry 1", a line with the header's byte count,
//    the JSON header ({"kind", "components": {name: text}, "payload_bytes", "payload_sha256"}),
//    then the payload bytes. Components are strings compared whole; "config" holds the canonical
//    text of the keys the stage reads (hiq/config/config.h), so a difference names its keys.
//  - Written atomically: "<path>.tmp-<pid>", fsync, rename, fsync of the directory. A kill -9 at
//    any point leaves either no entry or a complete one (and maybe a .tmp- file, never read).
//  - Read back whole: the payload's length and SHA-256 are checked, so a file under its final
//    name that is not a complete entry is a FormatError, never a partial result.
// No MPI: the stage logic (hiq/stages/resume.h) decides which rank reads and writes.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace hiq {

struct StoreEntry {
  std::string kind;                               // "plan", "block"
  std::map<std::string, std::string> components;  // what the payload depends on
  std::string payload;                            // the result, bytes
};

// Writes `entry` to `path` atomically (see above), creating the parent directories. IoError
// naming the path and the cause (ENOSPC, ...); a failed write leaves no file under `path`.
void WriteStoreEntry(const std::filesystem::path& path, const StoreEntry& entry);

// The entry at `path`, or nullopt if there is none. FormatError naming the path if the file is
// not a complete entry of this format; IoError if it cannot be read.
std::optional<StoreEntry> ReadStoreEntry(const std::filesystem::path& path);

// SHA-256 of the components (names and values, in name order): what a later stage records as
// its "upstream" component.
std::string ComponentsFingerprint(const StoreEntry& entry);

// Empty if `found` has exactly the `expected` components; otherwise what differs, in words:
// "another config (quantize stage: quantize.steps is 4 in the entry, 2 now)", "another model",
// "another build (...)", "another CPU kind (...)", "another upstream result (the plan it was
// made from)", joined with "; ".
std::string DescribeDifference(const StoreEntry& found,
                               const std::map<std::string, std::string>& expected);

// Removes the temporary files of interrupted writes under `dir` (recursively). Call it only while
// holding the output directory's lock.
void RemoveStoreTemporaries(const std::filesystem::path& dir);

}  // namespace hiq
