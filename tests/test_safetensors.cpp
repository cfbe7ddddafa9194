// Tests for hiq/io/safetensors.h: dtype tables and conversions (the F16/BF16 arithmetic itself is
// tests/test_fp16.cpp's), the real stories260K files, one hostile file per validation rule (each
// checked by its message), and writer round trips on disk.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <thread>

#include "hiq/base/error.h"  // FormatError, IoError
#include "hiq/base/fp16.h"   // F16ToFloat, FloatToF16, BF16ToFloat, FloatToBF16
#include "hiq/io/safetensors.h"
#include "test_util.h"  // TempDir, DataDir

namespace hiq {
namespace {

using test::DataDir;
using test::TempDir;

constexpr int kRealTensors = 47;  // stories260K: embed + 5 x 9 + final norm (tied head)
constexpr double kSumTolerance = 1e-9;

std::filesystem::path ModelFile() { return DataDir() / "stories260K" / "model.safetensors"; }
std::filesystem::path OracleFile() {
  return DataDir() / "reference" / "stories260K-sample64.safetensors";
}

std::string ReadAll(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteAll(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

// A file image: 8-byte little-endian header length, the header, then data_bytes bytes.
std::string Image(const std::string& header, size_t data_bytes, uint64_t length_override = 0) {
  uint64_t n = length_override ? length_override : header.size();
  std::string image(8, '\0');
  std::memcpy(image.data(), &n, 8);
  return image + header + std::string(data_bytes, '\x01');
}

std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Runs `statement`, expects E, and checks that the message holds every part.
template <typename E>
void ExpectThrowWithAll(const std::function<void()>& statement,
                        const std::vector<std::string>& parts) {
  try {
    statement();
    ADD_FAILURE() << "expected an exception containing '" << parts.front() << "'";
  } catch (const E& e) {
    for (const std::string& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << part;
    }
  }
}

// A hostile file must be refused the same way by all three entry points: the mapped reader,
// the header-only reader and the in-memory parser. Every message names the file.
void ExpectBadFile(const std::string& bytes, std::vector<std::string> parts,
                   const SafetensorsLimits& limits = {}) {
  TempDir dir("hiq-st");
  const std::filesystem::path path = dir / "bad.safetensors";
  WriteAll(path, bytes);
  parts.push_back(path.string());
  ExpectThrowWithAll<FormatError>([&] { SafetensorsFile file(path, limits); }, parts);
  ExpectThrowWithAll<FormatError>([&] { ReadSafetensorsHeader(path, limits); }, parts);
  parts.back() = "mem.safetensors";
  ExpectThrowWithAll<FormatError>(
      [&] { ParseSafetensorsImage(AsBytes(bytes), "mem.safetensors", limits); }, parts);
}

// One F32 tensor "w" of shape [2] at [0, 8], the usual well-formed start for the cases below.
const std::string kW = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

// ---- dtypes and conversions -------------------------------------------------------------------

TEST(DType, NamesAndSizesRoundTrip) {
  for (DType d : {DType::kF64, DType::kF32, DType::kF16, DType::kBF16, DType::kF8E4M3,
                  DType::kF8E5M2, DType::kI64, DType::kI32, DType::kI16, DType::kI8, DType::kU64,
                  DType::kU32, DType::kU16, DType::kU8, DType::kBool}) {
    ASSERT_TRUE(DTypeFromName(DTypeName(d)).has_value()) << DTypeName(d);
    EXPECT_EQ(*DTypeFromName(DTypeName(d)), d);
  }
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF64), 8u);
  EXPECT_EQ(DTypeSize(DType::kBool), 1u);
  EXPECT_FALSE(DTypeFromName("F4").has_value());
  EXPECT_FALSE(DTypeFromName("f32").has_value());  // names are case-sensitive, as in the spec
}

TEST(ConvertToFloat, RefusesIntegerDTypesAndSizeMismatch) {
  std::vector<std::byte> bytes(8);
  std::vector<float> out(2);
  EXPECT_THROW_WITH(ConvertToFloat(DType::kI32, bytes, out), FormatError, "I32");
  EXPECT_THROW_WITH(ConvertToFloat(DType::kF16, bytes, out), FormatError, "8 bytes of F16");
}

// ---- the real files ---------------------------------------------------------------------------

TEST(SafetensorsFile, ReadsTheRealModel) {
  SafetensorsFile file(ModelFile());
  ASSERT_EQ(file.tensors().size(), static_cast<size_t>(kRealTensors));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  uint64_t pos = 0;
  for (const TensorInfo& t : file.tensors()) {  // sorted by begin and contiguous
    EXPECT_EQ(t.begin, pos) << t.name;
    EXPECT_EQ(t.bytes(), static_cast<uint64_t>(t.numel()) * 4) << t.name;
    pos = t.end;
  }
  EXPECT_EQ(file.Find("lm_head.weight"), nullptr);  // tied embeddings

  const TensorInfo* embed = file.Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(embed->dtype, DType::kF32);
  const std::vector<float> values = file.ReadFloat("model.embed_tokens.weight");
  ASSERT_EQ(values.size(), 512u * 64u);
  // Reference values read independently with numpy.frombuffer.
  EXPECT_EQ(values[0], -0.29474878311157227f);
  EXPECT_EQ(values[1], 0.5618956089019775f);
  EXPECT_EQ(values[2], 0.1754225343465805f);
  EXPECT_EQ(values.back(), -0.424032598733902f);
  double sum = 0;
  for (float v : values) sum += static_cast<double>(v);
  EXPECT_NEAR(sum, -752.3677446640068, kSumTolerance);
  std::vector<float> down(64 * 172);
  file.ReadFloatInto("model.layers.4.mlp.down_proj.weight", down);
  EXPECT_EQ(down.back(), -0.0035068716388195753f);
}

// The lines of /proc/self/maps that map `file`: what this process has of it in its address space.
int MappingsOf(const std::filesystem::path& file) {
  std::ifstream maps("/proc/self/maps");
  const std::string path = std::filesystem::canonical(file).string();
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.size() >= path.size() &&
        line.compare(line.size() - path.size(), path.size(), path) == 0)
      ++n;
  }
  return n;
}

