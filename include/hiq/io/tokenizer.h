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
//      newlines         string  "lf" (CRLF and CR were read as LF) or "keep" (bytes as they
//                               are); absent in files written before it, which were "keep"
// Written atomically (temporary name, then rename) so a token file that exists is complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hiq/base/text.h"  // Newlines

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

// The bytes of a text file as evaluators read them: IoError naming the file if it cannot be
// read, FormatError naming the file and the byte offset of the first ill-formed UTF-8 sequence;
// with Newlines::kLf every CRLF and lone CR becomes LF.
std::string ReadTextFile(const std::filesystem::path& file, Newlines newlines);

// The whole of `text_file` as one text: [BOS] + Encode(ReadTextFile(text_file, newlines)).
std::vector<int32_t> TokenizeFile(const Tokenizer& tokenizer,
                                  const std::filesystem::path& text_file, Newlines newlines);

// What the tokenizer and the token ids must agree with: the model's config.json (or whatever
// file holds the model's config), its vocabulary size and the BOS/EOS ids it declares.
struct ModelVocab {
  std::string config_file;  // named in messages
  int64_t vocab_size = 0;
  std::optional<int64_t> bos_token_id;  // absent when the config does not say
  std::vector<int64_t> eos_token_ids;   // empty when the config does not say; several allowed
};

// FormatError naming the tokenizer.model and the config file and both values unless the
// tokenizer's piece count is vocab_size and its BOS/EOS ids are the ones the config declares.
void CheckTokenizerMatchesModel(const Tokenizer& tokenizer, const ModelVocab& model);

// Provenance written with the ids (see the format above); count is tokens.size() on write.
struct TokenFileInfo {
  std::string tokenizer_sha256;
  std::string text_sha256;
  int32_t bos = -1;
  std::string source;
  std::string newlines;  // "lf" | "keep"; "" when read from a file written before the attribute
};

struct TokenFile {
  std::vector<int32_t> tokens;
  TokenFileInfo info;
};

// Info for `tokens` made from `text_file` by `tokenizer` reading it with `newlines`: hashes the
// text file's bytes (IoError if it cannot be read); bos is the tokenizer's BOS id when tokens
// start with it, else -1.
TokenFileInfo MakeTokenFileInfo(const Tokenizer& tokenizer, const std::filesystem::path& text_file,
                                std::span<const int32_t> tokens, Newlines newlines);

// Writes a token file atomically. IoError if it cannot be written.
void WriteTokenFile(const std::filesystem::path& file, std::span<const int32_t> tokens,
                    const TokenFileInfo& info);

// Reads and validates a token file: IoError if it cannot be opened, FormatError naming the file
// and the problem if it is not HDF5, `format` is not "hiq-tokens", format_version is not 1,
// /tokens is not 1-D int32, or `count` disagrees with it.
TokenFile ReadTokenFile(const std::filesystem::path& file);

// A token file read from `file` belongs to the model: FormatError naming both files and both
// hashes unless it was made by `tokenizer` (the model's tokenizer.model), and naming the file,
// the index and the id of the first id outside [0, vocab_size) - checked for the whole stream,
// so the outcome never depends on which windows are drawn.
void CheckTokenFileMatchesModel(const TokenFile& tokens, const std::filesystem::path& file,
                                const Tokenizer& tokenizer, const ModelVocab& model);

}  // namespace hiq
