// hiq/base/finite.h - NaN and infinity refused where numbers enter hiq (weights at load) and
// where they come out of a pass (losses, gradients): the first bad element and how to name it.
// A NaN that travels on silently ends as `ppl=nan` with exit 0, or as a plan solved on garbage.
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace hiq {

// Index of the first NaN or infinity in `values`, -1 if every value is finite.
int64_t FirstNonFinite(std::span<const float> values);
int64_t FirstNonFinite(std::span<const double> values);

// "nan", "inf" or "-inf" for a non-finite value (else the value with %.9g).
std::string ValueName(double value);

// Flat `index` of a row-major tensor of `shape` as "[i, j]" (just "[i]" for 1-D).
std::string IndexName(int64_t index, std::span<const int64_t> shape);

}  // namespace hiq