TEST(SafetensorsFile, ReadsWeightsWithoutMappingTheFileAndMapsOnlyTheTensorAskedFor) {
  SafetensorsFile file(ModelFile());
  EXPECT_EQ(MappingsOf(ModelFile()), 0);  // the header is read, nothing is mapped
  std::vector<float> down(64 * 172);
  file.ReadFloatInto("model.layers.4.mlp.down_proj.weight", down);
  EXPECT_EQ(MappingsOf(ModelFile()), 0);
  EXPECT_EQ(down.back(), -0.0035068716388195753f);

  const TensorInfo* norm = file.Find("model.norm.weight");
  ASSERT_NE(norm, nullptr);
  const std::span<const std::byte> bytes = file.Bytes(*norm);
  EXPECT_EQ(MappingsOf(ModelFile()), 1);
  EXPECT_EQ(bytes.size(), norm->bytes());
  EXPECT_EQ(file.Bytes(*norm).data(), bytes.data());  // mapped once, then reused
  std::vector<float> from_map(64), read(64);
  ConvertToFloat(norm->dtype, bytes, from_map);
  file.ReadFloatInto("model.norm.weight", read);
  EXPECT_EQ(from_map, read);
  EXPECT_EQ(file.TouchedTensors(),
            (std::vector<std::string>{"model.layers.4.mlp.down_proj.weight", "model.norm.weight"}));
}

TEST(SafetensorsFile, HeaderOnlyReadMatchesTheMappedFile) {
  SafetensorsFile file(ModelFile());
  const SafetensorsLayout layout = ReadSafetensorsHeader(ModelFile());
  EXPECT_EQ(layout.data_begin, 8u + 4856u);
  ASSERT_EQ(layout.header.tensors.size(), file.tensors().size());
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    EXPECT_EQ(layout.header.tensors[i].name, file.tensors()[i].name);
    EXPECT_EQ(layout.header.tensors[i].shape, file.tensors()[i].shape);
    EXPECT_EQ(layout.header.tensors[i].begin, file.tensors()[i].begin);
  }
  EXPECT_EQ(layout.header.metadata, file.metadata());
}

