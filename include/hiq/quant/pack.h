// hiq/quant/pack.h - bit-packing of quantization codes (and zero points) of width 1..8.
//
// A quantized layer stores each code in exactly `bits` bits (docs/BITS.md counts them so), so the
// shard format (hiq/io/shard.h) keeps its code arrays as one packed byte stream each:
//   1. The codes form one bit stream, LSB first: code i occupies stream bits
//      [i * bits, (i + 1) * bits), its least significant bit first.
//   2. Byte k of the packed array holds stream bits [8k, 8k + 8): stream bit 8k + j is bit j
//      (value 2^j) of byte k.
//   3. The packed array has PackedBytes(n, bits) = ceil(n * bits / 8) bytes; the padding bits
//      after the last code are zero, so every code array has exactly one packed form.
// Example, bits = 3, codes {5, 3, 7}: stream 101 110 111 (LSB first) -> bytes 0xDD 0x01.
// In numpy: bits_ = np.unpackbits(packed, bitorder="little")[: n * bits].reshape(n, bits);
//           codes = bits_ @ (1 << np.arange(bits)).
// Widths 1, 2, 4 and 8 never split a code across bytes; 3, 5, 6 and 7 do.
//
// Pure functions: no state, no I/O; thread-safe. The _ref functions are the specification (one
// bit at a time); the others are the fast path and equal them bit for bit (tests/test_pack.cpp).
// Errors: a width outside 1..8 throws ConfigError (a caller's bug or a bad spec); a code that
// does not fit its width, a packed array of the wrong size or with non-zero padding bits throws
// FormatError (damaged data), each naming the culprit's position.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace hiq {

// ceil(n * bits / 8): the bytes that n codes of `bits` bits pack into. ConfigError for a bits
// outside 1..8 or n < 0.
int64_t PackedBytes(int64_t n, int bits);

// Packs codes (each < 2^bits) into PackedBytes(codes.size(), bits) bytes.
std::vector<uint8_t> PackCodes(std::span<const uint8_t> codes, int bits);
std::vector<uint8_t> PackCodesRef(std::span<const uint8_t> codes, int bits);

// Unpacks codes_out.size() codes; packed must hold exactly PackedBytes(codes_out.size(), bits)
// bytes with zero padding bits.
void UnpackCodes(std::span<const uint8_t> packed, int bits, std::span<uint8_t> codes_out);
void UnpackCodesRef(std::span<const uint8_t> packed, int bits, std::span<uint8_t> codes_out);

}  // namespace hiq
