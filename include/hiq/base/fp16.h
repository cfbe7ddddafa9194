// hiq/base/fp16.h - conversions between float and the two 16-bit float formats hiq reads and
// writes: IEEE 754 binary16 ("half", safetensors F16) and bfloat16 (BF16, the top half of a
// float), and the FP16 roundings the quantizer's scales are made of.
//
// Every float -> 16-bit conversion rounds to nearest, ties to even, in integer arithmetic (no
// dependence on the FPU's rounding mode or on the compiler's _Float16); overflow gives infinity
// of the same sign, NaN stays a quiet NaN with the sign and the top payload bits kept, subnormal
// halves are produced and decoded exactly. 16-bit -> float is exact. The safetensors reader and
// writer and the quantizer all call these, so a value means the same thing on disk and in a
// plan. Pure functions: thread-safe, no state, no errors.
#pragma once

#include <cstdint>

namespace hiq {

inline constexpr float kFp16Max = 65504.0f;           // the largest finite half
inline constexpr float kFp16MinNormal = 0x1p-14f;     // the smallest normal half
inline constexpr float kFp16MinSubnormal = 0x1p-24f;  // the smallest positive half

// IEEE binary16 bits -> float, exact (every half is a float).
float F16ToFloat(uint16_t h);
// float -> IEEE binary16 bits, round to nearest even; |f| >= 65520 -> infinity.
uint16_t FloatToF16(float f);

// bfloat16 bits -> float, exact (the bits are a float's top half).
float BF16ToFloat(uint16_t b);
// float -> bfloat16 bits, round to nearest even; overflow -> infinity.
uint16_t FloatToBF16(float f);

// x rounded to the nearest FP16 value (ties to even), as float: F16ToFloat(FloatToF16(x));
// |x| >= 65520 -> +-inf.
float RoundToFp16(float x);
// The smallest FP16 value >= x, as float, for x in [0, 65504] (other x: unspecified). Exact:
// no value between x and the result is an FP16 value. 0 -> 0.
float CeilToFp16(float x);

}  // namespace hiq