TEST(SafetensorsFile, ReadsTheOracleTokensAsInt32) {
  SafetensorsFile file(OracleFile());
  const std::vector<int32_t> tokens = file.ReadInt32("tokens");
  ASSERT_EQ(tokens.size(), 65u);
  EXPECT_EQ(std::vector<int32_t>(tokens.begin(), tokens.begin() + 10),
            (std::vector<int32_t>{1, 410, 13, 441, 416, 331, 407, 261, 378, 383}));
  EXPECT_EQ(file.ReadFloat("loss"), std::vector<float>{1.2653074264526367f});
  EXPECT_EQ(file.Find("logits")->shape, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(file.metadata().at("text"), "sample.txt");
}

TEST(SafetensorsFile, WrongDTypeOrMissingTensorNamesFileAndTensor) {
  SafetensorsFile file(OracleFile());
  const std::string path = OracleFile().string();
  ExpectThrowWithAll<FormatError>([&] { file.ReadFloat("tokens"); },
                                  {path, "'tokens'", "dtype I32", "expected F32, F16 or BF16"});
  ExpectThrowWithAll<FormatError>([&] { file.ReadInt32("logits"); },
                                  {path, "'logits'", "dtype F32", "expected I32"});
  ExpectThrowWithAll<FormatError>([&] { file.ReadFloat("no.such.tensor"); },
                                  {path, "no tensor 'no.such.tensor'"});
  std::vector<float> small(3);
  ExpectThrowWithAll<FormatError>([&] { file.ReadFloatInto("logits", small); },
                                  {path, "'logits'", "[64, 512] = 32768 elements", "holds 3"});
}

TEST(SafetensorsFile, ConcurrentReadsAgree) {
  const SafetensorsFile file(ModelFile());
  std::vector<std::vector<float>> expected;
  for (const TensorInfo& t : file.tensors()) expected.push_back(file.ReadFloat(t.name));
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < file.tensors().size(); ++i) {
          if (file.ReadFloat(file.tensors()[i].name) != expected[i]) ++mismatches[k];
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(mismatches, std::vector<int>(4, 0));
}

TEST(SafetensorsFile, MovedFromFileKeepsTheMappingAlive) {
  SafetensorsFile a(ModelFile());
  const std::vector<float> before = a.ReadFloat("model.norm.weight");
  SafetensorsFile b(std::move(a));
  SafetensorsFile c(OracleFile());
  c = std::move(b);
  EXPECT_EQ(c.ReadFloat("model.norm.weight"), before);
  EXPECT_EQ(c.path(), ModelFile());
}

// ---- hostile files: one per rule, each by its message -----------------------------------------

TEST(BadSafetensors, TruncatedFile) {
  ExpectBadFile(std::string("\x10\x00\x00", 3), {"file is 3 bytes", "truncated"});
  ExpectBadFile("", {"file is 0 bytes", "truncated"});
}

TEST(BadSafetensors, HeaderLengthBeyondTheFile) {
  ExpectBadFile(Image("{" + kW + "}", 8, 1000),
                {"header length 1000 bytes extends beyond the end of the file"});
}

TEST(BadSafetensors, HeaderAboveTheCap) {
  const std::string header = "{" + kW + "}";
  ExpectBadFile(Image(header, 8), {"header length", "above the limit of 32 bytes"},
                SafetensorsLimits{32});
  // The default cap (100 MiB) is checked before the length is compared with the file.
  ExpectBadFile(Image(header, 8, uint64_t{200} << 20), {"above the limit of 104857600 bytes"});
  constexpr char kZip[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00 rest of a zip";
  ExpectBadFile(std::string(kZip, sizeof(kZip) - 1), {"above the limit", "zip archive"});
}

TEST(BadSafetensors, HeaderNotJson) {
  ExpectBadFile(Image("{\"w\": not json", 0), {"not valid JSON", "parse error"});
  ExpectBadFile(Image("", 0), {"not valid JSON"});
  ExpectBadFile(Image("\xEF\xBB\xBF{}", 0), {"byte-order mark"});
  ExpectBadFile(Image("{\"w\xff\":1}", 0), {"not valid JSON"});  // not UTF-8
}

TEST(BadSafetensors, HeaderJsonButNotAnObject) {
  ExpectBadFile(Image("[1, 2, 3]", 0), {"header is array [1,2,3]", "expected a JSON object"});
  ExpectBadFile(Image("{\"w\": [1]}", 0), {"tensor 'w' is array", "expected an object"});
}

TEST(BadSafetensors, TooDeeplyNested) {
  ExpectBadFile(Image(std::string(100, '[') + std::string(100, ']'), 0), {"nests deeper"});
}

TEST(BadSafetensors, NonStringMetadata) {
  ExpectBadFile(Image("{\"__metadata__\":{\"epoch\":3}," + kW + "}", 8),
                {"__metadata__ key 'epoch' is number 3", "expected a string"});
  ExpectBadFile(Image("{\"__metadata__\":[]," + kW + "}", 8), {"__metadata__ is array"});
}

TEST(BadSafetensors, UnknownDType) {
  ExpectBadFile(Image(R"({"w":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", 1),
                {"tensor 'w': unknown dtype 'F4'", "expected one of F64, F32"});
  ExpectBadFile(Image(R"({"w":{"dtype":32,"shape":[2],"data_offsets":[0,8]}})", 8),
                {"tensor 'w': dtype is number 32"});
}

TEST(BadSafetensors, ShapeEntriesMustBeNonNegativeIntegers) {
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
                {"tensor 'w': shape[0] is number -2", "(negative)"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8),
                {"tensor 'w': shape[0] is number 2.0", "expected a non-negative integer"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8),
                {"tensor 'w': shape[0] is string"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8),
                {"tensor 'w': shape is number 2"});
}

TEST(BadSafetensors, ShapeTimesDTypeMustEqualTheByteSpan) {
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                {"tensor 'w': shape [3] x F32 (4 bytes) = 12 bytes", "span 8 bytes"});
  ExpectBadFile(
      Image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
      {"tensor 'w': shape [4294967296, 4294967296] x F32 overflows"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                      R"("data_offsets":[0,8]}})",
                      8),
                {"tensor 'w'", "overflows"});  // fits in u64, not once multiplied by 4
}

