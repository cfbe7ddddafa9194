// The resume store's entries (see hiq/io/stagestore.h).
#include "hiq/io/stagestore.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "hiq/base/error.h"   // FormatError, IoError
#include "hiq/base/sha256.h"  // Sha256Hex

namespace hiq {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMagic = "hiq-resume-entry 1";
constexpr const char* kTmpInfix = ".tmp-";

std::string Quote(const fs::path& p) { return "'" + p.string() + "'"; }

// write(2) of all of `bytes`, fsync, close: the data is on disk before the rename names it.
void WriteAndSync(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw IoError("resume store: cannot create " + Quote(path) + ": " + std::strerror(errno));
  }
  auto fail = [&](int err) {
    ::close(fd);
    ::unlink(path.c_str());
    throw IoError("resume store: cannot write " + Quote(path) + ": " + std::strerror(err));
  };
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t put = ::write(fd, p, left);
    if (put < 0 && errno == EINTR) continue;
    if (put <= 0) fail(put < 0 ? errno : EIO);
    p += put;
    left -= static_cast<size_t>(put);
  }
  if (::fsync(fd) != 0) fail(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw IoError("resume store: cannot write " + Quote(path) + ": " + std::strerror(err));
  }
}

// The rename itself is durable only once the directory is synced.
void SyncDirectory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;  // the entry is in place; only its durability across a power cut is weaker
  ::fsync(fd);
  ::close(fd);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The "key: value" lines of two canonical config texts that differ, by key.
std::string ConfigDifference(const std::string& found, const std::string& expected) {
  auto parse = [](const std::string& text, std::string* header) {
    std::map<std::string, std::string> values;
    for (const std::string& line : Lines(text)) {
      const size_t colon = line.find(": ");
      if (colon == std::string::npos) {
        *header = line;
        continue;
      }
      values[line.substr(0, colon)] = line.substr(colon + 2);
    }
    return values;
  };
  std::string found_header, expected_header;
  const auto a = parse(found, &found_header);
  const auto b = parse(expected, &expected_header);
  // "hiq-config-v2 stage quantize" -> "quantize"
  const size_t at = expected_header.rfind(' ');
  const std::string stage =
      at == std::string::npos ? expected_header : expected_header.substr(at + 1);
  std::vector<std::string> diffs;
  if (found_header != expected_header) {
    diffs.push_back("its config text is '" + found_header + "', this build writes '" +
                    expected_header + "'");
  }
  for (const auto& [key, value] : b) {
    const auto it = a.find(key);
    if (it == a.end()) {
      diffs.push_back(key + " is not in the entry, " + value + " now");
    } else if (it->second != value) {
      diffs.push_back(key + " is " + it->second + " in the entry, " + value + " now");
    }
  }
  for (const auto& [key, value] : a) {
    if (!b.contains(key)) diffs.push_back(key + " is " + value + " in the entry, not read now");
  }
  std::string out = "another config (" + stage + " stage: ";
  for (size_t i = 0; i < diffs.size(); ++i) out += (i > 0 ? ", " : "") + diffs[i];
  return out + ")";
}

}  // namespace

void WriteStoreEntry(const fs::path& path, const StoreEntry& entry) {
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) {
    throw IoError("resume store: cannot create " + Quote(path.parent_path()) + ": " + ec.message());
  }
  nlohmann::json header;
  header["kind"] = entry.kind;
  header["components"] = entry.components;
  header["payload_bytes"] = entry.payload.size();
  header["payload_sha256"] = Sha256Hex(entry.payload);
  const std::string head = header.dump();
  std::string bytes = std::string(kMagic) + "\n" + std::to_string(head.size()) + "\n" + head;
  bytes += entry.payload;
  const fs::path tmp = path.string() + kTmpInfix + std::to_string(::getpid());
  WriteAndSync(tmp, bytes);
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    throw IoError("resume store: cannot rename " + Quote(tmp) + " to " + Quote(path) + ": " +
                  ec.message());
  }
  SyncDirectory(path.parent_path());
}

