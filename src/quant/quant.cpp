// Round-to-nearest quantizer, candidates, channel scores and bit accounting (see
// hiq/quant/quant.h).
//
// Layout follows ggml-quants.c: the scalar _ref kernel is the specification, written to be read;
// the fast kernel computes the same float operations per element, arranged so that they
// vectorise without -ffast-math (min/max on a GCC vector type, straight element loops that GCC
// turns into vdivps/vrndscaleps). The only reductions are min and max, which are exact in any
// order, so both paths agree bit for bit. Candidates copy runs of low columns instead of an
// indexed gather/scatter; everything is single-threaded and has no state.
#include "hiq/quant/quant.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "hiq/base/error.h"  // ConfigError, FormatError, HIQ_CHECK
#include "hiq/base/fp16.h"   // RoundToFp16, CeilToFp16, kFp16Max, kFp16MinSubnormal

namespace hiq {
namespace {

// A product ratio * n_in this close above an integer is that integer (HighCount).
constexpr double kCountSlack = 1e-9;

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Smallest FP16 value >= x, for x in [0, 65504]; 0 maps to the smallest subnormal so that a
// scale is never 0.
float RoundUpToFp16(float x) { return std::max(CeilToFp16(x), kFp16MinSubnormal); }

// Error paths kept out of line, so the per-group code carries no string temporaries.
[[noreturn, gnu::noinline, gnu::cold]] void ThrowBadClip(GroupClip clip) {
  throw ConfigError("ChooseGroupParams: clip factors (max " + Num(clip.max_factor) + ", min " +
                    Num(clip.min_factor) + "), expected both in [0, 1]");
}

[[noreturn, gnu::noinline, gnu::cold]] void ThrowScaleOverflow(float lo, float hi, float step) {
  throw FormatError(
      "ChooseGroupParams: a group spans [" + Num(lo) + ", " + Num(hi) +
      "], which needs a scale of " + Num(step) +
      " but FP16 scales stop at 65504; HINT: weights must satisfy |w| <= " + Num(kMaxAbsWeight));
}

void CheckBits(const char* fn, int bits) {
  if (bits < 1 || bits > 8) {
    throw ConfigError(std::string(fn) + ": bits = " + std::to_string(bits) +
                      ", expected an integer width in 1..8");
  }
}

void CheckKernelArgs(const char* fn, int64_t n, int64_t group_size, int bits) {
  CheckBits(fn, bits);
  if (n < 0 || group_size < 0) {
    throw ConfigError(std::string(fn) + ": n = " + std::to_string(n) +
                      ", group_size = " + std::to_string(group_size) + ", expected both >= 0");
  }
}

void CheckShape(const char* fn, int64_t n_out, int64_t n_in) {
  if (n_out < 0 || n_in < 0 || n_in > std::numeric_limits<int32_t>::max()) {
    throw ConfigError(std::string(fn) + ": shape (" + std::to_string(n_out) + ", " +
                      std::to_string(n_in) + "), expected n_out >= 0 and 0 <= n_in < 2^31");
  }
}

// Index of the first element that is NaN, infinite or beyond kMaxAbsWeight, or -1. The OR over
// integer comparisons of |x|'s bit pattern vectorises (NaN and inf compare above every finite).
int64_t FirstBadWeight(const float* x, int64_t n) {
  const uint32_t limit = std::bit_cast<uint32_t>(kMaxAbsWeight);
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= (std::bit_cast<uint32_t>(x[i]) & 0x7FFFFFFFu) > limit;
  if (!bad) return -1;
  for (int64_t i = 0; i < n; ++i) {
    if ((std::bit_cast<uint32_t>(x[i]) & 0x7FFFFFFFu) > limit) return i;
  }
  return -1;
}

void CheckWeightRow(const char* fn, const float* row, int64_t r, int64_t n_in) {
  const int64_t j = FirstBadWeight(row, n_in);
  if (j >= 0) {
    throw FormatError(std::string(fn) + ": weight (row " + std::to_string(r) + ", column " +
                      std::to_string(j) + ") is " + Num(row[j]) +
                      ", expected a finite value with |w| <= " + Num(kMaxAbsWeight));
  }
}

void CheckHighCols(const char* fn, std::span<const int32_t> high_cols, int64_t n_in) {
  for (size_t k = 0; k < high_cols.size(); ++k) {
    const int32_t c = high_cols[k];
    if (c < 0 || c >= n_in) {
      throw FormatError(std::string(fn) + ": high_cols[" + std::to_string(k) + "] = " +
                        std::to_string(c) + " is outside [0, " + std::to_string(n_in) + ")");
    }
    if (k > 0 && c <= high_cols[k - 1]) {
      throw FormatError(std::string(fn) + ": high_cols[" + std::to_string(k) +
                        "] = " + std::to_string(c) + " does not exceed high_cols[" +
                        std::to_string(k - 1) + "] = " + std::to_string(high_cols[k - 1]) +
                        ", expected strictly increasing column indices");
    }
  }
}

// One element through the quantizer (step 3). The fast kernel repeats this expression inline.
inline float QuantizeCode(float x, float scale, float zero, float qmax) {
  return std::min(std::max(std::nearbyint(x / scale) + zero, 0.0f), qmax);
}

// 16 floats in one GCC vector: one zmm register with AVX-512, two ymm with AVX2, four xmm with
// SSE2. Its element-wise `<` and `?:` become vminps/vmaxps, whatever the auto-vectoriser decides.
typedef float F32x16 __attribute__((vector_size(64)));
constexpr int64_t kLanes = 16;

// Exact min and max of x (n > 0): 16 lanes, then a tree over them, then the scalar tail.
// `a < b ? a : b` is the form that maps onto min/max instructions without -ffast-math.
void MinMaxLanes(const float* x, int64_t n, float* x_min, float* x_max) {
  float mn = x[0], mx = x[0];
  int64_t i = 0;
  if (n >= kLanes) {
    F32x16 lo, hi;
    std::memcpy(&lo, x, sizeof lo);
    hi = lo;
    for (i = kLanes; i + kLanes <= n; i += kLanes) {
      F32x16 v;
      std::memcpy(&v, x + i, sizeof v);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    float lo_lanes[kLanes], hi_lanes[kLanes];
    std::memcpy(lo_lanes, &lo, sizeof lo);
    std::memcpy(hi_lanes, &hi, sizeof hi);
    for (int64_t width = kLanes / 2; width > 0; width /= 2) {  // a tree, not a serial chain
      for (int64_t l = 0; l < width; ++l) {
        lo_lanes[l] = std::min(lo_lanes[l], lo_lanes[l + width]);
        hi_lanes[l] = std::max(hi_lanes[l], hi_lanes[l + width]);
      }
    }
    mn = lo_lanes[0];
    mx = hi_lanes[0];
  }
  for (; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  *x_min = mn;
  *x_max = mx;
}

// Steps 1-2 of the quantizer (hiq/quant/quant.h) for a validated bit width: qmax = 2^bits - 1.
inline GroupParams ParamsForRange(float x_min, float x_max, float qmax, GroupClip clip) {
  // Written so that a NaN factor fails the test too.
  if (!(clip.max_factor >= 0.0f && clip.max_factor <= 1.0f && clip.min_factor >= 0.0f &&
        clip.min_factor <= 1.0f)) {
    ThrowBadClip(clip);
  }
  if (x_min == x_max && std::fabs(x_min) <= kFp16Max) {
    // Constant group: a one-step grid from 0 to c (or c to 0) reproduces fp16(c).
    const float scale = RoundToFp16(std::fabs(x_min));
    if (scale == 0.0f) return GroupParams{1.0f, 0};
    return GroupParams{scale, x_min < 0.0f ? 1 : 0};
  }
  const float lo = std::min(clip.min_factor * x_min, 0.0f);
  const float hi = std::max(clip.max_factor * x_max, 0.0f);
  const float step = (hi - lo) / qmax;
  if (!(step <= kFp16Max)) ThrowScaleOverflow(lo, hi, step);
  const float scale = RoundUpToFp16(step);
  const float zero = std::min(std::max(std::nearbyint(-lo / scale), 0.0f), qmax);
  return GroupParams{scale, static_cast<int32_t>(zero)};
}

float Qmax(int bits) { return static_cast<float>((1 << bits) - 1); }

// Copies n floats and returns dst + n. Runs of low columns are short (about 1 / ratio), where a
// call to memcpy per run costs more than the copy, so: whole 16-float vectors, then 8, 4, 2, 1
// (fixed-size memcpys are single moves; a scalar tail loop would become a memcpy call again).
float* CopyRun(const float* src, int64_t n, float* dst) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) std::memcpy(dst + i, src + i, kLanes * sizeof(float));
  for (int64_t chunk = kLanes / 2; chunk > 0; chunk /= 2) {
    if (n - i >= chunk) {
      std::memcpy(dst + i, src + i, static_cast<size_t>(chunk) * sizeof(float));
      i += chunk;
    }
  }
  return dst + n;
}

}  // namespace

void ValidateQuantSpec(const QuantSpec& spec) {
  if (spec.bits_low < 1 || spec.bits_low > 8) {
    throw ConfigError("QuantSpec.bits_low = " + std::to_string(spec.bits_low) + ", expected 1..8");
  }
  if ((spec.bits_high < 1 || spec.bits_high > 8) && spec.bits_high != 16) {
    throw ConfigError("QuantSpec.bits_high = " + std::to_string(spec.bits_high) +
                      ", expected 1..8, or 16 to keep high-impact channels in FP16");
  }
  if (spec.group_size < 0) {
    throw ConfigError("QuantSpec.group_size = " + std::to_string(spec.group_size) +
                      ", expected >= 0 (0 = one group per row)");
  }
}

int64_t GroupCount(int64_t n, int64_t group_size) {
  if (n <= 0) return 0;
  return group_size == 0 ? 1 : (n + group_size - 1) / group_size;
}

GroupParams ChooseGroupParams(float x_min, float x_max, int bits, GroupClip clip) {
  CheckBits("ChooseGroupParams", bits);
  return ParamsForRange(x_min, x_max, Qmax(bits), clip);
}

// The specification: each group's extremes, its parameters, then every element through step 3.
void FakeQuantizeRowGroupsRef(const float* x, int64_t n, int64_t group_size, int bits,
                              const GroupClip* clip, float* y, uint8_t* codes,
                              GroupParams* params) {
  CheckKernelArgs("FakeQuantizeRowGroupsRef", n, group_size, bits);
  const int64_t g = group_size == 0 ? n : group_size;
  const float qmax = Qmax(bits);
  for (int64_t k = 0, start = 0; start < n; ++k, start += g) {
    const int64_t end = std::min(start + g, n);
    float x_min = x[start], x_max = x[start];
    for (int64_t i = start; i < end; ++i) {
      x_min = std::min(x_min, x[i]);
      x_max = std::max(x_max, x[i]);
    }
    const GroupParams p = ParamsForRange(x_min, x_max, qmax, clip ? clip[k] : GroupClip{});
    if (params) params[k] = p;
    const float zero = static_cast<float>(p.zero);
    for (int64_t i = start; i < end; ++i) {
      const float code = QuantizeCode(x[i], p.scale, zero, qmax);
      y[i] = (code - zero) * p.scale;
      if (codes) codes[i] = static_cast<uint8_t>(code);
    }
  }
}

// Same arithmetic as the _ref path; the element loops are split by whether codes are wanted so
// that each is a straight vectorisable loop.
void FakeQuantizeRowGroups(const float* x, int64_t n, int64_t group_size, int bits,
                           const GroupClip* clip, float* y, uint8_t* codes, GroupParams* params) {
  CheckKernelArgs("FakeQuantizeRowGroups", n, group_size, bits);
  const int64_t g = group_size == 0 ? n : group_size;
  const float qmax = Qmax(bits);
  for (int64_t k = 0, start = 0; start < n; ++k, start += g) {
    const int64_t len = std::min(g, n - start);
    const float* xg = x + start;  // (len,)
    float* yg = y + start;        // (len,)
    float x_min, x_max;
    MinMaxLanes(xg, len, &x_min, &x_max);
    const GroupParams p = ParamsForRange(x_min, x_max, qmax, clip ? clip[k] : GroupClip{});
    if (params) params[k] = p;
    const float scale = p.scale;
    const float zero = static_cast<float>(p.zero);
    if (codes) {
      uint8_t* cg = codes + start;  // (len,)
      for (int64_t i = 0; i < len; ++i) {
        const float code = std::min(std::max(std::nearbyint(xg[i] / scale) + zero, 0.0f), qmax);
        yg[i] = (code - zero) * scale;
        cg[i] = static_cast<uint8_t>(code);
      }
    } else {
      for (int64_t i = 0; i < len; ++i) {
        const float code = std::min(std::max(std::nearbyint(xg[i] / scale) + zero, 0.0f), qmax);
        yg[i] = (code - zero) * scale;
      }
    }
  }
}

namespace {

// The low columns, ascending, as maximal runs of consecutive columns [start, start + length):
// copying runs is several times faster than an indexed gather/scatter, which GCC turns into
// vgatherdps/vscatterdps (slow on AMD).
struct Run {
  int64_t start, length;
};
std::vector<Run> LowRuns(std::span<const int32_t> high_cols, int64_t n_in) {
  const int64_t n_high = static_cast<int64_t>(high_cols.size());
  std::vector<Run> runs;
  for (int64_t k = 0, start = 0; k <= n_high; ++k) {
    const int64_t end = k < n_high ? high_cols[k] : n_in;  // the next high column or the end
    if (end > start) runs.push_back(Run{start, end - start});
    start = end + 1;
  }
  return runs;
}

// y (n,) = (code - zero) * scale over groups of g, the quantizer's step 3 undone.
void DequantizeGroups(const uint8_t* codes, const GroupParams* params, int64_t n, int64_t g,
                      float* y) {
  const int64_t len_g = g == 0 ? n : g;
  for (int64_t k = 0, start = 0; start < n; ++k, start += len_g) {
    const int64_t end = std::min(start + len_g, n);
    const float zero = static_cast<float>(params[k].zero), scale = params[k].scale;
    for (int64_t i = start; i < end; ++i) y[i] = (static_cast<float>(codes[i]) - zero) * scale;
  }
}

}  // namespace

QuantizedLayer QuantizeLayer(const float* w, int64_t n_out, int64_t n_in,
                             std::span<const int32_t> high_cols, const QuantSpec& spec,
                             const LayerClip& clip) {
  constexpr const char* kFn = "QuantizeLayer";
  ValidateQuantSpec(spec);
  CheckShape(kFn, n_out, n_in);
  CheckHighCols(kFn, high_cols, n_in);
  QuantizedLayer q;
  q.n_out = n_out;
  q.n_in = n_in;
  q.spec = spec;
  q.high_cols.assign(high_cols.begin(), high_cols.end());
  const int64_t n_high = q.n_high(), n_low = q.n_low();
  const int64_t n_groups = GroupCount(n_low, spec.group_size);
  q.low_codes.resize(static_cast<size_t>(n_out * n_low));
  q.low_params.resize(static_cast<size_t>(n_out * n_groups));
  if (n_high > 0 && spec.high_fp16()) q.high_fp16.resize(static_cast<size_t>(n_out * n_high));
  if (n_high > 0 && !spec.high_fp16()) {
    q.high_codes.resize(static_cast<size_t>(n_out * n_high));
    q.high_params.resize(static_cast<size_t>(n_out));
  }
  const std::vector<Run> low_runs = LowRuns(high_cols, n_in);
  // Gathered segments: the kernels want contiguous input, and separate in/out buffers keep the
  // vectorised loops free of aliasing checks.
  std::vector<float> x_low(n_low), y_low(n_low), x_high(n_high), y_high(n_high);
  for (int64_t r = 0; r < n_out; ++r) {
    const float* row = w + r * n_in;  // (n_in,)
    CheckWeightRow(kFn, row, r, n_in);
    const float* x = row;
    if (n_high > 0) {
      float* dst = x_low.data();
      for (const Run& run : low_runs) dst = CopyRun(row + run.start, run.length, dst);
      for (int64_t k = 0; k < n_high; ++k) x_high[k] = row[high_cols[k]];
      x = x_low.data();
    }
    FakeQuantizeRowGroups(x, n_low, spec.group_size, spec.bits_low,
                          clip.low ? clip.low + r * n_groups : nullptr, y_low.data(),
                          q.low_codes.data() + r * n_low, q.low_params.data() + r * n_groups);
    if (n_high == 0) continue;
    if (spec.high_fp16()) {
      for (int64_t k = 0; k < n_high; ++k) q.high_fp16[r * n_high + k] = RoundToFp16(x_high[k]);
    } else {
      FakeQuantizeRowGroups(x_high.data(), n_high, 0, spec.bits_high,
                            clip.high ? clip.high + r : nullptr, y_high.data(),
                            q.high_codes.data() + r * n_high, q.high_params.data() + r);
    }
  }
  return q;
}

void Dequantize(const QuantizedLayer& q, float* w_out) {
  const int64_t n_high = q.n_high(), n_low = q.n_low(), n_in = q.n_in;
  const int64_t n_groups = GroupCount(n_low, q.spec.group_size);
  const std::vector<Run> low_runs = LowRuns(q.high_cols, n_in);
  std::vector<float> y_low(n_low);
  for (int64_t r = 0; r < q.n_out; ++r) {
    float* out = w_out + r * n_in;  // (n_in,)
    const uint8_t* codes = q.low_codes.data() + r * n_low;
    const GroupParams* params = q.low_params.data() + r * n_groups;
    if (n_high == 0) {
      DequantizeGroups(codes, params, n_low, q.spec.group_size, out);
      continue;
    }
    DequantizeGroups(codes, params, n_low, q.spec.group_size, y_low.data());
    const float* y = y_low.data();
    for (const Run& run : low_runs) {
      CopyRun(y, run.length, out + run.start);
      y += run.length;
    }
    for (int64_t k = 0; k < n_high; ++k) {
      const size_t i = static_cast<size_t>(r * n_high + k);
      out[q.high_cols[static_cast<size_t>(k)]] =
          q.spec.high_fp16() ? q.high_fp16[i]
                             : (static_cast<float>(q.high_codes[i]) -
                                static_cast<float>(q.high_params[static_cast<size_t>(r)].zero)) *
                                   q.high_params[static_cast<size_t>(r)].scale;
    }
  }
}

namespace {

void CheckSize(const std::string& where, const char* array, size_t size, int64_t expected) {
  if (static_cast<int64_t>(size) != expected) {
    throw FormatError(where + ": " + array + " holds " + std::to_string(size) +
                      " elements, expected " + std::to_string(expected));
  }
}

void CheckCodes(const std::string& where, const char* array, const std::vector<uint8_t>& codes,
                int bits) {
  for (size_t i = 0; i < codes.size(); ++i) {
    if (codes[i] > Qmax(bits)) {
      throw FormatError(where + ": " + array + "[" + std::to_string(i) + "] = " +
                        std::to_string(codes[i]) + ", expected < 2^" + std::to_string(bits));
    }
  }
}

void CheckParams(const std::string& where, const char* array,
                 const std::vector<GroupParams>& params, int bits) {
  for (size_t i = 0; i < params.size(); ++i) {
    const GroupParams& p = params[i];
    if (!(p.scale > 0.0f) || RoundToFp16(p.scale) != p.scale || p.zero < 0 ||
        p.zero > static_cast<int32_t>(Qmax(bits))) {
      throw FormatError(where + ": " + array + "[" + std::to_string(i) + "] has scale " +
                        Num(p.scale) + " and zero " + std::to_string(p.zero) +
                        ", expected a positive FP16 scale and a zero in [0, 2^" +
                        std::to_string(bits) + ")");
    }
  }
}

}  // namespace

void ValidateQuantizedLayer(const QuantizedLayer& q, const std::string& where) {
  ValidateQuantSpec(q.spec);
  CheckShape(where.c_str(), q.n_out, q.n_in);
  CheckHighCols(where.c_str(), q.high_cols, q.n_in);
  const int64_t n_high = q.n_high(), n_low = q.n_low();
  const bool fp16 = q.spec.high_fp16();
  CheckSize(where, "low_codes", q.low_codes.size(), q.n_out * n_low);
  CheckSize(where, "low_params", q.low_params.size(),
            q.n_out * GroupCount(n_low, q.spec.group_size));
  CheckSize(where, "high_codes", q.high_codes.size(), fp16 ? 0 : q.n_out * n_high);
  CheckSize(where, "high_params", q.high_params.size(), fp16 || n_high == 0 ? 0 : q.n_out);
  CheckSize(where, "high_fp16", q.high_fp16.size(), fp16 ? q.n_out * n_high : 0);
  CheckCodes(where, "low_codes", q.low_codes, q.spec.bits_low);
  CheckParams(where, "low_params", q.low_params, q.spec.bits_low);
  if (!fp16) {
    CheckCodes(where, "high_codes", q.high_codes, q.spec.bits_high);
    CheckParams(where, "high_params", q.high_params, q.spec.bits_high);
  }
  for (size_t i = 0; i < q.high_fp16.size(); ++i) {
    if (!std::isfinite(q.high_fp16[i]) || RoundToFp16(q.high_fp16[i]) != q.high_fp16[i]) {
      throw FormatError(where + ": high_fp16[" + std::to_string(i) + "] = " + Num(q.high_fp16[i]) +
                        ", expected a finite FP16 value");
    }
  }
}

int64_t StoredBits(const QuantizedLayer& q) {
  const auto n = [](const auto& v) { return static_cast<int64_t>(v.size()); };
  const int64_t b_l = q.spec.bits_low, b_h = q.spec.bits_high;
  return n(q.low_codes) * b_l + n(q.low_params) * (16 + b_l) + n(q.high_codes) * b_h +
         n(q.high_params) * (16 + b_h) + n(q.high_fp16) * 16 + n(q.high_cols) * IndexBits(q.n_in);
}

void QuantizeCandidate(const float* w, int64_t n_out, int64_t n_in,
                       std::span<const int32_t> high_cols, const QuantSpec& spec, float* w_q_out) {
  Dequantize(QuantizeLayer(w, n_out, n_in, high_cols, spec), w_q_out);
}

std::vector<double> ChannelScores(const float* fisher, const float* w, int64_t n_out, int64_t n_in,
                                  ScoreKind kind, const QuantSpec& spec) {
  constexpr const char* kFn = "ChannelScores";
  HIQ_CHECK(fisher != nullptr && (kind == ScoreKind::kFisher || w != nullptr));
  ValidateQuantSpec(spec);
  CheckShape(kFn, n_out, n_in);
  std::vector<double> scores(static_cast<size_t>(n_in), 0.0);
  std::vector<float> q(static_cast<size_t>(n_in));  // one row of Q_bL(W)
  for (int64_t r = 0; r < n_out; ++r) {
    const float* f_row = fisher + r * n_in;  // (n_in,)
    for (int64_t j = 0; j < n_in; ++j) {
      if (!(f_row[j] >= 0.0f && std::isfinite(f_row[j]))) {
        throw FormatError(std::string(kFn) + ": Fisher (row " + std::to_string(r) + ", column " +
                          std::to_string(j) + ") is " + Num(f_row[j]) +
                          ", expected a finite value >= 0 (a sum of squared gradients)");
      }
    }
    if (kind == ScoreKind::kFisher) {
      for (int64_t j = 0; j < n_in; ++j) scores[j] += static_cast<double>(f_row[j]);
      continue;
    }
    const float* w_row = w + r * n_in;  // (n_in,)
    CheckWeightRow(kFn, w_row, r, n_in);
    FakeQuantizeRowGroups(w_row, n_in, spec.group_size, spec.bits_low, nullptr, q.data(), nullptr,
                          nullptr);
    for (int64_t j = 0; j < n_in; ++j) {
      const double d = static_cast<double>(w_row[j]) - static_cast<double>(q[j]);
      scores[j] += static_cast<double>(f_row[j]) * d * d;
    }
  }
  return scores;
}

std::vector<int32_t> TopChannels(std::span<const double> scores, int64_t k) {
  const int64_t n = static_cast<int64_t>(scores.size());
  if (k < 0 || k > n) {
    throw ConfigError("TopChannels: k = " + std::to_string(k) + ", expected 0..the number of " +
                      "channels, " + std::to_string(n));
  }
  for (int64_t j = 0; j < n; ++j) {
    if (std::isnan(scores[j])) {
      throw FormatError("TopChannels: score of channel " + std::to_string(j) +
                        " is nan, expected a number");
    }
  }
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  // A strict total order (score descending, then index ascending): its top-k prefixes nest.
  const auto ranks_higher = [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), ranks_higher);
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

int64_t HighCount(double ratio, int64_t n_in) {
  if (!(ratio >= 0.0 && ratio <= 1.0) || n_in < 0) {
    throw ConfigError("HighCount: ratio = " + Num(ratio) + " for " + std::to_string(n_in) +
                      " channels, expected a ratio in [0, 1] and a channel count >= 0");
  }
  const double exact = ratio * static_cast<double>(n_in);
  const auto count = static_cast<int64_t>(std::ceil(exact - kCountSlack));
  return std::clamp<int64_t>(count, 0, n_in);
}

int IndexBits(int64_t n_in) { return n_in <= 65536 ? 16 : 32; }

LayerBitsTerms LayerBitsBreakdown(int64_t n_out, int64_t n_in, int64_t n_high,
                                  const QuantSpec& spec) {
  ValidateQuantSpec(spec);
  if (n_out < 0 || n_in < 0 || n_high < 0 || n_high > n_in) {
    throw ConfigError("LayerBits: n_out = " + std::to_string(n_out) +
                      ", n_in = " + std::to_string(n_in) + ", n_high = " + std::to_string(n_high) +
                      ", expected n_out, n_in >= 0 and 0 <= n_high <= n_in");
  }
  const int64_t n_low = n_in - n_high;
  constexpr int64_t kScaleBits = 16;  // FP16
  LayerBitsTerms t;
  t.low_codes = n_out * n_low * spec.bits_low;
  t.low_params = n_out * GroupCount(n_low, spec.group_size) * (kScaleBits + spec.bits_low);
  t.high_codes = n_out * n_high * spec.bits_high;  // bits_high == 16: the FP16 values
  t.high_params = (n_high > 0 && !spec.high_fp16()) ? n_out * (kScaleBits + spec.bits_high) : 0;
  t.indices = n_high * IndexBits(n_in);
  return t;
}

int64_t LayerBits(int64_t n_out, int64_t n_in, int64_t n_high, const QuantSpec& spec) {
  return LayerBitsBreakdown(n_out, n_in, n_high, spec).total();
}

double AverageBits(std::span<const LayerSize> layers, const QuantSpec& spec) {
  int64_t bits = 0, weights = 0;
  for (const LayerSize& l : layers) {
    bits += LayerBits(l.n_out, l.n_in, l.n_high, spec);
    weights += l.n_out * l.n_in;
  }
  if (weights == 0) {
    throw ConfigError("AverageBits: " + std::to_string(layers.size()) +
                      " layers hold no weights, expected at least one weight");
  }
  return static_cast<double>(bits) / static_cast<double>(weights);
}

}  // namespace hiq