TEST(BadSafetensors, OffsetsOutOfBoundsOrReversed) {
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
                {"tensor 'w': data_offsets [0, 16] out of bounds", "data section is 8 bytes"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8),
                {"tensor 'w': data_offsets [8, 0] end before begin"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
                {"tensor 'w': data_offsets is array [0]", "expected [begin, end]"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,-8]}})", 8),
                {"tensor 'w': data_offsets[1] is number -8"});
}

TEST(BadSafetensors, OverlappingTensors) {
  ExpectBadFile(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12),
                {"tensor 'b' [4, 12] overlaps tensor 'a' [0, 8]"});
}

TEST(BadSafetensors, GappedTensors) {
  ExpectBadFile(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                      20),
                {"gap of 4 bytes before tensor 'b'", "tensor 'a' ends at 8", "contiguous"});
  ExpectBadFile(Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12),
                {"gap of 4 bytes before tensor 'a'", "starts at 0"});
}

TEST(BadSafetensors, TrailingBytes) {
  ExpectBadFile(Image("{" + kW + "}", 12),
                {"4 trailing bytes after the last tensor 'w' (ends at 8)", "data section is 12"});
  ExpectBadFile(Image("{}", 5), {"5 trailing bytes after an empty tensor list"});
}

TEST(BadSafetensors, MissingField) {
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","shape":[2]}})", 8),
                {"tensor 'w' has no \"data_offsets\""});
}

TEST(BadSafetensors, DuplicateTensorName) {
  ExpectBadFile(Image("{" + kW + "," + kW + "}", 8), {"duplicate tensor name", "'w'"});
  ExpectBadFile(Image(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8),
                {"duplicate key 'dtype' inside 'w'"});
}

TEST(BadSafetensors, GitLfsPointerInPlaceOfWeights) {
  const std::string pointer =
      "version https://git-lfs.github.com/spec/v1\n"
      "oid sha256:407a7c581bdd66972383ce9ad24857713fb98786d06ea564a2fe9b34ebe77dfd\n"
      "size 1044992\n";
  ExpectBadFile(pointer, {"Git LFS pointer of a 1044992-byte file", "HINT", "git lfs pull"});
}

TEST(BadSafetensors, NotARegularFileOrMissing) {
  TempDir dir("hiq-st");
  ExpectThrowWithAll<IoError>([&] { SafetensorsFile file(dir.path()); },
                              {dir.path().string(), "not a regular file"});
  ExpectThrowWithAll<IoError>([&] { SafetensorsFile file(dir / "absent.safetensors"); },
                              {"absent.safetensors", "cannot open"});
  ExpectThrowWithAll<IoError>([&] { ReadSafetensorsHeader(dir / "absent.safetensors"); },
                              {"absent.safetensors", "cannot open"});
}

