// The machine probes behind provenance and the per-rank memory line (hiq/base/sysinfo.h).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "hiq/base/sysinfo.h"

namespace hiq {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

// The quantize stage tells the blocks' peak from the plan's by a reset between them: memory
// touched and given back before the reset must not count after it. mmap, not malloc, so that
// neither glibc nor a sanitizer's quarantine keeps the pages resident.
TEST(Sysinfo, APeakResetForgetsMemoryGivenBackBeforeIt) {
  const size_t bytes = static_cast<size_t>(256 * kMiB);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memset(p, 1, bytes);
  const int64_t with = PeakRssBytes();
  ASSERT_EQ(munmap(p, bytes), 0);
  EXPECT_GE(with, 256 * kMiB);
  EXPECT_EQ(PeakRssBytes(), with) << "without a reset the peak is the process's";
  ASSERT_TRUE(ResetPeakRss()) << "/proc/self/clear_refs refused";
  EXPECT_LT(PeakRssBytes(), with - 200 * kMiB);
  EXPECT_GT(PeakRssBytes(), 0);
}

TEST(Sysinfo, TheCpuModelAndHostNameAreKnownOnLinux) {
  EXPECT_FALSE(CpuModel().empty());
  EXPECT_FALSE(HostName().empty());
}

}  // namespace
}  // namespace hiq
