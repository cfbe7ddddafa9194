// GPTQ for one linear layer into hiq's stored form (see hiq/quant/gptq.h).
//
// The work is laid out for a row-major W: GPTQ treats the rows independently (each row has its
// own groups, and every row shares the one factor U), so inside a lazy block each row is run
// through the block's columns on its own, touching only that row's contiguous slice of the
// block; the update of the columns after the block is one float product per block (sgemm
// through Eigen). Columns are permuted once into processing order (low columns, then high), so
// every block is a contiguous range of the permuted matrix.
#include "hiq/quant/gptq.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "hiq/base/error.h"  // ConfigError, FormatError, NumericalError
#include "hiq/base/fp16.h"   // RoundToFp16

namespace hiq {
namespace {

constexpr const char* kFn = "GptqQuantize";

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void CheckOptions(const GptqOptions& options) {
  if (!(options.percdamp >= 0.0 && std::isfinite(options.percdamp))) {
    throw ConfigError(std::string(kFn) + ": GptqOptions.percdamp = " + Num(options.percdamp) +
                      ", expected a finite value >= 0");
  }
  if (options.block_size < 1) {
    throw ConfigError(std::string(kFn) + ": GptqOptions.block_size = " +
                      std::to_string(options.block_size) + ", expected >= 1");
  }
  if (options.max_damp_retries < 0) {
    throw ConfigError(std::string(kFn) + ": GptqOptions.max_damp_retries = " +
                      std::to_string(options.max_damp_retries) + ", expected >= 0");
  }
}

void CheckInputs(const float* w, int64_t n_out, int64_t n_in, const GptqHessian& h) {
  if (h.h.rows() != n_in || h.h.cols() != n_in) {
    throw FormatError(std::string(kFn) + ": the Hessian is (" + std::to_string(h.h.rows()) + ", " +
                      std::to_string(h.h.cols()) + "), expected (" + std::to_string(n_in) + ", " +
                      std::to_string(n_in) + ") for n_in = " + std::to_string(n_in));
  }
  if (!h.h.allFinite()) {  // then find the first bad entry for the message
    for (int64_t i = 0; i < n_in; ++i) {
      for (int64_t j = 0; j < n_in; ++j) {
        if (!std::isfinite(h.h(i, j))) {
          throw FormatError(std::string(kFn) + ": Hessian (" + std::to_string(i) + ", " +
                            std::to_string(j) + ") is " + Num(h.h(i, j)) +
                            ", expected a finite value");
        }
      }
    }
  }
  for (int64_t i = 0; i < n_out * n_in; ++i) {
    if (!(std::fabs(w[i]) <= kMaxAbsWeight)) {
      throw FormatError(std::string(kFn) + ": weight (row " + std::to_string(i / n_in) +
                        ", column " + std::to_string(i % n_in) + ") is " + Num(w[i]) +
                        ", expected a finite value with |w| <= " + Num(kMaxAbsWeight));
    }
  }
}

// U (n, n) upper with U^T U = (H + damp I)^-1: the reference's chol(H^-1, upper), had as
// J M^-1 J with M = chol(J (H + damp I) J) lower (J reverses the order): J M^-1 J is upper and
// (J M^-1 J)^T (J M^-1 J) = (J M M^T J)^-1, and the upper Cholesky factor is unique. One
// factoring and one triangular inverse, 4/3 n^3 flops against the reference's 8/3 (chol,
// cholesky_inverse, chol), and H^-1 is never formed, which would lose half the digits before
// its own Cholesky. On a failed Cholesky the damping is raised tenfold, up to
// max_damp_retries times.
Matrix<float> InverseHessianFactor(const Eigen::MatrixXd& hp, const GptqOptions& options,
                                   std::string* log) {
  const int64_t n = hp.rows();
  const double mean_diag = hp.diagonal().mean();
  double damp = options.percdamp * mean_diag;
  Eigen::MatrixXd a(n, n), m_inv(n, n);
  for (int attempt = 0;; ++attempt) {
    a = hp.reverse();  // J H J
    a.diagonal().array() += damp;
    Eigen::LLT<Eigen::Ref<Eigen::MatrixXd>> llt(a);  // in place: M in a's lower triangle
    if (llt.info() == Eigen::Success) {
      m_inv.setIdentity();
      llt.matrixL().solveInPlace(m_inv);  // M^-1, lower
      Matrix<float> u =
          m_inv.reverse().triangularView<Eigen::Upper>().toDenseMatrix().cast<float>();
      if (u.allFinite()) return u;
    }
    if (attempt == options.max_damp_retries) {
      throw NumericalError(std::string(kFn) + ": the Hessian (" + std::to_string(n) + " x " +
                           std::to_string(n) + ") is not positive definite even with damping " +
                           Num(damp) + " (percdamp " + Num(options.percdamp) + " x mean diag " +
                           Num(mean_diag) + " x 10^" + std::to_string(attempt) + ") after " +
                           std::to_string(attempt) +
                           " retries; HINT: add calibration rows, or raise GptqOptions.percdamp");
    }
    if (log) {
      *log += std::string(kFn) + ": Cholesky failed with damping " + Num(damp) +
              "; retrying with " + Num(damp * 10.0) + "\n";
    }
    damp *= 10.0;
  }
}

// One value through a group's quantizer (hiq/quant/quant.h, step 3): its code and Q(x).
inline uint8_t Code(float x, GroupParams p, float qmax, float* q) {
  const float zero = static_cast<float>(p.zero);
  const float code = std::min(std::max(std::nearbyint(x / p.scale) + zero, 0.0f), qmax);
  *q = (code - zero) * p.scale;
  return static_cast<uint8_t>(code);
}

// Parameters of a group from its values x[0], x[stride], ... (len > 0).
GroupParams ParamsOf(const float* x, int64_t len, int64_t stride, int bits) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < len; ++i) {
    lo = std::min(lo, x[i * stride]);
    hi = std::max(hi, x[i * stride]);
  }
  return ChooseGroupParams(lo, hi, bits);
}

}  // namespace

