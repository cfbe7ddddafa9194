#include "hiq/base/finite.h"

#include <cmath>
#include <cstdio>

namespace hiq {

namespace {

template <class T>
int64_t First(std::span<const T> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace

int64_t FirstNonFinite(std::span<const float> values) { return First(values); }
int64_t FirstNonFinite(std::span<const double> values) { return First(values); }

std::string ValueName(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", value);
  return buf;
}

std::string IndexName(int64_t index, std::span<const int64_t> shape) {
  std::string out;
  int64_t rest = index;
  for (size_t d = shape.size(); d-- > 0;) {
    const int64_t dim = shape[d] > 0 ? shape[d] : 1;
    out = std::to_string(d == 0 ? rest : rest % dim) + (out.empty() ? "" : ", ") + out;
    rest /= dim;
  }
  return "[" + (out.empty() ? std::to_string(index) : out) + "]";
}

}  // namespace hiq
