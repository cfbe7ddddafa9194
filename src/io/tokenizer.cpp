// SentencePiece tokenization and token files (format in include/hiq/io/tokenizer.h).
#include "hiq/io/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "hiq/base/error.h"   // IoError, FormatError
#include "hiq/base/sha256.h"  // Sha256Hex, Sha256HexOfFile
#include "hiq/base/text.h"    // FirstInvalidUtf8, CrToLf
#include "hiq/io/h5.h"        // H5File, H5Group

namespace hiq {
namespace {

constexpr char kTokenFormat[] = "hiq-tokens";
constexpr int64_t kTokenFormatVersion = 1;

std::string ReadWholeFile(const std::filesystem::path& file, const char* function) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw IoError(std::string(function) + ": cannot open '" + file.string() +
                  "': " + std::strerror(errno));
  }
  std::string bytes;
  constexpr size_t kPieceBytes = size_t{1} << 20;
  std::vector<char> piece(kPieceBytes);
  while (in) {
    in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
    bytes.append(piece.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) throw IoError(std::string(function) + ": read error in '" + file.string() + "'");
  return bytes;
}

}  // namespace

Tokenizer::Tokenizer(const std::filesystem::path& model_file)
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()),
      model_file_(model_file) {
  // Read the bytes ourselves: one read gives both the hash and the model, and a missing file is
  // an IoError while unparseable bytes are a FormatError.
  const std::string bytes = ReadWholeFile(model_file, "Tokenizer");
  sha256_ = Sha256Hex(bytes);
  const auto status = processor_->LoadFromSerializedProto(bytes);
  if (!status.ok()) {
    throw FormatError("Tokenizer: '" + model_file.string() + "' is not a SentencePiece model: " +
                      status.ToString() + " (HINT: pass the model directory's tokenizer.model)");
  }
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::Encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = processor_->Encode(text, &ids);
  if (!status.ok()) {
    throw FormatError("Tokenizer::Encode: SentencePiece failed with '" + model_file_.string() +
                      "': " + status.ToString());
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::Decode(std::span<const int32_t> ids) const {
  const int32_t vocab = vocab_size();
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw FormatError("Tokenizer::Decode: id " + std::to_string(ids[i]) + " at position " +
                        std::to_string(i) + " is outside the vocabulary [0, " +
                        std::to_string(vocab) + ") of '" + model_file_.string() + "'");
    }
  }
  std::string text;
  const auto status = processor_->Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!status.ok()) {
    throw FormatError("Tokenizer::Decode: SentencePiece failed with '" + model_file_.string() +
                      "': " + status.ToString());
  }
  return text;
}

int32_t Tokenizer::bos_id() const { return processor_->bos_id(); }
int32_t Tokenizer::eos_id() const { return processor_->eos_id(); }
int32_t Tokenizer::vocab_size() const { return processor_->GetPieceSize(); }

std::string ReadTextFile(const std::filesystem::path& file, Newlines newlines) {
  std::string bytes = ReadWholeFile(file, "ReadTextFile");
  if (const size_t bad = FirstInvalidUtf8(bytes); bad != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02x",
                  static_cast<unsigned>(static_cast<uint8_t>(bytes[bad])));
    throw FormatError("ReadTextFile: '" + file.string() +
                      "' is not UTF-8: ill-formed sequence at byte offset " + std::to_string(bad) +
                      " (byte " + byte + "). HINT: convert it, e.g. `iconv -f latin1 -t utf-8`");
  }
  return newlines == Newlines::kLf ? CrToLf(bytes) : bytes;
}

std::vector<int32_t> TokenizeFile(const Tokenizer& tokenizer,
                                  const std::filesystem::path& text_file, Newlines newlines) {
  const std::string text = ReadTextFile(text_file, newlines);
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  std::vector<int32_t> tokens;
  tokens.reserve(ids.size() + 1);
  tokens.push_back(tokenizer.bos_id());
  tokens.insert(tokens.end(), ids.begin(), ids.end());
  return tokens;
}

void CheckTokenizerMatchesModel(const Tokenizer& tokenizer, const ModelVocab& model) {
  const std::string both = "the tokenizer '" + tokenizer.model_file().string() +
                           "' does not belong to the model of '" + model.config_file + "': ";
  if (tokenizer.vocab_size() != model.vocab_size) {
    throw FormatError(both + "it has " + std::to_string(tokenizer.vocab_size()) +
                      " pieces but vocab_size is " + std::to_string(model.vocab_size));
  }
  if (model.bos_token_id && *model.bos_token_id != tokenizer.bos_id()) {
    throw FormatError(both + "its BOS id is " + std::to_string(tokenizer.bos_id()) +
                      " but bos_token_id is " + std::to_string(*model.bos_token_id));
  }
  if (!model.eos_token_ids.empty() &&
      std::find(model.eos_token_ids.begin(), model.eos_token_ids.end(), tokenizer.eos_id()) ==
          model.eos_token_ids.end()) {
    std::string ids;
    for (const int64_t id : model.eos_token_ids)
      ids += (ids.empty() ? "" : ", ") + std::to_string(id);
    throw FormatError(both + "its EOS id is " + std::to_string(tokenizer.eos_id()) +
                      " but eos_token_id is " +
                      (model.eos_token_ids.size() == 1 ? ids : "[" + ids + "]"));
  }
}

