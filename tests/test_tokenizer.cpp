// The SentencePiece tokenizer on the real stories260K model and text, checked against the
// independent PyTorch oracle's token ids, and token files through real temp-file round trips.
#include <fstream>
#include <string>
#include <vector>

#include "hiq/base/error.h"      // IoError, FormatError
#include "hiq/base/sha256.h"     // Sha256HexOfFile
#include "hiq/io/checkpoint.h"   // ReadModelVocab
#include "hiq/io/h5.h"           // H5File, to write malformed token files
#include "hiq/io/safetensors.h"  // SafetensorsFile, to read the oracle
#include "hiq/io/tokenizer.h"
#include "test_util.h"  // DataDir, TempDir, EXPECT_THROW_WITH, EXPECT_THROW_MSG

namespace hiq {
namespace {

using test::DataDir;
using test::TempDir;

std::filesystem::path ModelFile() { return DataDir() / "stories260K/tokenizer.model"; }
std::filesystem::path SampleText() { return DataDir() / "text/tinystories/sample.txt"; }

std::string ReadText(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

constexpr size_t kOracleTokens = 65;  // BOS + the first 64 tokens of sample.txt

TEST(Tokenizer, LoadsStories260KVocabulary) {
  const Tokenizer tokenizer(ModelFile());
  EXPECT_EQ(tokenizer.vocab_size(), 512);
  EXPECT_EQ(tokenizer.bos_id(), 1);
  EXPECT_EQ(tokenizer.eos_id(), 2);
  EXPECT_EQ(tokenizer.sha256(), "e33674dd21f9a4614289b147413a99a25e565cab391c08bf9ff8a260aa8b1655");
}

// The oracle was tokenized independently (Python); the whole file as one text with one BOS
// must reproduce its ids, including the dummy-prefix space at the start only and the
// byte-fallback newlines inside the first 64 tokens.
TEST(Tokenizer, WholeFileMatchesTheOraclesFirst65Ids) {
  const SafetensorsFile oracle(DataDir() / "reference/stories260K-sample64.safetensors");
  const std::vector<int32_t> expected = oracle.ReadInt32("tokens");
  ASSERT_EQ(expected.size(), kOracleTokens);

  const Tokenizer tokenizer(ModelFile());
  const std::vector<int32_t> tokens = TokenizeFile(tokenizer, SampleText(), Newlines::kLf);
  ASSERT_GE(tokens.size(), kOracleTokens);
  EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + kOracleTokens), expected);
  EXPECT_EQ(std::count(tokens.begin(), tokens.end(), tokenizer.bos_id()), 1);  // one BOS only
}

TEST(Tokenizer, EncodeDecodeRoundTripsRealText) {
  const Tokenizer tokenizer(ModelFile());
  const std::string text = ReadText(SampleText());
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  // ~1.9k tokens for five stories; a wrong model or a per-byte encoding would be far off.
  EXPECT_GT(ids.size(), 1500u);
  EXPECT_LT(ids.size(), 2500u);
  EXPECT_EQ(tokenizer.Decode(ids), text);
  EXPECT_TRUE(tokenizer.Encode("").empty());
  // Byte fallback: text outside the 512-piece vocabulary still round-trips.
  const std::string rare = "Zo\xc3\xab \xe2\x82\xac 42\n\ttabs";
  EXPECT_EQ(tokenizer.Decode(tokenizer.Encode(rare)), rare);
}

TEST(Tokenizer, DecodeRejectsIdsOutsideTheVocabulary) {
  const Tokenizer tokenizer(ModelFile());
  const std::vector<int32_t> ids = {5, 512};
  EXPECT_THROW_WITH(tokenizer.Decode(ids), FormatError,
                    "id 512 at position 1 is outside the vocabulary [0, 512)");
}

TEST(Tokenizer, MissingOrBrokenModelNamesTheFile) {
  TempDir dir;
  EXPECT_THROW_WITH(Tokenizer(dir / "absent.model"), IoError, (dir / "absent.model").string());
  std::ofstream(dir / "broken.model") << "not a protobuf at all \xff\xff\xff";
  EXPECT_THROW_WITH(
      Tokenizer(dir / "broken.model"), FormatError,
      "Tokenizer: '" + (dir / "broken.model").string() + "' is not a SentencePiece model");
}

TEST(Tokenizer, TokenizeFileOfMissingTextIsIoError) {
  TempDir dir;
  const Tokenizer tokenizer(ModelFile());
  EXPECT_THROW_WITH(TokenizeFile(tokenizer, dir / "absent.txt", Newlines::kLf), IoError,
                    "ReadTextFile: cannot open '" + (dir / "absent.txt").string() + "'");
}

TEST(TokenFile, RoundTripsIdsAndProvenance) {
  TempDir dir;
  const Tokenizer tokenizer(ModelFile());
  const std::vector<int32_t> tokens = TokenizeFile(tokenizer, SampleText(), Newlines::kLf);
  const TokenFileInfo info = MakeTokenFileInfo(tokenizer, SampleText(), tokens, Newlines::kLf);
  EXPECT_EQ(info.text_sha256, "defaedb58bf28079f3e29c6142cb7f3568d331a577e0911c5d7925c465c50c43");
  EXPECT_EQ(info.tokenizer_sha256, tokenizer.sha256());
  EXPECT_EQ(info.bos, tokenizer.bos_id());
  EXPECT_EQ(info.source, "sample.txt");

  WriteTokenFile(dir / "sample.tokens.h5", tokens, info);
  const TokenFile back = ReadTokenFile(dir / "sample.tokens.h5");
  EXPECT_EQ(back.tokens, tokens);
  EXPECT_EQ(back.info.text_sha256, info.text_sha256);
  EXPECT_EQ(back.info.tokenizer_sha256, info.tokenizer_sha256);
  EXPECT_EQ(back.info.bos, info.bos);
  EXPECT_EQ(back.info.source, info.source);
  EXPECT_EQ(back.info.newlines, "lf");

  // The documented layout, read through the plain HDF5 layer as h5py users would see it.
  const H5Group root = H5File::Open(dir / "sample.tokens.h5").root();
  EXPECT_EQ(root.GetAttributeString("format"), "hiq-tokens");
  EXPECT_EQ(root.GetAttributeInt("format_version"), 1);
  EXPECT_EQ(root.GetAttributeInt("count"), static_cast<int64_t>(tokens.size()));
  EXPECT_EQ(root.DatasetTypeName("tokens"), "int32");
  EXPECT_EQ(root.DatasetDims("tokens"), std::vector<uint64_t>{tokens.size()});
  EXPECT_EQ(root.ListNames(), std::vector<std::string>{"tokens"});
}

TEST(TokenFile, StreamWithoutBosRecordsMinusOne) {
  TempDir dir;
  const Tokenizer tokenizer(ModelFile());
  const std::vector<int32_t> tokens = tokenizer.Encode("Once upon a time");
  const TokenFileInfo info = MakeTokenFileInfo(tokenizer, SampleText(), tokens, Newlines::kLf);
  EXPECT_EQ(info.bos, -1);
  WriteTokenFile(dir / "t.h5", tokens, info);
  EXPECT_EQ(ReadTokenFile(dir / "t.h5").info.bos, -1);
}

TEST(TokenFile, WriteIsAtomic) {
  TempDir dir;
  const std::vector<int32_t> tokens = {1, 5, 6};
  WriteTokenFile(dir / "t.h5", tokens, TokenFileInfo{"a", "b", 1, "s.txt", "lf"});
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"t.h5"});  // no temp file left behind
  EXPECT_THROW(WriteTokenFile(dir / "no/such/dir/t.h5", tokens, {}), IoError);
}

