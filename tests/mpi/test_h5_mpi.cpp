// The HDF5 layer under mpiexec (2, 3 and 4 ranks): one parallel file assembled from per-rank
// slabs, per-rank serial files tied together by a root file of external links, and a bad slab
// on one rank reported on every rank instead of hanging the collective.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "hiq/base/error.h"  // FormatError
#include "hiq/dist/mpi.h"    // Comm
#include "hiq/io/h5.h"       // H5File, H5Group

namespace hiq {
namespace {

// One temp dir for all ranks: rank 0 makes it and broadcasts its name; removed at the end.
class SharedTempDir {
 public:
  explicit SharedTempDir(const Comm& comm) : comm_(comm) {
    std::string name;
    if (comm_.rank() == 0) {
      name = (std::filesystem::temp_directory_path() / "hiq-mpi-XXXXXX").string();
      if (mkdtemp(name.data()) == nullptr) name.clear();
    }
    comm_.Broadcast(name, 0);
    path_ = name;
  }
  ~SharedTempDir() {
    comm_.Barrier();
    std::error_code ignored;
    if (comm_.rank() == 0) std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  const Comm& comm_;
  std::filesystem::path path_;
};

constexpr uint64_t kCols = 3;

// Rank r owns r rows starting at r (r - 1) / 2, so rank 0 owns none (an empty slab) and the
// slab sizes differ.
uint64_t FirstRow(int rank) { return static_cast<uint64_t>(rank) * (rank - 1) / 2; }
uint64_t TotalRows(int size) { return FirstRow(size); }
int32_t Value(uint64_t row, uint64_t col) { return static_cast<int32_t>(100 * row + col); }

TEST(H5Mpi, SlabsFromEveryRankFormOneParallelDataset) {
  const Comm comm = Comm::World();
  SharedTempDir dir(comm);
  ASSERT_FALSE(dir.path().empty());
  const auto file = dir.path() / "parallel.h5";
  const int rank = comm.rank(), size = comm.size();
  const uint64_t rows = static_cast<uint64_t>(rank), first = FirstRow(rank);
  std::vector<int32_t> slab;
  for (uint64_t r = first; r < first + rows; ++r) {
    for (uint64_t c = 0; c < kCols; ++c) slab.push_back(Value(r, c));
  }
  const std::vector<double> shared = {0.5, 1.5, 2.5};
  {
    H5File out = H5File::CreateParallel(file, comm);
    H5Group root = out.root();
    root.SetAttribute("ranks", size);
    H5Group layer = root.CreateGroup("layer");
    layer.WriteDatasetSlab<int32_t>("codes", slab, {TotalRows(size), kCols}, first);
    layer.WriteDataset<double>("shared", shared, {3});  // same data on every rank
    EXPECT_FALSE(std::filesystem::exists(file));        // nothing final before Commit
    out.Commit();
  }
  comm.Barrier();
  ASSERT_TRUE(std::filesystem::exists(file));

  std::vector<int32_t> expected;
  for (uint64_t r = 0; r < TotalRows(size); ++r) {
    for (uint64_t c = 0; c < kCols; ++c) expected.push_back(Value(r, c));
  }
  if (rank == 0) {  // serial read-back after the parallel close
    H5Group root = H5File::Open(file).root();
    EXPECT_EQ(root.GetAttributeInt("ranks"), size);
    const H5Array<int32_t> codes = root.ReadDataset<int32_t>("layer/codes");
    EXPECT_EQ(codes.dims, (std::vector<uint64_t>{TotalRows(size), kCols}));
    EXPECT_EQ(codes.data, expected);
    EXPECT_EQ(root.ReadDataset<double>("layer/shared").data, shared);
  }
  {  // and a parallel open, every rank reading on its own
    H5File in = H5File::OpenParallel(file, comm);
    EXPECT_EQ(in.root().ReadDataset<int32_t>("layer/codes").data, expected);
    in.Close();
  }
  comm.Barrier();
  std::error_code ignored;
  std::vector<std::filesystem::path> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path(), ignored)) {
    left.push_back(entry.path().filename());
  }
  EXPECT_EQ(left, std::vector<std::filesystem::path>{"parallel.h5"});  // no temp file left
}

TEST(H5Mpi, PerRankSerialFilesJoinedByExternalLinks) {
  const Comm comm = Comm::World();
  SharedTempDir dir(comm);
  ASSERT_FALSE(dir.path().empty());
  const int rank = comm.rank(), size = comm.size();
  auto shard_name = [size](int r) {
    return "shards/rank-" + std::to_string(r) + "-of-" + std::to_string(size) + ".h5";
  };
  if (rank == 0) std::filesystem::create_directories(dir.path() / "shards");
  comm.Barrier();
  {
    H5File shard = H5File::Create(dir.path() / shard_name(rank));
    H5Group layer = shard.root().CreateGroup("layer");
    const std::vector<float> weights(static_cast<size_t>(rank + 1), static_cast<float>(rank));
    layer.WriteDataset<float>("w", weights, {weights.size()});
    layer.SetAttribute("rank", rank);
    shard.Commit();
  }
  comm.Barrier();
  if (rank == 0) {
    H5File model = H5File::Create(dir.path() / "model.h5");
    H5Group layers = model.root().CreateGroup("layers");
    for (int r = 0; r < size; ++r)
      layers.CreateExternalLink(std::to_string(r), shard_name(r), "/layer");
    model.Commit();
  }
  comm.Barrier();
  // Every rank reads every shard through the root file.
  H5Group layers = H5File::Open(dir.path() / "model.h5").root().OpenGroup("layers");
  ASSERT_EQ(layers.ListNames().size(), static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) {
    const H5Group layer = layers.OpenGroup(std::to_string(r));
    EXPECT_EQ(layer.GetAttributeInt("rank"), r);
    EXPECT_EQ(layer.ReadDataset<float>("w").data,
              std::vector<float>(static_cast<size_t>(r + 1), static_cast<float>(r)));
  }
}

TEST(H5Mpi, ABadSlabOnOneRankFailsEveryRank) {
  const Comm comm = Comm::World();
  SharedTempDir dir(comm);
  ASSERT_FALSE(dir.path().empty());
  const int rank = comm.rank();
  const std::vector<int32_t> row = {1, 2, 3};
  H5File out = H5File::CreateParallel(dir.path() / "bad.h5", comm);
  H5Group root = out.root();
  // Rank 1 claims row 7 of a 2-row dataset; the others are fine and must not hang.
  const uint64_t first = rank == 1 ? 7 : 0;
  const std::span<const int32_t> slab =
      rank <= 1 ? std::span<const int32_t>(row) : std::span<const int32_t>();
  try {
    root.WriteDatasetSlab<int32_t>("x", slab, {2, 3}, first);
    ADD_FAILURE() << "rank " << rank << ": expected FormatError";
  } catch (const FormatError& e) {
    const std::string expected =
        rank == 1 ? "rows [7, 8) exceed the 2 rows" : "another rank passed an invalid slab";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
  out.Close();  // discarded: never committed
  comm.Barrier();
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace hiq
