// hiq/io/tokenizer.h - SentencePiece tokenization of calibration/evaluation text, and token files.
//
// A text file is tokenized as ONE text: the whole file (newlines included, no per-line split or
// stripping) is encoded at once and a single BOS is put in front. This is how the stories260K
// oracle was made (tests/test_tokenizer.cpp checks its first 65 ids): SentencePiece adds its
// dummy-prefix piece "▁" once, at the start of the text, and "\n" becomes the byte-fallback piece
// <0x0A>; sample.txt starts with a newline, so its ids begin <s> ▁ <0x0A> O n ce ▁upon.
//
// Token file format (also in docs/FORMATS.md), an HDF5 file:
//   1. dataset /tokens: int32, 1-D, shape [count]; the ids, BOS first when bos >= 0.
//   2. attributes on the root group "/":
//      format           string  "hiq-tokens"
//      format_version   int     1
//      count            int     number of ids in /tokens
//      bos              int     the BOS id the stream starts with, -1 if it has none
//      source           string  file name of the text (no directory)
//      text_sha256      string  SHA-256 of the text file's bytes (64 lowercase hex)
//      tokenizer_sha256 string  SHA-256 of the tokenizer.model file
// Written atomically (temporary name, then rename) so a token file that exists is complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace hiq {

// A loaded SentencePiece model (tokenizer.model). Owns the processor; move-only.
// Thread-safety: after construction every method is const and may be called concurrently.
// The constructor throws IoError if the file cannot be read and FormatError if it is not a
// SentencePiece model, naming the file either way.
class Tokenizer {
 public:
  explicit Tokenizer(const std::filesystem::path& model_file);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Ids of `text`, without BOS/EOS. SentencePiece errors become FormatError.
  std::vector<int32_t> Encode(std::string_view text) const;
  // Text of `ids`; BOS/EOS/unknown control ids decode to nothing. FormatError for an id
  // outside [0, vocab_size).
  std::string Decode(std::span<const int32_t> ids) const;

  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t vocab_size() const;
  const std::string& sha256() const { return sha256_; }  // of the model file's bytes
  const std::filesystem::path& model_file() const { return model_file_; }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::filesystem::path model_file_;
  std::string sha256_;
};

// The whole of `text_file` as one text: [BOS] + Encode(contents). IoError naming the file if it
// cannot be read.
std::vector<int32_t> TokenizeFile(const Tokenizer& tokenizer,
                                  const std::filesystem::path& text_file);

// Provenance written with the ids (see the format above); count is tokens.size() on write.
struct TokenFileInfo {
  std::string tokenizer_sha256;
  std::string text_sha256;
  int32_t bos = -1;
  std::string source;
};

struct TokenFile {
  std::vector<int32_t> tokens;
  TokenFileInfo info;
};

// Info for `tokens` made from `text_file` by `tokenizer`: hashes the text file (IoError if it
// cannot be read); bos is the tokenizer's BOS id when tokens start with it, else -1.
TokenFileInfo MakeTokenFileInfo(const Tokenizer& tokenizer, const std::filesystem::path& text_file,
                                std::span<const int32_t> tokens);

// Writes a token file atomically. IoError if it cannot be written.
void WriteTokenFile(const std::filesystem::path& file, std::span<const int32_t> tokens,
                    const TokenFileInfo& info);

// Reads and validates a token file: IoError if it cannot be opened, FormatError naming the file
// and the problem if it is not HDF5, `format` is not "hiq-tokens", format_version is not 1,
// /tokens is not 1-D int32, or `count` disagrees with it.
TokenFile ReadTokenFile(const std::filesystem::path& file);

}  // namespace hiq
