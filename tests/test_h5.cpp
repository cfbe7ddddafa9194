// The HDF5 layer, through real files in a temp dir: round trips of every dtype, attributes,
// groups and external links, the atomic create/commit protocol, and errors by message.
#include <hdf5.h>  // only to write a file as a third-party writer would
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "hiq/base/error.h"  // IoError, FormatError, ConfigError
#include "hiq/base/sha256.h"
#include "hiq/io/h5.h"
#include "test_util.h"  // TempDir, EXPECT_THROW_WITH

namespace hiq {
namespace {

using test::TempDir;

// Values that exercise each type's range: negatives, the extremes and fractions.
template <H5Element T>
std::vector<T> SampleValues(size_t n) {
  std::vector<T> values(n);
  for (size_t i = 0; i < n; ++i) {
    if constexpr (std::is_floating_point_v<T>) {
      values[i] = static_cast<T>((static_cast<double>(i) - 3.0) * 0.37);
    } else {
      values[i] = static_cast<T>(std::numeric_limits<T>::max() - static_cast<T>(i * 13));
    }
  }
  if (n > 0) values[0] = std::numeric_limits<T>::lowest();
  return values;
}

template <H5Element T>
void ExpectRoundTrip(const std::filesystem::path& file, const std::string& type_name) {
  const std::vector<T> values = SampleValues<T>(24);
  {
    H5File out = H5File::Create(file);
    out.root().WriteDataset<T>("x", values, {2, 3, 4});
    out.Commit();
  }
  H5File in = H5File::Open(file);
  const H5Array<T> back = in.root().ReadDataset<T>("x");
  EXPECT_EQ(back.dims, (std::vector<uint64_t>{2, 3, 4})) << type_name;
  EXPECT_EQ(back.data, values) << type_name;
  EXPECT_EQ(in.root().DatasetTypeName("x"), type_name);
}

TEST(H5, EveryDtypeRoundTripsExactly) {
  TempDir dir;
  ExpectRoundTrip<float>(dir / "f32.h5", "float32");
  ExpectRoundTrip<double>(dir / "f64.h5", "float64");
  ExpectRoundTrip<int32_t>(dir / "i32.h5", "int32");
  ExpectRoundTrip<int64_t>(dir / "i64.h5", "int64");
  ExpectRoundTrip<uint8_t>(dir / "u8.h5", "uint8");
  ExpectRoundTrip<uint16_t>(dir / "u16.h5", "uint16");
  ExpectRoundTrip<uint32_t>(dir / "u32.h5", "uint32");
  ExpectRoundTrip<uint64_t>(dir / "u64.h5", "uint64");
}

TEST(H5, ScalarAndEmptyDatasetsRoundTrip) {
  TempDir dir;
  {
    H5File out = H5File::Create(dir / "f.h5");
    H5Group root = out.root();
    const double pi = 3.25;
    root.WriteDataset<double>("scalar", std::span<const double>(&pi, 1), {});
    root.WriteDataset<int32_t>("empty", {}, {0, 5});
    out.Commit();
  }
  H5Group root = H5File::Open(dir / "f.h5").root();
  const H5Array<double> scalar = root.ReadDataset<double>("scalar");
  EXPECT_TRUE(scalar.dims.empty());
  EXPECT_EQ(scalar.data, std::vector<double>{3.25});
  const H5Array<int32_t> empty = root.ReadDataset<int32_t>("empty");
  EXPECT_EQ(empty.dims, (std::vector<uint64_t>{0, 5}));
  EXPECT_TRUE(empty.data.empty());
}

TEST(H5, DeflateCompressesAndRoundTrips) {
  TempDir dir;
  // Highly compressible: a slow ramp of small integers, 4 MiB raw.
  std::vector<int32_t> values(1 << 20);
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<int32_t>(i / 4096);
  {
    H5File out = H5File::Create(dir / "packed.h5");
    out.root().WriteDataset<int32_t>("ramp", values, {1024, 1024}, {.deflate_level = 6});
    out.Commit();
  }
  constexpr uint64_t kMaxCompressedBytes = 256 * 1024;  // raw is 4 MiB
  EXPECT_LT(std::filesystem::file_size(dir / "packed.h5"), kMaxCompressedBytes);
  const H5Array<int32_t> back = H5File::Open(dir / "packed.h5").root().ReadDataset<int32_t>("ramp");
  EXPECT_EQ(back.dims, (std::vector<uint64_t>{1024, 1024}));
  EXPECT_EQ(back.data, values);
}

TEST(H5, DeflateLevelOutsideRangeIsConfigError) {
  TempDir dir;
  H5File out = H5File::Create(dir / "f.h5");
  const std::vector<float> values(4, 1.0f);
  EXPECT_THROW_WITH(out.root().WriteDataset<float>("x", values, {4}, {.deflate_level = 12}),
                    ConfigError, "deflate level 12 is outside 0..9");
}

TEST(H5, SerialSlabsAssembleOneDataset) {
  TempDir dir;
  const std::vector<uint16_t> all = SampleValues<uint16_t>(5 * 3);
  {
    H5File out = H5File::Create(dir / "f.h5");
    H5Group root = out.root();
    const std::span<const uint16_t> span(all);
    root.WriteDatasetSlab<uint16_t>("x", span.subspan(6, 9), {5, 3}, 2);  // rows 2..4
    root.WriteDatasetSlab<uint16_t>("x", span.subspan(0, 6), {5, 3}, 0);  // rows 0..1
    root.WriteDatasetSlab<uint16_t>("x", {}, {5, 3}, 5);                  // no rows
    EXPECT_THROW_WITH(root.WriteDatasetSlab<uint16_t>("x", span.subspan(0, 6), {5, 3}, 4),
                      FormatError, "rows [4, 6) exceed the 5 rows of shape [5, 3]");
    EXPECT_THROW_WITH(root.WriteDatasetSlab<uint16_t>("x", span.subspan(0, 4), {5, 3}, 0),
                      FormatError, "4 elements are not whole rows of 3");
    EXPECT_THROW_WITH(root.WriteDatasetSlab<float>("x", {}, {5, 3}, 0), FormatError,
                      "it exists as uint16 [5, 3], the slab expects float32 [5, 3]");
    out.Commit();
  }
  EXPECT_EQ(H5File::Open(dir / "f.h5").root().ReadDataset<uint16_t>("x").data, all);
}

TEST(H5, AttributesRoundTripAndOverwrite) {
  TempDir dir;
  const std::vector<int64_t> ints = {-5, 0, int64_t{1} << 40};
  const std::vector<double> doubles = {0.5, -1e300};
  {
    H5File out = H5File::Create(dir / "f.h5");
    H5Group root = out.root();
    root.SetAttribute("name", "stories260K \xce\xb1");  // UTF-8 survives
    root.SetAttribute("empty", "");
    root.SetAttribute("count", int64_t{-7});
    root.SetAttribute("small", 3);  // any integer type stores as int64
    root.SetAttribute("ratio", 0.125);
    root.SetAttribute("ints", std::span<const int64_t>(ints));
    root.SetAttribute("doubles", std::span<const double>(doubles));
    root.SetAttribute("none", std::span<const int64_t>());
    root.SetAttribute("count", int64_t{8});      // overwrite, even with the same type
    root.SetAttribute("ratio", "now a string");  // or another type
    H5Group sub = root.CreateGroup("sub");
    sub.SetAttribute("name", "inner");
    out.Commit();
  }
  H5Group root = H5File::Open(dir / "f.h5").root();
  EXPECT_EQ(root.GetAttributeString("name"), "stories260K \xce\xb1");
  EXPECT_EQ(root.GetAttributeString("empty"), "");
  EXPECT_EQ(root.GetAttributeInt("count"), 8);
  EXPECT_EQ(root.GetAttributeInt("small"), 3);
  EXPECT_EQ(root.GetAttributeString("ratio"), "now a string");
  EXPECT_EQ(root.GetAttributeInts("ints"), ints);
  EXPECT_EQ(root.GetAttributeDoubles("doubles"), doubles);
  EXPECT_TRUE(root.GetAttributeInts("none").empty());
  EXPECT_TRUE(root.HasAttribute("name"));
  EXPECT_FALSE(root.HasAttribute("absent"));
  EXPECT_EQ(root.OpenGroup("sub").GetAttributeString("name"), "inner");
}

TEST(H5, ScalarDoubleAttributeReadsBack) {
  TempDir dir;
  {
    H5File out = H5File::Create(dir / "f.h5");
    out.root().SetAttribute("eps", 1e-5);
    out.Commit();
  }
  EXPECT_EQ(H5File::Open(dir / "f.h5").root().GetAttributeDouble("eps"), 1e-5);
}

// h5py stores numpy bytes as fixed-length NULLPAD strings, filling every byte: all must be read.
TEST(H5, ReadsFixedLengthStringsAsH5pyWritesThem) {
  TempDir dir;
  const std::string file = (dir / "foreign.h5").string();
  const hid_t f = H5Fcreate(file.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, 5);
  H5Tset_strpad(type, H5T_STR_NULLPAD);
  const hid_t space = H5Screate(H5S_SCALAR);
  const hid_t attr = H5Acreate2(f, "fixed", type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(H5Awrite(attr, type, "fixed"), 0);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
  H5Fclose(f);
  EXPECT_EQ(H5File::Open(file).root().GetAttributeString("fixed"), "fixed");
}

TEST(H5, AttributeErrorsNameTheAttributeAndTheFile) {
  TempDir dir;
  H5File out = H5File::Create(dir / "f.h5");
  H5Group root = out.root();
  root.SetAttribute("format", "hiq-tokens");
  const std::vector<int64_t> pair = {1, 2};
  root.SetAttribute("pair", std::span<const int64_t>(pair));
  const std::string file = (dir / "f.h5").string();
  EXPECT_THROW_MSG(root.GetAttributeInt("missing"), FormatError,
                   "H5Group::GetAttributeInt: no attribute 'missing' on '/' in '" + file + "'");
  EXPECT_THROW_MSG(root.GetAttributeInt("format"), FormatError,
                   "H5Group::GetAttributeInt: attribute 'format' on '/' in '" + file +
                       "' is string, expected an integer");
  EXPECT_THROW_MSG(
      root.GetAttributeInt("pair"), FormatError,
      "H5Group::GetAttributeInt: attribute '/@pair' in '" + file + "' has 2 elements, expected 1");
}

TEST(H5, GroupsNestListAndRefuseDuplicates) {
  TempDir dir;
  H5File out = H5File::Create(dir / "f.h5");
  H5Group root = out.root();
  H5Group layers = root.CreateGroup("layers");
  layers.CreateGroup("b");
  layers.CreateGroup("a");
  const std::vector<float> one = {1.0f};
  root.WriteDataset<float>("layers/a/w", one, {1});  // through a path
  root.WriteDataset<float>("deep/er/x", one, {1});   // parents made as needed
  EXPECT_EQ(root.ListNames(), (std::vector<std::string>{"deep", "layers"}));
  EXPECT_EQ(layers.ListNames(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(root.Has("layers/a/w"));
  EXPECT_TRUE(root.Has("/deep/er"));
  EXPECT_FALSE(root.Has("layers/c"));
  EXPECT_FALSE(root.Has("nowhere/at/all"));
  EXPECT_FALSE(root.Has("layers/a/w/below_a_dataset"));
  EXPECT_EQ(root.OpenGroup("layers/a").path(), "/layers/a");
  EXPECT_EQ(layers.OpenGroup("a").ReadDataset<float>("w").data, one);
  EXPECT_EQ(root.DatasetDims("deep/er/x"), std::vector<uint64_t>{1});

  const std::string file = (dir / "f.h5").string();
  EXPECT_THROW_MSG(root.CreateGroup("layers"), FormatError,
                   "H5Group::CreateGroup: '/layers' already exists in '" + file + "'");
  EXPECT_THROW_MSG(layers.WriteDataset<float>("a/w", one, {1}), FormatError,
                   "H5Group::WriteDataset: '/layers/a/w' already exists in '" + file + "'");
  EXPECT_THROW_MSG(root.OpenGroup("layers/a/w"), FormatError,
                   "H5Group::OpenGroup: '/layers/a/w' in '" + file + "' is not a group");
  EXPECT_THROW_MSG(root.ReadDataset<float>("layers"), FormatError,
                   "H5Group::ReadDataset: '/layers' in '" + file + "' is not a dataset");
}

TEST(H5, ExternalLinksReadThroughTheRootFromAnyWorkingDirectory) {
  TempDir dir;
  std::filesystem::create_directories(dir / "shards");
  const std::vector<float> w0 = {1, 2, 3, 4}, w1 = {5, 6};
  for (int rank = 0; rank < 2; ++rank) {
    H5File shard = H5File::Create(dir / "shards" / ("rank-" + std::to_string(rank) + ".h5"));
    H5Group layer = shard.root().CreateGroup("layer" + std::to_string(rank));
    layer.WriteDataset<float>("w", rank == 0 ? w0 : w1, {rank == 0 ? 2u : 1u, 2});
    layer.SetAttribute("rank", rank);
    shard.Commit();
  }
  {
    H5File model = H5File::Create(dir / "model.h5");
    H5Group layers = model.root().CreateGroup("layers");
    layers.CreateExternalLink("0", "shards/rank-0.h5", "/layer0");
    layers.CreateExternalLink("1", "shards/rank-1.h5", "/layer1");
    layers.CreateExternalLink("dangling", "shards/missing.h5", "/x");
    model.Commit();
  }
  // HDF5 resolves the relative target against the root file's directory, not the cwd.
  TempDir elsewhere;
  const std::filesystem::path old_cwd = std::filesystem::current_path();
  std::filesystem::current_path(elsewhere.path());
  {
    H5File model = H5File::Open(dir / "model.h5");
    H5Group layers = model.root().OpenGroup("layers");
    EXPECT_EQ(layers.ListNames(), (std::vector<std::string>{"0", "1", "dangling"}));
    EXPECT_EQ(layers.OpenGroup("1").GetAttributeInt("rank"), 1);
    const H5Array<float> back = model.root().ReadDataset<float>("layers/0/w");
    EXPECT_EQ(back.data, w0);
    EXPECT_EQ(back.dims, (std::vector<uint64_t>{2, 2}));
    EXPECT_EQ(layers.ReadDataset<float>("1/w").data, w1);
    EXPECT_THROW_WITH(layers.OpenGroup("dangling"), IoError, "/layers/dangling");
  }
  std::filesystem::current_path(old_cwd);
}

TEST(H5, CreateWritesATempFileThatCommitRenames) {
  TempDir dir;
  const auto final_path = dir / "out.h5";
  const auto temp_path = dir / ("out.h5.tmp-" + std::to_string(getpid()));
  H5File out = H5File::Create(final_path);
  H5Group root = out.root();  // still alive at Commit: the close must not depend on it
  root.SetAttribute("format", "test");
  EXPECT_TRUE(std::filesystem::exists(temp_path));
  EXPECT_FALSE(std::filesystem::exists(final_path));
  out.Commit();
  EXPECT_FALSE(out.is_open());
  EXPECT_FALSE(std::filesystem::exists(temp_path));
  EXPECT_EQ(H5File::Open(final_path).root().GetAttributeString("format"), "test");
  EXPECT_THROW_WITH(root.SetAttribute("late", 1), IoError, "late");
}

TEST(H5, UncommittedFileIsDiscardedByCloseOrDestructor) {
  TempDir dir;
  {
    H5File out = H5File::Create(dir / "a.h5");
    out.root().SetAttribute("x", 1);
  }
  H5File closed = H5File::Create(dir / "b.h5");
  closed.Close();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(H5, CommitReplacesAnOlderFile) {
  TempDir dir;
  for (int version = 1; version <= 2; ++version) {
    H5File out = H5File::Create(dir / "f.h5");
    out.root().SetAttribute("version", version);
    out.Commit();
  }
  EXPECT_EQ(H5File::Open(dir / "f.h5").root().GetAttributeInt("version"), 2);
}

TEST(H5, ReadWriteOpenEditsInPlace) {
  TempDir dir;
  {
    H5File out = H5File::Create(dir / "f.h5");
    out.root().SetAttribute("stage", "fisher");
    out.Commit();
  }
  {
    H5File edit = H5File::Open(dir / "f.h5", H5Mode::kReadWrite);
    edit.root().SetAttribute("stage", "plan");
    edit.Close();
  }
  EXPECT_EQ(H5File::Open(dir / "f.h5").root().GetAttributeString("stage"), "plan");
}

TEST(H5, OpeningAMissingFileIsIoErrorWithTheReason) {
  TempDir dir;
  const std::string file = (dir / "absent.h5").string();
  EXPECT_THROW_WITH(H5File::Open(file), IoError, "H5File::Open: cannot open file '" + file + "': ");
  EXPECT_THROW_WITH(H5File::Open(file), IoError, "No such file or directory");
}

TEST(H5, OpeningANonHdf5FileIsFormatError) {
  TempDir dir;
  std::ofstream(dir / "text.h5") << "this is not an HDF5 file\n";
  EXPECT_THROW_WITH(H5File::Open(dir / "text.h5"), FormatError, (dir / "text.h5").string());
  EXPECT_THROW_WITH(H5File::Open(dir / "text.h5"), FormatError, "signature");
}

TEST(H5, ReadingAMissingOrMistypedDatasetNamesIt) {
  TempDir dir;
  const std::string file = (dir / "f.h5").string();
  H5File out = H5File::Create(file);
  H5Group layer = out.root().CreateGroup("layer");
  const std::vector<float> values = {1, 2};
  layer.WriteDataset<float>("w", values, {2});
  EXPECT_THROW_MSG(layer.ReadDataset<float>("scales"), FormatError,
                   "H5Group::ReadDataset: no dataset '/layer/scales' in '" + file + "'");
  EXPECT_THROW_MSG(
      layer.ReadDataset<int32_t>("w"), FormatError,
      "H5Group::ReadDataset: dataset '/layer/w' in '" + file + "' holds float32, expected int32");
  EXPECT_THROW_MSG(layer.WriteDataset<float>("v", values, {3}), FormatError,
                   "H5Group::WriteDataset: cannot write '/layer/v' in '" + file +
                       "': 2 elements given for shape [3] (3 elements)");
  EXPECT_THROW_MSG(layer.OpenGroup("sub"), FormatError,
                   "H5Group::OpenGroup: no group '/layer/sub' in '" + file + "'");
}

TEST(H5, FailuresPrintNothingOnStderr) {
  TempDir dir;
  std::ofstream(dir / "text.h5") << "not HDF5";
  testing::internal::CaptureStderr();
  EXPECT_THROW(H5File::Open(dir / "absent.h5"), IoError);
  EXPECT_THROW(H5File::Open(dir / "text.h5"), FormatError);
  EXPECT_THROW(H5File::Create(dir / "no/such/dir/f.h5"), IoError);
  {
    H5File out = H5File::Create(dir / "f.h5");
    const std::vector<float> values = {1};
    out.root().WriteDataset<float>("w", values, {1});
    EXPECT_THROW(out.root().GetAttributeInt("missing"), FormatError);
    EXPECT_THROW(out.root().OpenGroup("w"), FormatError);
    out.Commit();
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "");
  EXPECT_EQ(err.find("HDF5-DIAG"), std::string::npos);
}

TEST(H5, MovedFileKeepsOwnershipOfItsTempFile) {
  TempDir dir;
  H5File first = H5File::Create(dir / "f.h5");
  H5File second = std::move(first);
  EXPECT_FALSE(first.is_open());  // NOLINT(bugprone-use-after-move): checking the moved-from state
  second.root().SetAttribute("ok", 1);
  second.Commit();
  EXPECT_EQ(H5File::Open(dir / "f.h5").root().GetAttributeInt("ok"), 1);
}

TEST(H5File, TheSameContentWrittenTwiceGivesTheSameBytes) {
  TempDir dir;
  for (const char* name : {"a.h5", "b.h5"}) {
    H5File f = H5File::Create(dir / name);
    H5Group g = f.root().CreateGroup("layers");
    const std::vector<float> v = {1.5f, -2.0f, 3.25f};
    g.WriteDataset<float>("w", v, {3});
    g.SetAttribute("note", std::string_view("same"));
    f.Commit();
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // a new second on the clock
  }
  EXPECT_EQ(Sha256HexOfFile(dir / "a.h5"), Sha256HexOfFile(dir / "b.h5"));
}

}  // namespace
}  // namespace hiq