// Writes a token file by hand with one field changed, to test the reader's validation.
struct Malformed {
  std::string format = "hiq-tokens";
  int64_t version = 1;
  int64_t count = 3;
  int64_t bos = 1;
  std::vector<uint64_t> dims = {3};
};

void WriteMalformed(const std::filesystem::path& file, const Malformed& m) {
  H5File out = H5File::Create(file);
  H5Group root = out.root();
  const std::vector<int32_t> tokens = {1, 7, 8};
  root.WriteDataset<int32_t>("tokens", tokens, m.dims);
  root.SetAttribute("format", m.format);
  root.SetAttribute("format_version", m.version);
  root.SetAttribute("count", m.count);
  root.SetAttribute("bos", m.bos);
  root.SetAttribute("source", "x.txt");
  root.SetAttribute("text_sha256", "t");
  root.SetAttribute("tokenizer_sha256", "k");
  out.Commit();
}

TEST(TokenFile, WrongFormatAttributeIsFormatErrorNamingFile) {
  TempDir dir;
  const auto file = dir / "t.h5";
  WriteMalformed(file, {.format = "hiq-shard"});
  EXPECT_THROW_MSG(
      ReadTokenFile(file), FormatError,
      "ReadTokenFile: '" + file.string() + "' has format \"hiq-shard\", expected \"hiq-tokens\"");
}