GptqHessian::GptqHessian(int64_t n_in) {
  if (n_in < 0) {
    throw ConfigError("GptqHessian: n_in = " + std::to_string(n_in) + ", expected >= 0");
  }
  h = Matrix<double>::Zero(n_in, n_in);
}

void GptqHessian::AddRows(const float* x, int64_t m) {
  const int64_t n = n_in();
  if (m <= 0) return;
  for (int64_t i = 0; i < m * n; ++i) {
    if (!std::isfinite(x[i])) {
      throw FormatError("GptqHessian::AddRows: x (row " + std::to_string(i / n) + ", column " +
                        std::to_string(i % n) + ") is " + Num(x[i]) + ", expected finite");
    }
  }
  // The reference's order of operations: rescale the old mean, then add the scaled rows.
  h *= static_cast<double>(n_rows) / static_cast<double>(n_rows + m);
  n_rows += m;
  const float s = static_cast<float>(std::sqrt(2.0 / static_cast<double>(n_rows)));
  const Matrix<float> xs = Eigen::Map<const Matrix<float>>(x, m, n) * s;  // (m, n)
  Matrix<float> xtx(n, n);
  xtx.noalias() = xs.transpose() * xs;
  h += xtx.cast<double>();
}

QuantizedLayer GptqQuantize(const float* w, int64_t n_out, int64_t n_in, const GptqHessian& h,
                            std::span<const int32_t> high_cols, const QuantSpec& spec,
                            const GptqOptions& options, std::string* log) {
  CheckOptions(options);
  CheckInputs(w, n_out, n_in, h);
  // QuantizeLayer validates the spec, the shape and high_cols (in its own name) and lays out
  // every array of the stored form; GPTQ then overwrites every code and parameter in it.
  QuantizedLayer q = QuantizeLayer(w, n_out, n_in, high_cols, spec);
  if (n_out == 0 || n_in == 0) return q;
  const int64_t n = n_in, n_high = q.n_high(), n_low = q.n_low();
  const int64_t g = spec.group_size;
  const int64_t n_groups = GroupCount(n_low, g);
  const bool fp16 = spec.high_fp16();
  const float qmax_low = static_cast<float>((1 << spec.bits_low) - 1);
  const float qmax_high = fp16 ? 0.0f : static_cast<float>((1 << spec.bits_high) - 1);

  // Dead columns, and each column's slot in the stored arrays (its rank among the low columns
  // or among the high ones).
  std::vector<double> diag(static_cast<size_t>(n));
  std::vector<bool> dead(static_cast<size_t>(n)), is_high(static_cast<size_t>(n), false);
  for (int32_t c : high_cols) is_high[static_cast<size_t>(c)] = true;
  std::vector<int32_t> low_list, high_list(high_cols.begin(), high_cols.end());
  std::vector<int64_t> slot(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const size_t uj = static_cast<size_t>(j);
    dead[uj] = h.h(j, j) == 0.0;
    diag[uj] = dead[uj] ? 1.0 : h.h(j, j);
    if (!is_high[uj]) {
      slot[uj] = static_cast<int64_t>(low_list.size());
      low_list.push_back(static_cast<int32_t>(j));
    }
  }
  for (size_t k = 0; k < high_list.size(); ++k) {
    slot[static_cast<size_t>(high_list[k])] = static_cast<int64_t>(k);
  }

  // Processing order: low columns, then high; act-order sorts each part by descending diag H.
  std::vector<int32_t> perm;
  perm.reserve(static_cast<size_t>(n));
  for (std::vector<int32_t>* part : {&low_list, &high_list}) {
    std::vector<int32_t> order = *part;
    if (options.act_order) {
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return diag[static_cast<size_t>(a)] > diag[static_cast<size_t>(b)];
      });
    }
    perm.insert(perm.end(), order.begin(), order.end());
  }

  // W in processing order, dead columns zeroed: (n_out, n) row-major, the lazy state.
  Matrix<float> wp(n_out, n);
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t p = 0; p < n; ++p) {
      const size_t c = static_cast<size_t>(perm[static_cast<size_t>(p)]);
      wp(r, p) = dead[c] ? 0.0f : w[r * n + static_cast<int64_t>(c)];
    }
  }
  // H in processing order (double, column-major for Eigen's LLT), dead diagonal set to 1.
  Eigen::MatrixXd hp(n, n);
  for (int64_t b = 0; b < n; ++b) {
    // H is symmetric: read row perm[b] of the row-major H, along its (mostly increasing) columns.
    const double* h_row = h.h.data() + static_cast<int64_t>(perm[static_cast<size_t>(b)]) * n;
    for (int64_t a = 0; a < n; ++a) hp(a, b) = h_row[perm[static_cast<size_t>(a)]];
    if (dead[static_cast<size_t>(perm[static_cast<size_t>(b)])]) hp(b, b) = 1.0;
  }
  const Matrix<float> u = InverseHessianFactor(hp, options, log);  // (n, n) upper
  hp.resize(0, 0);

  const bool static_groups = options.static_groups || options.act_order;
  if (static_groups && n_low > 0) {
    // Every low group from the original (dead-zeroed) weights, in hiq's layout: the low
    // columns in index order, cut g at a time.
    std::vector<float> row_low(static_cast<size_t>(n_low));
    const int64_t len_g = g == 0 ? n_low : g;
    for (int64_t r = 0; r < n_out; ++r) {
      for (int64_t k = 0; k < n_low; ++k) {
        const size_t c = static_cast<size_t>(low_list[static_cast<size_t>(k)]);
        row_low[static_cast<size_t>(k)] = dead[c] ? 0.0f : w[r * n + static_cast<int64_t>(c)];
      }
      for (int64_t k = 0, start = 0; start < n_low; ++k, start += len_g) {
        q.low_params[static_cast<size_t>(r * n_groups + k)] =
            ParamsOf(row_low.data() + start, std::min(len_g, n_low - start), 1, spec.bits_low);
      }
    }
  }

  const int64_t bs = options.block_size;
  Matrix<float> w1(n_out, std::min(bs, n)), err1(n_out, std::min(bs, n));
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n), count = i2 - i1;
    // Groups that start in this block take their parameters from the lazy W, which no column
    // of this block changes before the block ends: choosing them now is choosing them when
    // their first column is reached, as the reference does.
    for (int64_t p = i1; p < i2; ++p) {
      const bool low_start = !static_groups && p < n_low && (g == 0 ? p == 0 : p % g == 0);
      const bool high_start = p == n_low && n_high > 0 && !fp16;
      if (!low_start && !high_start) continue;
      const int64_t len = high_start ? n_high : std::min(g == 0 ? n_low : g, n_low - p);
      for (int64_t r = 0; r < n_out; ++r) {
        const GroupParams gp =
            ParamsOf(&wp(r, p), len, 1, high_start ? spec.bits_high : spec.bits_low);
        if (high_start) {
          q.high_params[static_cast<size_t>(r)] = gp;
        } else {
          q.low_params[static_cast<size_t>(r * n_groups + (g == 0 ? 0 : p / g))] = gp;
        }
      }
    }
    w1.leftCols(count) = wp.middleCols(i1, count);
    for (int64_t r = 0; r < n_out; ++r) {
      float* wr = &w1(r, 0);    // (count,) this row's block, updated column by column
      float* er = &err1(r, 0);  // (count,) its scaled errors
      for (int64_t i = 0; i < count; ++i) {
        const int64_t p = i1 + i;
        const size_t c = static_cast<size_t>(perm[static_cast<size_t>(p)]);
        const int64_t s = slot[c];
        const float x = wr[i];
        float qv;
        if (p < n_low) {
          const int64_t k = g == 0 ? 0 : s / g;
          q.low_codes[static_cast<size_t>(r * n_low + s)] =
              Code(x, q.low_params[static_cast<size_t>(r * n_groups + k)], qmax_low, &qv);
        } else if (fp16) {
          qv = RoundToFp16(x);
          q.high_fp16[static_cast<size_t>(r * n_high + s)] = qv;
        } else {
          q.high_codes[static_cast<size_t>(r * n_high + s)] =
              Code(x, q.high_params[static_cast<size_t>(r)], qmax_high, &qv);
        }
        const float* up = &u(p, i1);  // (count,) row p of U inside the block
        const float e = (x - qv) / up[i];
        er[i] = e;
        for (int64_t k = i + 1; k < count; ++k) wr[k] -= e * up[k];
      }
    }
    if (i2 < n) {
      wp.rightCols(n - i2).noalias() -= err1.leftCols(count) * u.block(i1, i2, count, n - i2);
    }
  }
  return q;
}

}  // namespace hiq
