// UTF-8 validation and newline translation (hiq/base/text.h) on hand-made byte strings.
#include <gtest/gtest.h>

#include <string>

#include "hiq/base/text.h"

namespace hiq {
namespace {

constexpr size_t kValid = std::string_view::npos;

TEST(Utf8, WellFormedTextIsValid) {
  EXPECT_EQ(FirstInvalidUtf8(""), kValid);
  EXPECT_EQ(FirstInvalidUtf8("plain ASCII\r\n"), kValid);
  // 2-, 3- and 4-byte forms at the edges of their ranges: U+0080, U+07FF, U+0800, U+D7FF,
  // U+E000, U+FFFF, U+10000, U+10FFFF.
  EXPECT_EQ(FirstInvalidUtf8("\xc2\x80\xdf\xbf\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf"
                             "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
            kValid);
}

TEST(Utf8, TheOffsetIsThatOfTheFirstIllFormedSequence) {
  EXPECT_EQ(FirstInvalidUtf8("ab\xff"), 2u);                   // never a UTF-8 byte
  EXPECT_EQ(FirstInvalidUtf8("a\x80"), 1u);                    // lone continuation byte
  EXPECT_EQ(FirstInvalidUtf8("abc\xc3"), 3u);                  // truncated at the end
  EXPECT_EQ(FirstInvalidUtf8("\xc3\xa9\xe2\x82z"), 2u);        // truncated before ASCII
  EXPECT_EQ(FirstInvalidUtf8("x\xc0\xaf"), 1u);                // overlong '/'
  EXPECT_EQ(FirstInvalidUtf8("\xe0\x80\xaf"), 0u);             // overlong 3-byte form
  EXPECT_EQ(FirstInvalidUtf8("\xf0\x8f\xbf\xbf"), 0u);         // overlong 4-byte form
  EXPECT_EQ(FirstInvalidUtf8("ok \xed\xa0\x80"), 3u);          // surrogate U+D800
  EXPECT_EQ(FirstInvalidUtf8("\xf4\x90\x80\x80"), 0u);         // above U+10FFFF
  EXPECT_EQ(FirstInvalidUtf8("\xf5\x80\x80\x80"), 0u);         // lead byte beyond F4
  EXPECT_EQ(FirstInvalidUtf8("latin1 caf\xe9 au lait"), 10u);  // the common real case
}

TEST(Newlines, CrlfAndLoneCrBecomeLf) {
  EXPECT_EQ(CrToLf("a\r\nb\rc\nd"), "a\nb\nc\nd");
  EXPECT_EQ(CrToLf("\r\r\n\n\r"), "\n\n\n\n");
  EXPECT_EQ(CrToLf("no line ends"), "no line ends");
  EXPECT_EQ(CrToLf(""), "");
}

TEST(Newlines, NamesRoundTrip) {
  EXPECT_EQ(NewlinesName(Newlines::kLf), "lf");
  EXPECT_EQ(NewlinesName(Newlines::kKeep), "keep");
  EXPECT_EQ(NewlinesFromName("lf"), Newlines::kLf);
  EXPECT_EQ(NewlinesFromName("keep"), Newlines::kKeep);
  EXPECT_EQ(NewlinesFromName("crlf"), std::nullopt);
}

}  // namespace
}  // namespace hiq