std::optional<StoreEntry> ReadStoreEntry(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("resume store: cannot read " + Quote(path));
  const std::string bytes(std::istreambuf_iterator<char>(in), {});
  const auto bad = [&](const std::string& why) {
    return FormatError("resume store: " + path.string() + " is not a complete hiq-resume-entry: " +
                       why + "; remove it (or pass --overwrite) to recompute it");
  };
  const size_t l1 = bytes.find('\n');
  if (l1 == std::string::npos || bytes.compare(0, l1, kMagic) != 0) {
    throw bad("it does not start with '" + std::string(kMagic) + "'");
  }
  const size_t l2 = bytes.find('\n', l1 + 1);
  if (l2 == std::string::npos) throw bad("no header length");
  size_t head_bytes = 0;
  try {
    head_bytes = std::stoull(bytes.substr(l1 + 1, l2 - l1 - 1));
  } catch (const std::exception&) {
    throw bad("the header length is not a number");
  }
  if (head_bytes > bytes.size() - l2 - 1) throw bad("the header is cut short");
  StoreEntry entry;
  size_t payload_bytes = 0;
  std::string payload_sha;
  try {
    const nlohmann::json header = nlohmann::json::parse(bytes.substr(l2 + 1, head_bytes));
    entry.kind = header.at("kind").get<std::string>();
    entry.components = header.at("components").get<std::map<std::string, std::string>>();
    payload_bytes = header.at("payload_bytes").get<size_t>();
    payload_sha = header.at("payload_sha256").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("its header: ") + e.what());
  }
  const size_t start = l2 + 1 + head_bytes;
  if (bytes.size() - start != payload_bytes) {
    throw bad("the payload has " + std::to_string(bytes.size() - start) + " bytes, the header " +
              std::to_string(payload_bytes));
  }
  entry.payload = bytes.substr(start);
  if (Sha256Hex(entry.payload) != payload_sha) throw bad("the payload's SHA-256 differs");
  return entry;
}

std::string ComponentsFingerprint(const StoreEntry& entry) {
  std::string text = "kind " + entry.kind + "\n";
  for (const auto& [name, value] : entry.components) {
    text += name + " " + std::to_string(value.size()) + "\n" + value + "\n";
  }
  return Sha256Hex(text);
}

std::string DescribeDifference(const StoreEntry& found,
                               const std::map<std::string, std::string>& expected) {
  std::vector<std::string> parts;
  for (const auto& [name, value] : expected) {
    const auto it = found.components.find(name);
    const std::string was = it == found.components.end() ? "(none)" : it->second;
    if (was == value) continue;
    if (name == "config") {
      parts.push_back(ConfigDifference(was, value));
    } else if (name == "model") {
      parts.push_back("another model (fingerprint " + was.substr(0, 12) + " in the entry, " +
                      value.substr(0, 12) + " now)");
    } else if (name == "build") {
      parts.push_back("another build (" + was + " in the entry, " + value + " now)");
    } else if (name == "cpu") {
      parts.push_back("another CPU kind (" + was + " in the entry, " + value + " now)");
    } else if (name == "upstream") {
      parts.push_back("another upstream result (the " +
                      std::string(found.kind == "cost" ? "Fisher scores" : "plan") +
                      " it was made from)");
    } else if (name == "data") {
      parts.push_back("another calibration set (its tokens' SHA-256 " + was.substr(0, 12) +
                      " in the entry, " + value.substr(0, 12) + " now)");
    } else {
      parts.push_back("another " + name + " (" + was + " in the entry, " + value + " now)");
    }
  }
  for (const auto& [name, value] : found.components) {
    if (!expected.contains(name)) parts.push_back("a component '" + name + "' not recorded now");
  }
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i > 0 ? "; " : "") + parts[i];
  return out;
}

void RemoveStoreTemporaries(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) &&
        it->path().filename().string().find(kTmpInfix) != std::string::npos) {
      stale.push_back(it->path());
    }
  }
  for (const fs::path& p : stale) fs::remove(p, ec);
}

}  // namespace hiq
