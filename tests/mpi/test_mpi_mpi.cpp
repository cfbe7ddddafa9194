// The typed collectives of Comm under mpiexec (2, 3 and 4 ranks): gathers concatenate in rank
// order, uneven and empty contributions included, and broadcasts carry values whose size only
// the root knows; every value arrives bit for bit.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "hiq/dist/mpi.h"  // Comm

namespace hiq {
namespace {

// Rank r's values: r of them (rank 0 gives none), none exactly representable in float.
std::vector<double> ValuesOf(int rank) {
  std::vector<double> v;
  for (int i = 0; i < rank; ++i) v.push_back(rank + 0.1 * i);
  return v;
}

// Rank r's lists: r + 1 of them, list i holding i values, so the first one is empty.
std::vector<std::vector<int32_t>> ListsOf(int rank) {
  std::vector<std::vector<int32_t>> lists;
  for (int i = 0; i <= rank; ++i) {
    lists.emplace_back();
    for (int j = 0; j < i; ++j) lists.back().push_back(1000 * rank + 10 * i + j);
  }
  return lists;
}

// Rank r's strings: r of them, one of them empty where r > 1.
std::vector<std::string> StringsOf(int rank) {
  std::vector<std::string> strings;
  for (int i = 0; i < rank; ++i) {
    strings.push_back(i == 1 ? "" : "rank " + std::to_string(rank) + " line " + std::to_string(i));
  }
  return strings;
}

TEST(CommMpi, AllGatherConcatenatesEveryRanksValuesInRankOrder) {
  const Comm comm = Comm::World();
  std::vector<double> want_values;
  std::vector<std::vector<int32_t>> want_lists;
  for (int r = 0; r < comm.size(); ++r) {
    for (double v : ValuesOf(r)) want_values.push_back(v);
    for (const auto& list : ListsOf(r)) want_lists.push_back(list);
  }
  EXPECT_EQ(comm.AllGather(ValuesOf(comm.rank())), want_values);  // exact, not near
  EXPECT_EQ(comm.AllGather(ListsOf(comm.rank())), want_lists);
}

TEST(CommMpi, GathersReachOnlyTheRoot) {
  const Comm comm = Comm::World();
  for (int root : {0, comm.size() - 1}) {
    std::vector<std::string> want_strings, want_parts;
    for (int r = 0; r < comm.size(); ++r) {
      for (const std::string& s : StringsOf(r)) want_strings.push_back(s);
      want_parts.push_back(std::string(static_cast<size_t>(r), 'a' + static_cast<char>(r)));
    }
    const std::vector<std::string> strings = comm.GatherStrings(StringsOf(comm.rank()), root);
    const std::vector<std::string> parts = comm.Gather(
        std::string(static_cast<size_t>(comm.rank()), 'a' + static_cast<char>(comm.rank())), root);
    if (comm.rank() == root) {
      EXPECT_EQ(strings, want_strings);
      EXPECT_EQ(parts, want_parts);
    } else {
      EXPECT_TRUE(strings.empty());
      EXPECT_TRUE(parts.empty());
    }
  }
}

// collective_bytes() is the payload that must leave each rank, whatever algorithm Open MPI
// picks: a broadcast's once per other rank from the root, a gather's once from each other rank.
TEST(CommMpi, CollectiveBytesCountWhatLeavesEachRank) {
  const Comm comm = Comm::World();
  const size_t others = static_cast<size_t>(comm.size() - 1);
  const int root = comm.size() - 1;
  const bool at_root = comm.rank() == root;
  const uint64_t p2p = comm.bytes_sent();

  uint64_t before = comm.collective_bytes();
  std::vector<double> values(at_root ? 5 : 0, 1.5);
  comm.Broadcast(values, root);  // its size (an int64) first, then 5 doubles
  EXPECT_EQ(comm.collective_bytes() - before, at_root ? others * (8 + 5 * 8) : 0u);

  before = comm.collective_bytes();
  comm.Gather(std::string(3, 'x'), root);  // a count (an int) and 3 chars from each other rank
  EXPECT_EQ(comm.collective_bytes() - before, at_root ? 0u : sizeof(int) + 3);

  before = comm.collective_bytes();
  comm.AllSum(1.0);  // every rank's double reaches every other rank
  EXPECT_EQ(comm.collective_bytes() - before, others * sizeof(double));

  before = comm.collective_bytes();
  comm.Barrier();
  EXPECT_EQ(comm.collective_bytes(), before);
  EXPECT_EQ(comm.bytes_sent(), p2p) << "collectives are not point-to-point sends";
}

TEST(CommMpi, BroadcastsCarryWhatOnlyTheRootKnows) {
  const Comm comm = Comm::World();
  const int root = comm.size() - 1;
  const bool at_root = comm.rank() == root;
  // The other ranks start with values of other sizes, which are replaced.
  std::vector<double> values =
      at_root ? std::vector<double>{0.1, -2.5e-300, 3.0} : std::vector<double>(7, 9.0);
  std::vector<int32_t> ints = at_root ? std::vector<int32_t>{} : std::vector<int32_t>{4, 5};
  std::vector<int32_t> more_ints = at_root ? std::vector<int32_t>{-1, 2} : std::vector<int32_t>{};
  std::string text = at_root ? "from the root" : "x";
  double number = at_root ? 0.1 : 0.0;
  int count = at_root ? -17 : 0;
  bool flag = at_root;
  comm.Broadcast(values, root);
  comm.Broadcast(ints, root);
  comm.Broadcast(more_ints, root);
  comm.Broadcast(text, root);
  comm.Broadcast(number, root);
  comm.Broadcast(count, root);
  comm.Broadcast(flag, root);
  EXPECT_EQ(values, (std::vector<double>{0.1, -2.5e-300, 3.0}));
  EXPECT_TRUE(ints.empty());
  EXPECT_EQ(more_ints, (std::vector<int32_t>{-1, 2}));
  EXPECT_EQ(text, "from the root");
  EXPECT_EQ(number, 0.1);
  EXPECT_EQ(count, -17);
  EXPECT_TRUE(flag);
}

}  // namespace
}  // namespace hiq