TEST(TokenFile, CountMismatchIsFormatErrorNamingFile) {
  TempDir dir;
  const auto file = dir / "t.h5";
  WriteMalformed(file, {.count = 4});
  EXPECT_THROW_MSG(
      ReadTokenFile(file), FormatError,
      "ReadTokenFile: '" + file.string() + "': attribute count = 4 but /tokens has 3 ids");
}

TEST(TokenFile, OtherMalformationsAreFormatErrors) {
  TempDir dir;
  WriteMalformed(dir / "version.h5", {.version = 2});
  EXPECT_THROW_WITH(ReadTokenFile(dir / "version.h5"), FormatError,
                    "has format_version 2, expected 1");
  WriteMalformed(dir / "rank.h5", {.dims = {1, 3}});
  EXPECT_THROW_WITH(ReadTokenFile(dir / "rank.h5"), FormatError, "/tokens has rank 2, expected 1");
  WriteMalformed(dir / "bos.h5", {.bos = 2});
  EXPECT_THROW_WITH(ReadTokenFile(dir / "bos.h5"), FormatError,
                    "attribute bos = 2 but /tokens does not start with it");
  {
    H5File bare = H5File::Create(dir / "bare.h5");
    bare.Commit();
  }
  EXPECT_THROW_WITH(ReadTokenFile(dir / "bare.h5"), FormatError, "has no 'format' attribute");
  EXPECT_THROW_WITH(ReadTokenFile(SampleText()), FormatError, "signature");
  EXPECT_THROW_WITH(ReadTokenFile(dir / "absent.h5"), IoError, (dir / "absent.h5").string());
}

TEST(ReadTextFile, InvalidUtf8NamesTheFileAndTheByteOffset) {
  TempDir dir;
  std::ofstream(dir / "latin1.txt", std::ios::binary) << "Once upon a time, caf\xe9.\n";
  EXPECT_THROW_MSG(ReadTextFile(dir / "latin1.txt", Newlines::kLf), FormatError,
                   "ReadTextFile: '" + (dir / "latin1.txt").string() +
                       "' is not UTF-8: ill-formed sequence at byte offset 21 (byte 0xe9). HINT: "
                       "convert it, e.g. `iconv -f latin1 -t utf-8`");
  // Keeping the bytes does not make them UTF-8.
  EXPECT_THROW_WITH(ReadTextFile(dir / "latin1.txt", Newlines::kKeep), FormatError,
                    "byte offset 21");
}

TEST(ReadTextFile, CrlfAndCrReadAsLfUnlessKept) {
  TempDir dir;
  std::ofstream(dir / "crlf.txt", std::ios::binary) << "one\r\ntwo\rthree\n";
  EXPECT_EQ(ReadTextFile(dir / "crlf.txt", Newlines::kLf), "one\ntwo\nthree\n");
  EXPECT_EQ(ReadTextFile(dir / "crlf.txt", Newlines::kKeep), "one\r\ntwo\rthree\n");
}

// The CRLF evaluation file gives exactly the ids of its LF copy by default, and other ids (the
// CR bytes as tokens) when kept.
TEST(ReadTextFile, ACrlfFileTokenizesAsItsLfCopy) {
  TempDir dir;
  const auto crlf = DataDir() / "text/tinystories/valid-head30KB.txt";
  const std::string bytes = ReadText(crlf);
  ASSERT_NE(bytes.find("\r\n"), std::string::npos);
  std::ofstream(dir / "lf.txt", std::ios::binary) << CrToLf(bytes);
  const Tokenizer tokenizer(ModelFile());
  const auto lf_ids = TokenizeFile(tokenizer, dir / "lf.txt", Newlines::kKeep);
  EXPECT_EQ(TokenizeFile(tokenizer, crlf, Newlines::kLf), lf_ids);
  EXPECT_NE(TokenizeFile(tokenizer, crlf, Newlines::kKeep), lf_ids);
}

