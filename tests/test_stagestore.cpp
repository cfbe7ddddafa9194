// The resume store's entry files (hiq/io/stagestore.h): what is written reads back whole, a file
// that is not a complete entry is refused naming it, and a difference names the component and,
// for the config, the keys.
#include <gtest/gtest.h>

#include <fstream>

#include "hiq/base/error.h"
#include "hiq/io/stagestore.h"
#include "test_util.h"

namespace hiq {
namespace {

namespace fs = std::filesystem;

StoreEntry Sample() {
  StoreEntry e;
  e.kind = "block";
  e.components = {
      {"config", "hiq-config-v2 stage quantize\nquantize.steps: 40\nquant.bits_low: 2\n"},
      {"model", "aaaaaaaaaaaaaaaaaaaa"},
      {"build", "git 123, gcc 12, Release"},
      {"cpu", "Some CPU, OpenBLAS Haswell"}};
  e.payload = std::string("\0\1binary\n\xff payload", 18);
  return e;
}

TEST(StageStore, AnEntryReadsBackWithItsComponentsAndPayloadAndLeavesNoTemporary) {
  test::TempDir dir("hiq-store");
  const fs::path path = dir / "blocks/block-00001.entry";
  WriteStoreEntry(path, Sample());
  const std::optional<StoreEntry> back = ReadStoreEntry(path);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->kind, "block");
  EXPECT_EQ(back->components, Sample().components);
  EXPECT_EQ(back->payload, Sample().payload);
  EXPECT_EQ(DescribeDifference(*back, Sample().components), "");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "blocks")) {
    EXPECT_EQ(e.path().filename(), "block-00001.entry");
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(StageStore, NoFileIsNoEntry) {
  test::TempDir dir("hiq-store");
  EXPECT_FALSE(ReadStoreEntry(dir / "plan.entry").has_value());
}

TEST(StageStore, ACutShortOrAlteredFileIsRefusedNamingIt) {
  test::TempDir dir("hiq-store");
  const fs::path path = dir / "plan.entry";
  WriteStoreEntry(path, Sample());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  { std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() - 3); }
  EXPECT_THROW_WITH(ReadStoreEntry(path), FormatError,
                    path.string() + " is not a complete hiq-resume-entry: the payload has");
  bytes[bytes.size() - 1] ^= 1;
  { std::ofstream(path, std::ios::binary) << bytes; }
  EXPECT_THROW_WITH(ReadStoreEntry(path), FormatError, "the payload's SHA-256 differs");
  { std::ofstream(path, std::ios::binary) << "something else\n"; }
  EXPECT_THROW_WITH(ReadStoreEntry(path), FormatError, "does not start with 'hiq-resume-entry 1'");
}

TEST(StageStore, ADifferenceNamesTheConfigKeysTheModelTheBuildAndTheCpu) {
  StoreEntry found = Sample();
  auto now = found.components;
  now["config"] = "hiq-config-v2 stage quantize\nquantize.steps: 4\nquant.bits_low: 2\n";
  EXPECT_EQ(DescribeDifference(found, now),
            "another config (quantize stage: quantize.steps is 40 in the entry, 4 now)");
  now = found.components;
  now["model"] = "bbbbbbbbbbbbbbbbbbbb";
  now["build"] = "git 456, gcc 12, Release";
  now["cpu"] = "Other CPU, OpenBLAS SkylakeX";
  EXPECT_EQ(DescribeDifference(found, now),
            "another build (git 123, gcc 12, Release in the entry, git 456, gcc 12, Release now); "
            "another CPU kind (Some CPU, OpenBLAS Haswell in the entry, Other CPU, OpenBLAS "
            "SkylakeX now); another model (fingerprint aaaaaaaaaaaa in the entry, bbbbbbbbbbbb "
            "now)");
}

TEST(StageStore, AnotherCalibrationSetOrUpstreamIsNamedByWhatItIs) {
  StoreEntry found{
      "cost", {{"data", "1111111111111111aaaa"}, {"upstream", "u1"}, {"centre", "plan 1 2"}}, ""};
  const std::map<std::string, std::string> now = {
      {"data", "2222222222222222bbbb"}, {"upstream", "u2"}, {"centre", "full precision"}};
  EXPECT_EQ(DescribeDifference(found, now),
            "another centre (plan 1 2 in the entry, full precision now); another calibration set "
            "(its tokens' SHA-256 111111111111 in the entry, 222222222222 now); another upstream "
            "result (the Fisher scores it was made from)");
  found.kind = "block";
  EXPECT_EQ(
      DescribeDifference(
          found, {{"data", "1111111111111111aaaa"}, {"upstream", "u2"}, {"centre", "plan 1 2"}}),
      "another upstream result (the plan it was made from)");
}

TEST(StageStore, TheComponentsFingerprintChangesWithAnyComponentButNotThePayload) {
  StoreEntry a = Sample();
  StoreEntry b = a;
  b.payload = "other";
  EXPECT_EQ(ComponentsFingerprint(a), ComponentsFingerprint(b));
  b.components["cpu"] = "Other CPU";
  EXPECT_NE(ComponentsFingerprint(a), ComponentsFingerprint(b));
}

TEST(StageStore, TemporariesOfInterruptedWritesAreRemovedAndEntriesKept) {
  test::TempDir dir("hiq-store");
  WriteStoreEntry(dir / "blocks/block-00000.entry", Sample());
  std::ofstream(dir / "blocks/block-00001.entry.tmp-1234") << "half";
  RemoveStoreTemporaries(dir.path());
  EXPECT_TRUE(fs::exists(dir / "blocks/block-00000.entry"));
  EXPECT_FALSE(fs::exists(dir / "blocks/block-00001.entry.tmp-1234"));
}

}  // namespace
}  // namespace hiq