TEST(ParseSafetensorsHeader, AcceptsEmptyAndScalarTensorsAndTrailingSpaces) {
  const SafetensorsHeader h =
      ParseSafetensorsHeader(R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                             R"("e":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]},)"
                             R"("b":{"dtype":"BOOL","shape":[3],"data_offsets":[8,11]}}     )",
                             11, "mem");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "s");
  EXPECT_EQ(h.tensors[0].numel(), 1);
  EXPECT_EQ(h.tensors[1].name, "e");
  EXPECT_EQ(h.tensors[1].numel(), 0);
  EXPECT_EQ(h.tensors[2].dtype, DType::kBool);
}

TEST(ParseSafetensorsImage, FuzzSeedsAreWhatTheirNamesSay) {
  // tests/fuzz/corpus: valid_* files are accepted, the others refused.
  int n_valid = 0, n_bad = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(test::SourceDir() / "tests" / "fuzz" / "corpus")) {
    const std::string bytes = ReadAll(entry.path());
    const std::string name = entry.path().filename().string();
    if (name.starts_with("valid_")) {
      EXPECT_NO_THROW(ParseSafetensorsImage(AsBytes(bytes), name)) << name;
      ++n_valid;
    } else {
      EXPECT_THROW(ParseSafetensorsImage(AsBytes(bytes), name), FormatError) << name;
      ++n_bad;
    }
  }
  EXPECT_GE(n_valid, 3);
  EXPECT_GE(n_bad, 3);
}

// ---- writer -----------------------------------------------------------------------------------

std::vector<float> Ramp(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  return v;
}

TEST(WriteSafetensors, RoundTripsF32F16BF16AndMetadata) {
  TempDir dir("hiq-st");
  const std::filesystem::path path = dir / "out.safetensors";
  const std::vector<float> a = Ramp(6), b = Ramp(5), c = Ramp(7);
  const std::vector<std::byte> a32 = EncodeFloats(a, DType::kF32, "a");
  const std::vector<std::byte> b16 = EncodeFloats(b, DType::kF16, "b");
  const std::vector<std::byte> cbf = EncodeFloats(c, DType::kBF16, "c");
  const int32_t ids[3] = {7, -1, 1 << 30};
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode"}};
  WriteSafetensors(path,
                   {{"half", DType::kF16, {5}, b16},
                    {"full", DType::kF32, {2, 3}, a32},
                    {"brain", DType::kBF16, {7}, cbf},
                    {"ids", DType::kI32, {3}, std::as_bytes(std::span(ids))}},
                   metadata);

  SafetensorsFile file(path);
  EXPECT_EQ(file.metadata(), metadata);
  EXPECT_EQ(file.ReadFloat("full"), a);
  EXPECT_EQ(file.Find("full")->shape, (std::vector<int64_t>{2, 3}));
  const std::vector<float> half = file.ReadFloat("half");
  const std::vector<float> brain = file.ReadFloat("brain");
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(half[i], F16ToFloat(FloatToF16(b[i])));
  for (size_t i = 0; i < c.size(); ++i) EXPECT_EQ(brain[i], BF16ToFloat(FloatToBF16(c[i])));
  EXPECT_EQ(file.ReadInt32("ids"), (std::vector<int32_t>{7, -1, 1 << 30}));
  // Larger dtypes first, each aligned to its element size.
  for (const TensorInfo& t : file.tensors()) EXPECT_EQ(t.begin % DTypeSize(t.dtype), 0u) << t.name;
  EXPECT_EQ(file.tensors().front().dtype, DType::kF32);

  // The reference pads the header with spaces to a multiple of 8.
  const std::string bytes = ReadAll(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  // Nothing but the file itself is left in the directory.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 1);
}

TEST(WriteSafetensors, ReplacesAnExistingFileAndWritesEmptyAndScalarTensors) {
  TempDir dir("hiq-st");
  const std::filesystem::path path = dir / "out.safetensors";
  WriteAll(path, "old contents");
  const float scalar = 2.5f;
  WriteSafetensors(path, {{"scalar", DType::kF32, {}, std::as_bytes(std::span(&scalar, 1))},
                          {"empty", DType::kF16, {0, 4}, {}}});
  SafetensorsFile file(path);
  EXPECT_EQ(file.ReadFloat("scalar"), std::vector<float>{2.5f});
  EXPECT_TRUE(file.ReadFloat("empty").empty());
  EXPECT_TRUE(file.metadata().empty());
}

TEST(WriteSafetensors, RefusesBadInputAndLeavesNothingBehind) {
  TempDir dir("hiq-st");
  const std::filesystem::path path = dir / "out.safetensors";
  const std::vector<std::byte> eight(8);
  ExpectThrowWithAll<FormatError>(
      [&] {
        WriteSafetensors(path, {{"w", DType::kF32, {3}, eight}});
      },
      {path.string(), "tensor 'w'", "needs 12 bytes, data holds 8"});
  ExpectThrowWithAll<FormatError>(
      [&] {
        WriteSafetensors(path, {{"w", DType::kF32, {2}, eight}, {"w", DType::kF32, {2}, eight}});
      },
      {"tensor 'w' is given twice"});
  ExpectThrowWithAll<FormatError>(
      [&] {
        WriteSafetensors(path, {{"__metadata__", DType::kF32, {2}, eight}});
      },
      {"reserved"});
  ExpectThrowWithAll<FormatError>(
      [&] {
        WriteSafetensors(path, {{"w", DType::kF32, {-2}, eight}});
      },
      {"negative dim"});
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()), {}), 0);
  ExpectThrowWithAll<IoError>(
      [&] { WriteSafetensors(dir / "no" / "such" / "dir.safetensors", {}); },
      {"cannot create a temporary file", "dir.safetensors"});
}