TEST(TokenFile, RecordsNewlinesAndReadsOlderFilesWithout) {
  TempDir dir;
  const std::vector<int32_t> tokens = {1, 5, 6};
  WriteTokenFile(dir / "keep.h5", tokens, TokenFileInfo{"a", "b", 1, "s.txt", "keep"});
  EXPECT_EQ(H5File::Open(dir / "keep.h5").root().GetAttributeString("newlines"), "keep");
  EXPECT_EQ(ReadTokenFile(dir / "keep.h5").info.newlines, "keep");
  WriteMalformed(dir / "old.h5", {});  // the layout before the attribute
  EXPECT_EQ(ReadTokenFile(dir / "old.h5").info.newlines, "");
  WriteTokenFile(dir / "bad.h5", tokens, TokenFileInfo{"a", "b", 1, "s.txt", "crlf"});
  EXPECT_THROW_MSG(ReadTokenFile(dir / "bad.h5"), FormatError,
                   "ReadTokenFile: '" + (dir / "bad.h5").string() +
                       "': attribute newlines = \"crlf\", expected \"lf\" or \"keep\"");
}

ModelVocab Stories260KVocab() { return ReadModelVocab(DataDir() / "stories260K/config.json"); }

TEST(ModelVocab, ReadsVocabSizeAndTheOptionalBosEos) {
  const ModelVocab v = Stories260KVocab();
  EXPECT_EQ(v.config_file, (DataDir() / "stories260K/config.json").string());
  EXPECT_EQ(v.vocab_size, 512);
  EXPECT_EQ(v.bos_token_id, 1);
  EXPECT_EQ(v.eos_token_ids, std::vector<int64_t>{2});
}

TEST(CheckTokenizerMatchesModel, NamesBothFilesAndBothValues) {
  const Tokenizer tokenizer(ModelFile());
  CheckTokenizerMatchesModel(tokenizer, Stories260KVocab());  // the real pair agrees
  ModelVocab v = Stories260KVocab();
  v.config_file = "other/config.json";
  const std::string both = "the tokenizer '" + ModelFile().string() +
                           "' does not belong to the model of 'other/config.json': ";
  v.vocab_size = 32000;
  EXPECT_THROW_MSG(CheckTokenizerMatchesModel(tokenizer, v), FormatError,
                   both + "it has 512 pieces but vocab_size is 32000");
  v.vocab_size = 512;
  v.bos_token_id = 0;
  EXPECT_THROW_MSG(CheckTokenizerMatchesModel(tokenizer, v), FormatError,
                   both + "its BOS id is 1 but bos_token_id is 0");
  v.bos_token_id.reset();
  v.eos_token_ids = {0, 3};
  EXPECT_THROW_MSG(CheckTokenizerMatchesModel(tokenizer, v), FormatError,
                   both + "its EOS id is 2 but eos_token_id is [0, 3]");
  v.eos_token_ids = {};  // a config that declares neither checks only the size
  CheckTokenizerMatchesModel(tokenizer, v);
}

TEST(CheckTokenFileMatchesModel, RefusesAnotherTokenizerAndAnyIdOutsideTheVocabulary) {
  const Tokenizer tokenizer(ModelFile());
  const ModelVocab v = Stories260KVocab();
  TokenFile tf{{1, 5, 511}, {tokenizer.sha256(), "t", 1, "s.txt", "lf"}};
  CheckTokenFileMatchesModel(tf, "t.h5", tokenizer, v);
  tf.tokens = {1, 5, 511, 7, 512, -3};
  EXPECT_THROW_MSG(CheckTokenFileMatchesModel(tf, "t.h5", tokenizer, v), FormatError,
                   "token file 't.h5': id 512 at index 4 is outside [0, vocab_size = 512) of '" +
                       v.config_file + "'");
  tf.tokens = {-1};
  EXPECT_THROW_WITH(CheckTokenFileMatchesModel(tf, "t.h5", tokenizer, v), FormatError,
                    "id -1 at index 0");
  tf.info.tokenizer_sha256 = std::string(64, 'a');
  EXPECT_THROW_MSG(CheckTokenFileMatchesModel(tf, "t.h5", tokenizer, v), FormatError,
                   "token file 't.h5' was made by a tokenizer with sha256 " + std::string(64, 'a') +
                       ", but the model's '" + ModelFile().string() + "' has sha256 " +
                       tokenizer.sha256() +
                       ". HINT: re-run `hiq tokenize --model` with this model");
}

}  // namespace
}  // namespace hiq
