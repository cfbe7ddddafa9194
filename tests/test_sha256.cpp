// SHA-256 against the NIST FIPS 180-4 example vectors and the shared data's published digests.
#include <fstream>
#include <string>

#include "hiq/base/error.h"  // IoError
#include "hiq/base/sha256.h"
#include "test_util.h"  // DataDir, TempDir, EXPECT_THROW_WITH

namespace hiq {
namespace {

// NIST "SHA256.pdf" / FIPS 180-4 example messages.
constexpr char kMsg448[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
constexpr char kMsg896[] =
    "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnop"
    "qrsmnopqrstnopqrstu";

TEST(Sha256, NistShortVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(kMsg448), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(kMsg896), "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256, NistMillionAs) {
  EXPECT_EQ(Sha256Hex(std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Feeding the same bytes in odd-sized pieces (crossing the 64-byte block and 56-byte padding
// boundaries) must give the one-shot digest.
TEST(Sha256, IncrementalEqualsOneShotForEveryLengthAndSplit) {
  std::string message;
  for (int i = 0; i < 200; ++i) message.push_back(static_cast<char>('a' + (i * 7) % 26));
  for (size_t length = 0; length <= message.size(); length += 1) {
    const std::string_view prefix(message.data(), length);
    const std::string expected = Sha256Hex(prefix);
    for (size_t piece : {size_t{1}, size_t{5}, size_t{55}, size_t{56}, size_t{63}, size_t{64}}) {
      Sha256 sha;
      for (size_t at = 0; at < length; at += piece) {
        sha.Update(prefix.substr(at, piece));
      }
      ASSERT_EQ(sha.HexDigest(), expected) << "length " << length << " piece " << piece;
    }
  }
}

TEST(Sha256, DigestResetsForTheNextStream) {
  Sha256 sha;
  sha.Update("garbage");
  (void)sha.HexDigest();
  sha.Update("abc", 3);
  EXPECT_EQ(sha.HexDigest(), Sha256Hex("abc"));
}

TEST(Sha256, SharedDataFilesMatchTheirPublishedDigests) {
  const auto data = test::DataDir();
  EXPECT_EQ(Sha256HexOfFile(data / "stories260K/model.safetensors"),
            "407a7c581bdd66972383ce9ad24857713fb98786d06ea564a2fe9b34ebe77dfd");
  EXPECT_EQ(Sha256HexOfFile(data / "stories260K/tokenizer.model"),
            "e33674dd21f9a4614289b147413a99a25e565cab391c08bf9ff8a260aa8b1655");
  EXPECT_EQ(Sha256HexOfFile(data / "stories260K/config.json"),
            "0c0bad15e38e897830eb4ee1f780774d116b2555e8576dd0b098ca7bcf45988f");
  EXPECT_EQ(Sha256HexOfFile(data / "reference/stories260K-sample64.safetensors"),
            "4828c63b4682a64c5bdc84f8f460f5a46ee62c21478d09c8eaa1eaa9bf43adda");
  EXPECT_EQ(Sha256HexOfFile(data / "text/tinystories/sample.txt"),
            "defaedb58bf28079f3e29c6142cb7f3568d331a577e0911c5d7925c465c50c43");
  // Larger than the 1 MiB read piece, so the streaming path is exercised.
  EXPECT_EQ(Sha256HexOfFile(data / "text/wikitext-2-raw/wiki.test.raw"),
            "4f3e427e4aff23acff917a8a51aeae21bf12832256e26914c8fc250dcef4103c");
}

TEST(Sha256, FileDigestEqualsBytesDigest) {
  test::TempDir dir;
  const std::string bytes(3 * 1024 * 1024 + 17, '\x5a');
  std::ofstream(dir / "blob", std::ios::binary) << bytes;
  EXPECT_EQ(Sha256HexOfFile(dir / "blob"), Sha256Hex(bytes));
}

TEST(Sha256, MissingFileIsIoErrorNamingIt) {
  test::TempDir dir;
  EXPECT_THROW_WITH(Sha256HexOfFile(dir / "absent.bin"), IoError, "absent.bin");
}

TEST(Sha256, DirectoryIsIoErrorNamingIt) {
  test::TempDir dir;
  EXPECT_THROW_WITH(Sha256HexOfFile(dir.path()), IoError, dir.path().string());
}

}  // namespace
}  // namespace hiq