TEST(SafetensorsFile, ReadFloatRefusesNanAndInfinityNamingTheTensorAndTheIndex) {
  TempDir dir("hiq-st");
  std::vector<float> w(12, 0.5f);
  w[6] = std::numeric_limits<float>::quiet_NaN();  // row 1, column 2 of (3, 4)
  const std::vector<std::byte> f32 = EncodeFloats(w, DType::kF32, "w");
  std::vector<float> h(4, 1.0f);
  h[3] = std::numeric_limits<float>::infinity();
  const std::vector<std::byte> f16 = EncodeFloats(h, DType::kF16, "h");
  WriteSafetensors(dir / "bad.safetensors",
                   {{"w", DType::kF32, {3, 4}, f32}, {"h", DType::kF16, {4}, f16}});
  const SafetensorsFile file(dir / "bad.safetensors");
  EXPECT_THROW_MSG(file.ReadFloat("w"), FormatError,
                   "SafetensorsFile::ReadFloat: " + (dir / "bad.safetensors").string() +
                       ": tensor 'w' holds nan at index [1, 2] (F32); weights must be finite");
  EXPECT_THROW_MSG(file.ReadFloat("h"), FormatError,
                   "SafetensorsFile::ReadFloat: " + (dir / "bad.safetensors").string() +
                       ": tensor 'h' holds inf at index [3] (F16); weights must be finite");
}

TEST(EncodeFloats, RefusesAFiniteValueThatOverflowsTheHalfFormats) {
  const std::vector<float> big = {1.0f, 70000.0f};
  EXPECT_THROW_MSG(EncodeFloats(big, DType::kF16, "lm_head.weight"), FormatError,
                   "EncodeFloats: lm_head.weight: the value 70000 at flat index 1 overflows F16 "
                   "(largest finite 65504)");
  EXPECT_NO_THROW(EncodeFloats(big, DType::kBF16, "lm_head.weight"));
  const std::vector<float> huge = {3.4e38f};
  EXPECT_THROW_WITH(EncodeFloats(huge, DType::kBF16, "x"), FormatError, "overflows BF16");
  // The largest half itself, and values that round down to it, are finite.
  const std::vector<float> edge = {65504.0f, 65519.0f, -65504.0f};
  EXPECT_NO_THROW(EncodeFloats(edge, DType::kF16, "edge"));
}

TEST(WriteSafetensors, RewritesTheRealModelByteForByteReadable) {
  // Read every tensor of the real model, write it again, read it back: identical values.
  TempDir dir("hiq-st");
  SafetensorsFile original(ModelFile());
  std::vector<TensorToWrite> tensors;
  for (const TensorInfo& t : original.tensors()) {
    tensors.push_back({t.name, t.dtype, t.shape, original.Bytes(t)});
  }
  WriteSafetensors(dir / "copy.safetensors", tensors, original.metadata());
  SafetensorsFile copy(dir / "copy.safetensors");
  ASSERT_EQ(copy.tensors().size(), original.tensors().size());
  for (const TensorInfo& t : original.tensors()) {
    EXPECT_EQ(copy.ReadFloat(t.name), original.ReadFloat(t.name)) << t.name;
  }
  EXPECT_EQ(copy.metadata(), original.metadata());
}

}  // namespace
}  // namespace hiq