TokenFileInfo MakeTokenFileInfo(const Tokenizer& tokenizer, const std::filesystem::path& text_file,
                                std::span<const int32_t> tokens, Newlines newlines) {
  TokenFileInfo info;
  info.newlines = std::string(NewlinesName(newlines));
  info.tokenizer_sha256 = tokenizer.sha256();
  info.text_sha256 = Sha256HexOfFile(text_file);
  info.bos = !tokens.empty() && tokens.front() == tokenizer.bos_id() ? tokenizer.bos_id() : -1;
  info.source = text_file.filename().string();
  return info;
}

void WriteTokenFile(const std::filesystem::path& file, std::span<const int32_t> tokens,
                    const TokenFileInfo& info) {
  H5File out = H5File::Create(file);
  H5Group root = out.root();
  root.WriteDataset<int32_t>("tokens", tokens, {tokens.size()});
  root.SetAttribute("format", kTokenFormat);
  root.SetAttribute("format_version", kTokenFormatVersion);
  root.SetAttribute("count", static_cast<int64_t>(tokens.size()));
  root.SetAttribute("bos", int64_t{info.bos});
  root.SetAttribute("source", info.source);
  root.SetAttribute("text_sha256", info.text_sha256);
  root.SetAttribute("tokenizer_sha256", info.tokenizer_sha256);
  root.SetAttribute("newlines", info.newlines);
  out.Commit();
}

TokenFile ReadTokenFile(const std::filesystem::path& file) {
  const std::string where = "ReadTokenFile: '" + file.string() + "'";
  const H5File in = H5File::Open(file);
  const H5Group root = in.root();
  if (!root.HasAttribute("format")) {
    throw FormatError(where + " has no 'format' attribute, expected \"" + kTokenFormat +
                      "\" (HINT: make token files with `hiq tokenize`)");
  }
  const std::string format = root.GetAttributeString("format");
  if (format != kTokenFormat) {
    throw FormatError(where + " has format \"" + format + "\", expected \"" + kTokenFormat + "\"");
  }
  const int64_t version = root.GetAttributeInt("format_version");
  if (version != kTokenFormatVersion) {
    throw FormatError(where + " has format_version " + std::to_string(version) + ", expected " +
                      std::to_string(kTokenFormatVersion) + " (HINT: re-run `hiq tokenize`)");
  }
  TokenFile token_file;
  H5Array<int32_t> tokens = root.ReadDataset<int32_t>("tokens");
  if (tokens.dims.size() != 1) {
    throw FormatError(where + ": /tokens has rank " + std::to_string(tokens.dims.size()) +
                      ", expected 1");
  }
  const int64_t count = root.GetAttributeInt("count");
  if (count < 0 || static_cast<uint64_t>(count) != tokens.dims[0]) {
    throw FormatError(where + ": attribute count = " + std::to_string(count) + " but /tokens has " +
                      std::to_string(tokens.dims[0]) + " ids");
  }
  token_file.tokens = std::move(tokens.data);
  const int64_t bos = root.GetAttributeInt("bos");
  if (bos >= 0 && (token_file.tokens.empty() || token_file.tokens.front() != bos)) {
    throw FormatError(where + ": attribute bos = " + std::to_string(bos) +
                      " but /tokens does not start with it");
  }
  token_file.info.bos = static_cast<int32_t>(bos);
  token_file.info.source = root.GetAttributeString("source");
  token_file.info.text_sha256 = root.GetAttributeString("text_sha256");
  token_file.info.tokenizer_sha256 = root.GetAttributeString("tokenizer_sha256");
  if (root.HasAttribute("newlines")) {
    token_file.info.newlines = root.GetAttributeString("newlines");
    if (!NewlinesFromName(token_file.info.newlines)) {
      throw FormatError(where + ": attribute newlines = \"" + token_file.info.newlines +
                        "\", expected \"lf\" or \"keep\"");
    }
  }
  return token_file;
}

void CheckTokenFileMatchesModel(const TokenFile& tokens, const std::filesystem::path& file,
                                const Tokenizer& tokenizer, const ModelVocab& model) {
  if (tokens.info.tokenizer_sha256 != tokenizer.sha256()) {
    throw FormatError("token file '" + file.string() + "' was made by a tokenizer with sha256 " +
                      tokens.info.tokenizer_sha256 + ", but the model's '" +
                      tokenizer.model_file().string() + "' has sha256 " + tokenizer.sha256() +
                      ". HINT: re-run `hiq tokenize --model` with this model");
  }
  for (size_t i = 0; i < tokens.tokens.size(); ++i) {
    const int32_t id = tokens.tokens[i];
    if (id < 0 || id >= model.vocab_size) {
      throw FormatError("token file '" + file.string() + "': id " + std::to_string(id) +
                        " at index " + std::to_string(i) + " is outside [0, vocab_size = " +
                        std::to_string(model.vocab_size) + ") of '" + model.config_file + "'");
    }
  }
}

}  // namespace hiq
