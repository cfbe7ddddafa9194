// Tests for hiq/quant/pack.h: the byte layout on hand examples, exact round trips for every
// width and awkward lengths (and for the arrays of real quantized layers), the fast path equal to
// the _ref specification, and the errors by message.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "hiq/base/error.h"   // ConfigError, FormatError
#include "hiq/quant/pack.h"   // the module under test
#include "hiq/quant/quant.h"  // QuantizeLayer: layer-shaped code arrays
#include "test_util.h"        // EXPECT_THROW_MSG

namespace hiq {
namespace {

std::vector<uint8_t> RandomCodes(size_t n, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
  std::vector<uint8_t> codes(n);
  for (uint8_t& c : codes) c = static_cast<uint8_t>(code(rng));
  return codes;
}

// Packs with both paths (which must agree), unpacks with both, and expects the codes back.
void ExpectRoundTrip(const std::vector<uint8_t>& codes, int bits) {
  const std::vector<uint8_t> packed = PackCodes(codes, bits);
  ASSERT_EQ(packed, PackCodesRef(codes, bits)) << "bits " << bits << ", n " << codes.size();
  ASSERT_EQ(static_cast<int64_t>(packed.size()), PackedBytes(std::ssize(codes), bits));
  std::vector<uint8_t> fast(codes.size(), 0xFF), ref(codes.size(), 0xFF);
  UnpackCodes(packed, bits, fast);
  UnpackCodesRef(packed, bits, ref);
  ASSERT_EQ(fast, codes) << "bits " << bits << ", n " << codes.size();
  ASSERT_EQ(ref, codes) << "bits " << bits << ", n " << codes.size();
}

TEST(PackCodes, ByteLayoutOfHandExamples) {
  // 3 bits: 5 | 3 << 3 | 7 << 6 = 0x1DD, a code split across the byte boundary.
  EXPECT_EQ(PackCodes(std::vector<uint8_t>{5, 3, 7}, 3), (std::vector<uint8_t>{0xDD, 0x01}));
  // 1 bit: stream bit j is bit j of the byte (LSB first), the ninth code starts byte 1.
  EXPECT_EQ(PackCodes(std::vector<uint8_t>{1, 0, 1, 1, 0, 0, 0, 1, 1}, 1),
            (std::vector<uint8_t>{0x8D, 0x01}));
  // 2 bits: the first code in the low bits.
  EXPECT_EQ(PackCodes(std::vector<uint8_t>{0, 1, 2, 3, 1}, 2), (std::vector<uint8_t>{0xE4, 0x01}));
  // 5 bits: 31 | 1 << 5 | 16 << 10 = 0x403F, 15 bits in two bytes.
  EXPECT_EQ(PackCodes(std::vector<uint8_t>{31, 1, 16}, 5), (std::vector<uint8_t>{0x3F, 0x40}));
  // 8 bits: the codes themselves.
  EXPECT_EQ(PackCodes(std::vector<uint8_t>{0, 255, 17}, 8), (std::vector<uint8_t>{0, 255, 17}));
  for (const auto& [codes, bits] : std::vector<std::pair<std::vector<uint8_t>, int>>{
           {{5, 3, 7}, 3}, {{1, 0, 1, 1, 0, 0, 0, 1, 1}, 1}, {{31, 1, 16}, 5}}) {
    EXPECT_EQ(PackCodesRef(codes, bits), PackCodes(codes, bits));
  }
}

TEST(PackCodes, PackedBytesIsTheCeilingOfTheBitCount) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n = 0; n < 100; ++n) EXPECT_EQ(PackedBytes(n, bits), (n * bits + 7) / 8);
  }
  // No overflow where n * bits would wrap.
  EXPECT_EQ(PackedBytes(int64_t{1} << 61, 7), (int64_t{1} << 58) * 7);
}

