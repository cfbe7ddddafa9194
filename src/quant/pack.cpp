// Bit-packing of codes (hiq/quant/pack.h): the one-bit-at-a-time specification and a fast path
// through a 64-bit accumulator.
#include "hiq/quant/pack.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <string>

#include "hiq/base/error.h"

namespace hiq {
namespace {

void CheckBits(const char* function, int bits) {
  if (bits < 1 || bits > 8) {
    throw ConfigError(std::string(function) + ": code width " + std::to_string(bits) +
                      " bits, expected 1..8");
  }
}

[[noreturn]] void ThrowCodeTooWide(const char* function, size_t i, uint8_t code, int bits) {
  throw FormatError(std::string(function) + ": code[" + std::to_string(i) +
                    "] = " + std::to_string(code) + " does not fit in " + std::to_string(bits) +
                    " bits (expected < " + std::to_string(1 << bits) + ")");
}

// Size and padding checks shared by both unpackers: they keep one packed form per code array.
void CheckPacked(const char* function, std::span<const uint8_t> packed, int bits, size_t n) {
  CheckBits(function, bits);
  const int64_t expected = PackedBytes(static_cast<int64_t>(n), bits);
  if (static_cast<int64_t>(packed.size()) != expected) {
    throw FormatError(std::string(function) + ": packed array holds " +
                      std::to_string(packed.size()) + " bytes, expected " +
                      std::to_string(expected) + " for " + std::to_string(n) + " codes of " +
                      std::to_string(bits) + " bits");
  }
  const int used = static_cast<int>((static_cast<uint64_t>(n) * bits) % 8);
  if (used != 0 && (packed.back() >> used) != 0) {
    throw FormatError(std::string(function) + ": packed array's last byte " +
                      std::to_string(packed.back()) + " has non-zero padding bits above bit " +
                      std::to_string(used - 1) + " (expected zero padding)");
  }
}

}  // namespace

int64_t PackedBytes(int64_t n, int bits) {
  CheckBits("PackedBytes", bits);
  if (n < 0) throw ConfigError("PackedBytes: " + std::to_string(n) + " codes, expected >= 0");
  return (n / 8) * bits + ((n % 8) * bits + 7) / 8;  // no overflow for any n
}

std::vector<uint8_t> PackCodesRef(std::span<const uint8_t> codes, int bits) {
  constexpr const char* kFn = "PackCodesRef";
  CheckBits(kFn, bits);
  std::vector<uint8_t> packed(static_cast<size_t>(PackedBytes(std::ssize(codes), bits)), 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] >> bits != 0) ThrowCodeTooWide(kFn, i, codes[i], bits);
    for (int b = 0; b < bits; ++b) {
      const size_t s = i * static_cast<size_t>(bits) + static_cast<size_t>(b);  // stream bit
      packed[s / 8] |= static_cast<uint8_t>(((codes[i] >> b) & 1) << (s % 8));
    }
  }
  return packed;
}

// Codes enter an accumulator at its top end and whole bytes leave at the bottom, so each code
// costs a shift and an or; at most 7 + 8 bits are ever held.
std::vector<uint8_t> PackCodes(std::span<const uint8_t> codes, int bits) {
  constexpr const char* kFn = "PackCodes";
  CheckBits(kFn, bits);
  std::vector<uint8_t> packed(static_cast<size_t>(PackedBytes(std::ssize(codes), bits)));
  // The range check first, as one branch-free pass the compiler vectorises.
  uint8_t over = 0;
  for (const uint8_t c : codes) over |= static_cast<uint8_t>(c >> bits);
  if (over != 0) {
    for (size_t i = 0; i < codes.size(); ++i) {
      if (codes[i] >> bits != 0) ThrowCodeTooWide(kFn, i, codes[i], bits);
    }
  }
  if (bits == 8) {
    std::copy(codes.begin(), codes.end(), packed.begin());
    return packed;
  }
  uint64_t acc = 0;
  int held = 0;
  size_t out = 0;
  for (const uint8_t c : codes) {
    acc |= static_cast<uint64_t>(c) << held;
    held += bits;
    if (held >= 8) {
      packed[out++] = static_cast<uint8_t>(acc);
      acc >>= 8;
      held -= 8;
    }
  }
  if (held > 0) packed[out++] = static_cast<uint8_t>(acc);
  HIQ_CHECK(out == packed.size());
  return packed;
}

void UnpackCodesRef(std::span<const uint8_t> packed, int bits, std::span<uint8_t> codes_out) {
  CheckPacked("UnpackCodesRef", packed, bits, codes_out.size());
  for (size_t i = 0; i < codes_out.size(); ++i) {
    uint8_t code = 0;
    for (int b = 0; b < bits; ++b) {
      const size_t s = i * static_cast<size_t>(bits) + static_cast<size_t>(b);  // stream bit
      code |= static_cast<uint8_t>(((packed[s / 8] >> (s % 8)) & 1) << b);
    }
    codes_out[i] = code;
  }
}

// The mirror of PackCodes: bytes enter the accumulator at its top, codes leave at the bottom.
void UnpackCodes(std::span<const uint8_t> packed, int bits, std::span<uint8_t> codes_out) {
  CheckPacked("UnpackCodes", packed, bits, codes_out.size());
  if (bits == 8) {
    std::copy(packed.begin(), packed.end(), codes_out.begin());
    return;
  }
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t acc = 0;
  int held = 0;
  size_t in = 0;
  for (uint8_t& code : codes_out) {
    if (held < bits) {
      acc |= static_cast<uint64_t>(packed[in++]) << held;
      held += 8;
    }
    code = static_cast<uint8_t>(acc & mask);
    acc >>= bits;
    held -= bits;
  }
}

}  // namespace hiq