TEST(PackCodes, RoundTripsEveryWidthAndLength) {
  for (int bits = 1; bits <= 8; ++bits) {
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 63, 64, 65, 100, 1001, 4099}) {
      ExpectRoundTrip(RandomCodes(n, bits, static_cast<uint32_t>(bits * 10007 + n)), bits);
    }
    // Extremes: all zeros, all ones (every bit set: the fast path's shifts must not spill).
    ExpectRoundTrip(std::vector<uint8_t>(37, 0), bits);
    ExpectRoundTrip(std::vector<uint8_t>(37, static_cast<uint8_t>((1 << bits) - 1)), bits);
  }
}

// The arrays a shard packs, from real QuantizeLayer output: low codes as one row-major stream,
// zero points, high codes; n_in is not a multiple of any group size, n_out is odd.
TEST(PackCodes, RoundTripsQuantizedLayerArrays) {
  constexpr int64_t kOut = 7, kIn = 203;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(kOut * kIn);
  for (float& v : w) v = normal(rng);
  const std::vector<int32_t> high = {0, 3, 64, 65, 130, 202};
  for (const int64_t g : {0, 32, 64, 128}) {
    for (int bits = 1; bits <= 8; ++bits) {
      const QuantSpec spec{bits, bits < 8 ? bits + 1 : 8, g};
      const QuantizedLayer q = QuantizeLayer(w.data(), kOut, kIn, high, spec);
      ExpectRoundTrip(q.low_codes, spec.bits_low);
      ExpectRoundTrip(q.high_codes, spec.bits_high);
      std::vector<uint8_t> zeros;
      for (const GroupParams& p : q.low_params) zeros.push_back(static_cast<uint8_t>(p.zero));
      ExpectRoundTrip(zeros, spec.bits_low);
      ASSERT_EQ(static_cast<int64_t>(PackCodes(q.low_codes, bits).size()),
                (kOut * (kIn - 6) * bits + 7) / 8);
    }
  }
}

TEST(PackCodes, ErrorsNameTheCulprit) {
  const std::vector<uint8_t> codes = {1, 4, 2};
  EXPECT_THROW_MSG(PackCodes(codes, 0), ConfigError, "PackCodes: code width 0 bits, expected 1..8");
  EXPECT_THROW_MSG(PackCodesRef(codes, 9), ConfigError,
                   "PackCodesRef: code width 9 bits, expected 1..8");
  EXPECT_THROW_MSG(PackCodes(codes, 2), FormatError,
                   "PackCodes: code[1] = 4 does not fit in 2 bits (expected < 4)");
  EXPECT_THROW_MSG(PackCodesRef(codes, 2), FormatError,
                   "PackCodesRef: code[1] = 4 does not fit in 2 bits (expected < 4)");
  std::vector<uint8_t> out(5);  // 5 codes of 3 bits: 15 bits in 2 bytes, bit 7 of byte 1 padding
  const std::vector<uint8_t> three = {0, 0, 0};
  EXPECT_THROW_MSG(UnpackCodes(three, 3, out), FormatError,
                   "UnpackCodes: packed array holds 3 bytes, expected 2 for 5 codes of 3 bits");
  EXPECT_THROW_MSG(UnpackCodesRef(three, 3, out), FormatError,
                   "UnpackCodesRef: packed array holds 3 bytes, expected 2 for 5 codes of 3 bits");
  const std::vector<uint8_t> padded = {0, 0x80};
  EXPECT_THROW_MSG(UnpackCodes(padded, 3, out), FormatError,
                   "UnpackCodes: packed array's last byte 128 has non-zero padding bits above "
                   "bit 6 (expected zero padding)");
  EXPECT_THROW_MSG(UnpackCodesRef(padded, 3, out), FormatError,
                   "UnpackCodesRef: packed array's last byte 128 has non-zero padding bits above "
                   "bit 6 (expected zero padding)");
  EXPECT_THROW_MSG(UnpackCodes(padded, 9, out), ConfigError,
                   "UnpackCodes: code width 9 bits, expected 1..8");
  EXPECT_THROW_MSG(PackedBytes(-1, 2), ConfigError, "PackedBytes: -1 codes, expected >= 0");
}

}  // namespace
}  // namespace hiq
