// src/config/config.cpp - the one list of config keys (ForEachField) and everything it drives:
// defaults, YAML and --set parsing, validation, ToYaml, each stage's canonical text and
// docs/CONFIG.md.
//
// The list calls visitor(field, default, Meta{key, limits, ..., read_by, help}) once per key,
// one function per section (ModelFields, CalibrationFields, ...). A visitor is
// a struct with one template operator(); what differs per field type (how to parse, format,
// check and document an int, a path, a choice...) lives in the overload sets Parse, Format,
// Check, TypeName and Allowed below, one overload per type, so no visitor repeats it.
#include "hiq/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <type_traits>

#include "hiq/base/error.h"   // ConfigError, IoError, HIQ_CHECK
#include "hiq/base/sha256.h"  // Sha256Hex

namespace hiq {
namespace fs = std::filesystem;
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The YAML names of each enum, indexed by the enum's value.
constexpr std::array<std::string_view, 3> kSampleSourceNames = {"text", "tokens", "generate"};
constexpr std::array<std::string_view, 2> kChannelScoreNames = {"fisher", "fisher_impact"};
constexpr std::array<std::string_view, 3> kCostModeNames = {"loss", "local", "fisher"};
constexpr std::array<std::string_view, 2> kCostCenterNames = {"plan", "fp"};
constexpr std::array<std::string_view, 2> kCostCandidatesNames = {"rtn", "gptq"};
constexpr std::array<std::string_view, 2> kSolverMethodNames = {"pareto", "milp"};
constexpr std::array<std::string_view, 6> kQuantizeMethodNames = {"hiq",      "fixed_ratio", "lwc",
                                                                  "adaround", "gptq",        "rtn"};
constexpr std::array<std::string_view, 2> kReconInputsNames = {"fp", "quantized"};
constexpr std::array<std::string_view, 2> kConfigStageNames = {"plan", "quantize"};
constexpr std::array<std::string_view, 2> kNewlinesNames = {"lf", "keep"};
std::span<const std::string_view> Choices(SampleSource) { return kSampleSourceNames; }
std::span<const std::string_view> Choices(ChannelScore) { return kChannelScoreNames; }
std::span<const std::string_view> Choices(CostMode) { return kCostModeNames; }
std::span<const std::string_view> Choices(CostCenter) { return kCostCenterNames; }
std::span<const std::string_view> Choices(CostCandidates) { return kCostCandidatesNames; }
std::span<const std::string_view> Choices(SolverMethod) { return kSolverMethodNames; }
std::span<const std::string_view> Choices(QuantizeMethod) { return kQuantizeMethodNames; }
std::span<const std::string_view> Choices(ReconInputs) { return kReconInputsNames; }
std::span<const std::string_view> Choices(ConfigStage) { return kConfigStageNames; }
std::span<const std::string_view> Choices(Newlines) { return kNewlinesNames; }

template <class E>
std::string_view EnumName(E value) {
  const auto names = Choices(value);
  const auto index = static_cast<size_t>(value);
  HIQ_CHECK(index < names.size());
  return names[index];
}

// Allowed interval of a numeric key; an infinite end is always open.
struct Limits {
  double lo = -kInf;
  double hi = kInf;
  bool lo_open = false;
  bool hi_open = false;
};
constexpr Limits Closed(double lo, double hi) { return {lo, hi, false, false}; }
constexpr Limits OpenClosed(double lo, double hi) { return {lo, hi, true, false}; }
constexpr Limits Positive() { return {0.0, kInf, true, true}; }

// The stages of ConfigStage as bits, so that a key read by several stages lists each of them.
using StageSet = uint32_t;
constexpr StageSet ReadBy(std::same_as<ConfigStage> auto... stages) {
  return (StageSet{0} | ... | (StageSet{1} << static_cast<int>(stages)));
}
constexpr StageSet kReadByPlan = ReadBy(ConfigStage::kPlan);
constexpr StageSet kReadByQuantize = ReadBy(ConfigStage::kQuantize);
constexpr StageSet kReadByBoth = ReadBy(ConfigStage::kPlan, ConfigStage::kQuantize);
constexpr bool Reads(StageSet set, ConfigStage stage) { return (set & ReadBy(stage)) != 0; }

std::vector<ConfigStage> AllStages() {
  std::vector<ConfigStage> stages;
  for (size_t i = 0; i < kConfigStageNames.size(); ++i) {
    stages.push_back(static_cast<ConfigStage>(i));
  }
  return stages;
}

// "plan", "plan, quantize", or "none" (docs/CONFIG.md's "read by" column).
std::string StageNames(StageSet set) {
  std::string out;
  for (const ConfigStage stage : AllStages()) {
    if (Reads(set, stage)) out += (out.empty() ? "" : ", ") + std::string(EnumName(stage));
  }
  return out.empty() ? "none" : out;
}

// Everything the list says about one key besides its field and default.
struct Meta {
  std::string key;                    // dotted YAML path
  Limits limits = {};                 // numbers, and each element of a list
  std::optional<double> also = {};    // one more allowed value outside `limits` (0, 16...)
  std::string_view default_doc = {};  // docs/CONFIG.md text instead of the default value
  std::string_view allowed_doc = {};  // docs/CONFIG.md text instead of the range
  StageSet read_by = 0;               // the stages that read it; 0: it cannot change a result
  std::string_view help;
};

// The field list, one function per section, each key once, in the order ToYaml prints them.
// Visitors take (field, default, Meta).

template <class Visitor>
void ModelFields(ModelSection& m, Visitor& v) {
  v(m.path, fs::path(),
    {.key = "model.path",
     .default_doc = "required",
     .allowed_doc = "existing directory",
     .read_by = kReadByBoth,
     .help = "Hugging Face LLaMA checkpoint directory: config.json plus model.safetensors, or "
             "sharded model-*.safetensors with model.safetensors.index.json (F32, F16 or BF16)."});
  v(m.tokenizer, fs::path(),
    {.key = "model.tokenizer",
     .default_doc = "`<model.path>/tokenizer.model`",
     .allowed_doc = "existing file (when text is read)",
     .read_by = kReadByBoth,
     .help = "SentencePiece tokenizer.model that tokenizes calibration text."});
}

struct SampleSetDefaults {
  SampleSource source;
  int n_sequences;
  uint64_t seed;
  StageSet read_by;
};

// The three calibration sample sets share one field list; only their defaults differ.
template <class Visitor>
void SampleSetFields(SampleSetConfig& s, const std::string& p, const SampleSetDefaults& d,
                     Visitor& v) {
  v(s.source, d.source,
    {.key = p + ".source",
     .read_by = d.read_by,
     .help = "Where the sequences come from: `text` = windows of seq_len tokens cut from a "
             "text file, `tokens` = windows from a token .h5 file written by `hiq tokenize`, "
             "`generate` = sequences sampled from the model itself (data-free)."});
  v(s.path, fs::path(),
    {.key = p + ".path",
     .default_doc = "unset",
     .allowed_doc = "existing file",
     .read_by = d.read_by,
     .help = "The text file (source `text`) or token .h5 file (source `tokens`). Required for "
             "those sources and must be unset for `generate`."});
  v(s.newlines, Newlines::kLf,
    {.key = p + ".newlines",
     .read_by = d.read_by,
     .help = "How source `text` reads line ends: `lf` = CRLF and lone CR become LF (Python's "
             "text mode, as evaluation datasets are read), `keep` = the bytes as they are. A "
             "token file records its own."});
  v(s.n_sequences, d.n_sequences,
    {.key = p + ".n_sequences",
     .limits = Closed(1, 1 << 20),
     .read_by = d.read_by,
     .help = "Number of sequences."});
  v(s.seq_len, 128,
    {.key = p + ".seq_len",
     .limits = Closed(1, 1 << 20),
     .read_by = d.read_by,
     .help = "Tokens per sequence."});
  v(s.seed, d.seed,
    {.key = p + ".seed",
     .read_by = d.read_by,
     .help = "Seed of this set's random stream (which windows are cut, or what is sampled)."});
  v(s.temperature, 1.0,
    {.key = p + ".temperature",
     .limits = OpenClosed(0, 100),
     .read_by = d.read_by,
     .help = "Sampling temperature for source `generate` (logits are divided by it); unused "
             "by the other sources."});
}

template <class Visitor>
void CalibrationFields(CalibrationSection& c, Visitor& v) {
  SampleSetFields(c.fisher, "calibration.fisher", {SampleSource::kText, 128, 1, kReadByPlan}, v);
  SampleSetFields(c.cost, "calibration.cost", {SampleSource::kGenerate, 32, 2, kReadByPlan}, v);
  SampleSetFields(c.check, "calibration.check", {SampleSource::kGenerate, 32, 3, kReadByPlan}, v);
  SampleSetFields(c.reconstruction, "calibration.reconstruction",
                  {SampleSource::kGenerate, 128, 4, kReadByQuantize}, v);
}

// bits_low and bits_high take exactly what ValidateQuantSpec (hiq/quant/quant.h) accepts, with
// bits_high > bits_low checked in ValidateQuant, and group_size a part of it (the agreement is a
// test), so that no value passes here only to be refused after the Fisher pass.
template <class Visitor>
void QuantFields(QuantSection& q, Visitor& v) {
  v(q.bits_low, 2,
    {.key = "quant.bits_low",
     .limits = Closed(1, 8),
     .read_by = kReadByBoth,
     .help = "Bit-width b_L of the low-precision channels of every quantized linear layer."});
  v(q.bits_high, 3,
    {.key = "quant.bits_high",
     .limits = Closed(1, 8),
     .also = 16,
     .read_by = kReadByBoth,
     .help = "Bit-width b_H of the high-impact channels; must be greater than bits_low. "
             "16 keeps them in FP16 (the FP16-retention baseline)."});
  v(q.group_size, 32,
    {.key = "quant.group_size",
     .limits = Closed(8, 1 << 20),
     .also = 0,
     .read_by = kReadByBoth,
     .help = "Quantization group along the input dimension: one scale and zero per group of "
             "this many input channels; 0 = one per output row."});
  v(q.ratios, std::vector<double>{0.02, 0.05, 0.10, 0.15, 0.20},
    {.key = "quant.ratios",
     .limits = OpenClosed(0, 1),
     .read_by = kReadByPlan,
     .help = "Candidate high-impact ratios R: the fraction of a layer's input channels (top "
             "scores) quantized at bits_high. The plan picks one per layer."});
  v(q.budget_bits, 0.0,
    {.key = "quant.budget_bits",
     .limits = Closed(0, 16),
     .default_doc = "`0.0` (unset)",
     .read_by = kReadByPlan,
     .help = "Budget as average bits per quantized weight, counting codes, scales/zeros and "
             "channel indices; 0 = unset. Set exactly one of budget_bits and budget_ratio."});
  v(q.budget_ratio, 0.0,
    {.key = "quant.budget_ratio",
     .limits = Closed(0, 1),
     .default_doc = "`0.0` (unset)",
     .read_by = kReadByPlan,
     .help = "Budget as a ratio: the bits that this same fixed ratio costs in every layer, so "
             "the plan is compared with the fixed-ratio baseline at matched bits; at least the "
             "smallest of ratios; 0 = unset."});
  v(q.score, ChannelScore::kFisher,
    {.key = "quant.score",
     .read_by = kReadByPlan,
     .help = "Channel score that ranks the input channels: `fisher` = sum_i F_ij, "
             "`fisher_impact` = sum_i F_ij (W_ij - Q_bL(W_ij))^2."});
}

template <class Visitor>
void CostFields(CostSection& c, Visitor& v) {
  v(c.mode, CostMode::kLoss,
    {.key = "cost.mode",
     .read_by = kReadByPlan,
     .help = "Cost estimator: `loss` = end-to-end loss differences (the paper's), `local` = "
             "block-local first-order term g . dY plus a fitted quadratic term, `fisher` = "
             "gradient projections (M = S^T S / N)."});
  v(c.center, CostCenter::kPlan,
    {.key = "cost.center",
     .read_by = kReadByPlan,
     .help = "Where loss differences are measured: `plan` = around the quantized operating "
             "point (first the fixed-ratio plan that meets the budget, then the current plan), "
             "`fp` = around the full-precision model (the paper's reproduction)."});
  v(c.candidates, CostCandidates::kRtn,
    {.key = "cost.candidates",
     .read_by = kReadByPlan,
     .help = "How a candidate's layer is quantized when its cost is measured: `rtn` = "
             "round-to-nearest (the paper's); `gptq` = GPTQ on the Hessian of the layer's "
             "full-precision inputs over the Fisher set (damping 0.01, no act-order), a "
             "layer-local reconstruction standing in for the hybrid one that the plan is "
             "applied with. The plan's check measures the same kind of candidates."});
  v(c.pairs, false,
    {.key = "cost.pairs",
     .read_by = kReadByPlan,
     .help = "With mode `loss` or `fisher`: also measure the within-block pair terms "
             "(off-diagonal entries of M); mode `local` measures none."});
  v(c.refine, 2,
    {.key = "cost.refine",
     .limits = Closed(0, 20),
     .read_by = kReadByPlan,
     .help = "Re-centring rounds with center `plan`: measure around the current plan, solve, "
             "keep the new plan only if its measured loss falls."});
  v(c.local_fit_switches, 10,
    {.key = "cost.local_fit_switches",
     .limits = Closed(0, 1000),
     .read_by = kReadByPlan,
     .help = "With mode `local`: end-to-end block switches measured to fit the two "
             "coefficients of its quadratic term; 0 = first-order term only."});
}

template <class Visitor>
void SolverFields(SolverSection& s, Visitor& v) {
  v(s.method, SolverMethod::kPareto,
    {.key = "solver.method",
     .read_by = kReadByPlan,
     .help = "`pareto` = per-block Pareto frontiers, then a multiple-choice knapsack over them "
             "(exact, scales to 7B); `milp` = the linearised quadratic program in GLPK directly "
             "(the cross-check)."});
  v(s.time_limit, 60.0,
    {.key = "solver.time_limit",
     .limits = Positive(),
     .read_by = kReadByPlan,
     .help = "GLPK time limit per solve, in seconds."});
  v(s.mip_gap, 0.0,
    {.key = "solver.mip_gap",
     .limits = Closed(0, 1),
     .read_by = kReadByPlan,
     .help = "Relative MIP gap at which GLPK may stop; 0 = prove optimality."});
}

// Where results go and how fast they are made; no stage's result depends on these.
template <class Visitor>
void QuantizeFields(QuantizeSection& q, Visitor& v) {
  v(q.method, QuantizeMethod::kHiq,
    {.key = "quantize.method",
     .read_by = kReadByQuantize,
     .help = "How `hiq quantize` quantizes the layers, every method at the plan's budget: `hiq` "
             "= the optimised plan + hybrid reconstruction (AdaRound on the high-impact "
             "columns, LWC on the rest); `fixed_ratio` = the fixed ratio + hybrid (with "
             "quant.bits_high 16: FP16 retention + LWC); `lwc` = the fixed ratio, LWC on the "
             "low columns and RTN on the high ones; `adaround` = the fixed ratio, AdaRound on "
             "every column; `gptq` = the fixed ratio, GPTQ with the high columns last; `rtn` = "
             "the fixed ratio by round-to-nearest."});
  v(q.inputs, ReconInputs::kFp,
    {.key = "quantize.inputs",
     .read_by = kReadByQuantize,
     .help = "Block inputs of the reconstruction: `fp` = the full-precision model's (every rank "
             "reconstructs its blocks at once), `quantized` = the output of the already "
             "quantized earlier blocks (one rank after the other along the pipeline). Either way "
             "a rank holds two blocks' inputs at a time, not its slice's."});
  v(q.steps, 5120,
    {.key = "quantize.steps",
     .limits = Closed(1, 1 << 24),
     .read_by = kReadByQuantize,
     .help = "Training steps per block (OmniQuant's W2 recipe: 40 epochs x 128 samples)."});
  v(q.batch, 1,
    {.key = "quantize.batch",
     .limits = Closed(1, 4096),
     .read_by = kReadByQuantize,
     .help = "Sequences per training step (OmniQuant: 1)."});
  v(q.lwc_lr, 1e-2,
    {.key = "quantize.lwc_lr",
     .limits = OpenClosed(0, 1),
     .read_by = kReadByQuantize,
     .help = "AdamW learning rate of the clipping logits (weight decay 0)."});
  v(q.lwc_init, 4.0,
    {.key = "quantize.lwc_init",
     .limits = Closed(-20, 20),
     .read_by = kReadByQuantize,
     .help = "Initial clipping logits: sigmoid(4) = 0.982 of each group's range."});
  v(q.round_lr, 1e-3,
    {.key = "quantize.round_lr",
     .limits = OpenClosed(0, 1),
     .read_by = kReadByQuantize,
     .help = "Adam learning rate of AdaRound's V."});
  v(q.round_lambda, 0.01,
    {.key = "quantize.round_lambda",
     .limits = Closed(0, 100),
     .read_by = kReadByQuantize,
     .help = "Weight of AdaRound's rounding regulariser."});
  v(q.beta_start, 20.0,
    {.key = "quantize.beta_start",
     .limits = Positive(),
     .read_by = kReadByQuantize,
     .help = "AdaRound's beta after the warm-up, annealed linearly to beta_end."});
  v(q.beta_end, 2.0,
    {.key = "quantize.beta_end",
     .limits = Positive(),
     .read_by = kReadByQuantize,
     .help = "AdaRound's beta at the last step."});
  v(q.warmup, 0.2,
    {.key = "quantize.warmup",
     .limits = Closed(0, 1),
     .read_by = kReadByQuantize,
     .help = "Fraction of the steps trained without the rounding regulariser."});
  v(q.seed, uint64_t{5},
    {.key = "quantize.seed",
     .read_by = kReadByQuantize,
     .help = "Seed of each block's sequence order (seeded per block)."});
  v(q.gptq_act_order, false,
    {.key = "quantize.gptq_act_order",
     .read_by = kReadByQuantize,
     .help = "GPTQ: process columns by descending Hessian diagonal (with static groups)."});
  v(q.gptq_damp, 0.01,
    {.key = "quantize.gptq_damp",
     .limits = Closed(0, 1),
     .read_by = kReadByQuantize,
     .help = "GPTQ: damping added to the Hessian diagonal, as a fraction of its mean."});
}

template <class Visitor>
void RunFields(RunConfig& c, Visitor& v) {
  v(c.output, fs::path(),
    {.key = "output",
     .default_doc = "`out/<config file stem>` under the current directory",
     .allowed_doc = "path",
     .help = "Output directory of the stage files. `--output DIR` overrides it."});
  v(c.threads, 0,
    {.key = "threads",
     .limits = Closed(0, 1024),
     .help = "OpenBLAS threads per rank; 0 = OpenBLAS's default. Results do not depend on "
             "it."});
}

// THE list: every key of a run, once.
template <class Visitor>
void ForEachField(RunConfig& c, Visitor& v) {
  ModelFields(c.model, v);
  CalibrationFields(c.calibration, v);
  QuantFields(c.quant, v);
  CostFields(c.cost, v);
  SolverFields(c.solver, v);
  QuantizeFields(c.quantize, v);
  RunFields(c, v);
}

// ---- Messages -----------------------------------------------------------------------------

[[noreturn]] void Fail(std::string_view source, const std::string& what) {
  throw ConfigError(std::string(source) + ": " + what);
}

std::string Q(std::string_view text) { return "'" + std::string(text) + "'"; }

std::string Got(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return Q(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

std::string Join(std::span<const std::string_view> names, std::string_view quote) {
  std::string out;
  for (const auto name : names) {
    if (!out.empty()) out += ", ";
    out += std::string(quote) + std::string(name) + std::string(quote);
  }
  return out;
}

// Shortest text that reads back to the same double, always recognisable as a float.
std::string FormatDouble(double value) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  HIQ_CHECK(ec == std::errc());
  std::string text(buf, end);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

// A range bound as people write it: 1048576, not 1.048576e+06.
std::string FormatBound(double value) {
  if (value == std::floor(value) && std::abs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return FormatDouble(value);
}

std::string RangeText(const Limits& l) {
  if (l.lo == -kInf && l.hi == kInf) return "any";
  const std::string lo = l.lo == -kInf ? "(-inf" : (l.lo_open ? "(" : "[") + FormatBound(l.lo);
  const std::string hi = l.hi == kInf ? "inf)" : FormatBound(l.hi) + (l.hi_open ? ")" : "]");
  return lo + ", " + hi;
}

bool InLimits(double value, const Limits& l) {
  const bool lo_ok = l.lo_open ? value > l.lo : value >= l.lo;
  const bool hi_ok = l.hi_open ? value < l.hi : value <= l.hi;
  return lo_ok && hi_ok;
}

void CheckNumber(double value, const std::string& shown, const Meta& m, std::string_view source) {
  if (m.also == value) return;
  if (InLimits(value, m.limits)) return;
  Fail(source, "key " + Q(m.key) + " = " + shown + " is out of range " + RangeText(m.limits) +
                   (m.also ? " and not " + FormatBound(*m.also) : ""));
}

// A numeric key's allowed values as docs/CONFIG.md shows them, the extra value on its side of
// the range: "0 or [8, 1048576]", "[1, 8] or 16".
std::string AllowedNumbers(const Meta& m) {
  if (!m.also) return RangeText(m.limits);
  const std::string also = FormatBound(*m.also);
  return *m.also < m.limits.lo ? also + " or " + RangeText(m.limits)
                               : RangeText(m.limits) + " or " + also;
}

std::string FormatList(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + FormatDouble(values[i]);
  return out + "]";
}

void CheckList(const std::vector<double>& values, const Meta& m, std::string_view source) {
  if (values.empty()) Fail(source, "key " + Q(m.key) + " must not be empty");
  for (const double value : values) {
    if (!InLimits(value, m.limits)) {
      Fail(source, "key " + Q(m.key) + " has element " + FormatDouble(value) + " out of range " +
                       RangeText(m.limits));
    }
  }
  for (size_t i = 1; i < values.size(); ++i) {
    if (!(values[i] > values[i - 1])) {
      Fail(source, "key " + Q(m.key) + " must be strictly increasing, got " + FormatList(values));
    }
  }
}

// ---- Per-type behaviour: Parse (YAML node -> field), Format, Check, TypeName, Allowed ---------

struct ParseContext {
  std::string_view source;  // the file name as given, or "--set"
  fs::path base_dir;        // absolute; relative paths resolve against it
};

const std::string& ScalarOf(const YAML::Node& node, const Meta& m, const ParseContext& ctx,
                            const std::string& expected) {
  if (!node.IsScalar())
    Fail(ctx.source, "key " + Q(m.key) + " must be " + expected + ", got " + Got(node));
  return node.Scalar();
}

std::optional<double> ToDouble(const std::string& text) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

fs::path NormalPath(const fs::path& path) {
  fs::path out = path.lexically_normal();
  if (!out.has_filename() && out.has_relative_path()) out = out.parent_path();  // "a/b/" -> "a/b"
  return out;
}

void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, int& out) {
  HIQ_CHECK(m.limits.lo >= INT_MIN && m.limits.hi <= INT_MAX);  // so the cast below is safe
  const std::string& text = ScalarOf(node, m, ctx, "an integer");
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) CheckNumber(kInf, text, m, ctx.source);
  if (ec != std::errc() || end != text.data() + text.size()) {
    Fail(ctx.source, "key " + Q(m.key) + " must be an integer, got " + Q(text));
  }
  CheckNumber(static_cast<double>(value), std::to_string(value), m, ctx.source);
  out = static_cast<int>(value);
}

void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, uint64_t& out) {
  const std::string& text = ScalarOf(node, m, ctx, "a non-negative integer");
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    Fail(ctx.source, "key " + Q(m.key) + " must be an integer in [0, 2^64), got " + Q(text));
  }
  out = value;
}

void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, double& out) {
  const std::string& text = ScalarOf(node, m, ctx, "a number");
  const std::optional<double> value = ToDouble(text);
  if (!value) Fail(ctx.source, "key " + Q(m.key) + " must be a finite number, got " + Q(text));
  CheckNumber(*value, FormatDouble(*value), m, ctx.source);
  out = *value;
}

void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, bool& out) {
  const std::string& text = ScalarOf(node, m, ctx, "true or false");
  if (text == "true" || text == "True" || text == "TRUE") {
    out = true;
  } else if (text == "false" || text == "False" || text == "FALSE") {
    out = false;
  } else {
    Fail(ctx.source, "key " + Q(m.key) + " must be true or false, got " + Q(text));
  }
}

template <class E>
requires std::is_enum_v<E>
void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, E& out) {
  const auto names = Choices(out);
  const std::string& text = ScalarOf(node, m, ctx, "one of: " + Join(names, ""));
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == text) {
      out = static_cast<E>(i);
      return;
    }
  }
  Fail(ctx.source, "key " + Q(m.key) + " = " + Q(text) + " is not one of: " + Join(names, ""));
}

// null or "" = unset; relative paths resolve against ctx.base_dir.
void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx, fs::path& out) {
  if (node.IsNull()) {
    out.clear();
    return;
  }
  const std::string& text = ScalarOf(node, m, ctx, "a path");
  out = text.empty() ? fs::path() : NormalPath(ctx.base_dir / text);
}

void Parse(const YAML::Node& node, const Meta& m, const ParseContext& ctx,
           std::vector<double>& out) {
  if (!node.IsSequence()) {
    Fail(ctx.source, "key " + Q(m.key) + " must be a list of numbers, got " + Got(node));
  }
  std::vector<double> values;
  for (const YAML::Node& element : node) {
    const std::optional<double> value =
        element.IsScalar() ? ToDouble(element.Scalar()) : std::nullopt;
    if (!value) {
      Fail(ctx.source,
           "key " + Q(m.key) + " must be a list of numbers, got " + Got(element) + " in it");
    }
    values.push_back(*value);
  }
  CheckList(values, m, ctx.source);
  out = std::move(values);
}

std::string QuoteYaml(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const auto byte = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (byte < 0x20 || byte == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", byte);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string Format(int value) { return std::to_string(value); }
std::string Format(uint64_t value) { return std::to_string(value); }
std::string Format(double value) { return FormatDouble(value); }
std::string Format(bool value) { return value ? "true" : "false"; }
std::string Format(const fs::path& value) { return QuoteYaml(value.string()); }
std::string Format(const std::vector<double>& values) { return FormatList(values); }
template <class E>
requires std::is_enum_v<E> std::string Format(E value) { return std::string(EnumName(value)); }

void Check(int value, const Meta& m, std::string_view source) {
  CheckNumber(value, std::to_string(value), m, source);
}
void Check(double value, const Meta& m, std::string_view source) {
  CheckNumber(value, FormatDouble(value), m, source);
}
void Check(const std::vector<double>& values, const Meta& m, std::string_view source) {
  CheckList(values, m, source);
}
template <class T>
void Check(const T&, const Meta&, std::string_view) {}  // choices, bools, paths: any value goes

std::string TypeName(int) { return "int"; }
std::string TypeName(uint64_t) { return "uint64"; }
std::string TypeName(double) { return "float"; }
std::string TypeName(bool) { return "bool"; }
std::string TypeName(const fs::path&) { return "path"; }
std::string TypeName(const std::vector<double>&) { return "list of float"; }
template <class E>
requires std::is_enum_v<E> std::string TypeName(E) { return "choice"; }

std::string Allowed(int, const Meta& m) { return AllowedNumbers(m); }
std::string Allowed(uint64_t, const Meta&) { return "[0, 2^64)"; }
std::string Allowed(double, const Meta& m) { return AllowedNumbers(m); }
std::string Allowed(bool, const Meta&) { return "`true`, `false`"; }
std::string Allowed(const fs::path&, const Meta&) { return "path"; }
std::string Allowed(const std::vector<double>&, const Meta& m) {
  return "non-empty, strictly increasing, each in " + RangeText(m.limits);
}
template <class E>
requires std::is_enum_v<E> std::string Allowed(E value, const Meta&) {
  return Join(Choices(value), "`");
}

// ---- Visitors ------------------------------------------------------------------------------

struct SetDefaults {
  template <class T>
  void operator()(T& field, const std::type_identity_t<T>& def, const Meta&) const {
    field = def;
  }
};

// Parses `node` into the field named `key`.
struct AssignKey {
  std::string_view key;
  const YAML::Node& node;
  const ParseContext& ctx;
  bool found = false;
  template <class T>
  void operator()(T& field, const std::type_identity_t<T>&, const Meta& m) {
    if (m.key != key) return;
    Parse(node, m, ctx, field);
    found = true;
  }
};

// Where each key's value came from (the file or --set), for messages about the final config.
struct Origins {
  std::map<std::string, std::string, std::less<>> by_key;
  std::string fallback;  // keys left at their default: the file is the place to set them
  std::string Of(std::string_view key) const {
    const auto it = by_key.find(key);
    return it == by_key.end() ? fallback : it->second;
  }
  // The places that set any of `keys`, each once, in the order of the keys.
  std::string Of(std::initializer_list<std::string_view> keys) const {
    std::vector<std::string> places;
    for (const std::string_view key : keys) {
      std::string place = Of(key);
      if (std::find(places.begin(), places.end(), place) == places.end()) {
        places.push_back(std::move(place));
      }
    }
    std::string out;
    for (const std::string& place : places) out += (out.empty() ? "" : ", ") + place;
    return out;
  }
};

struct CheckRanges {
  const Origins& origins;
  template <class T>
  void operator()(T& field, const std::type_identity_t<T>&, const Meta& m) const {
    Check(field, m, origins.Of(m.key));
  }
};

// One row per key: everything ToYaml, CanonicalText and ConfigMarkdown print.
struct Row {
  std::string key, type, value, default_text, allowed;
  std::string_view help;
  StageSet read_by;
};
struct Describe {
  std::vector<Row> rows;
  template <class T>
  void operator()(T& field, const std::type_identity_t<T>& def, const Meta& m) {
    rows.push_back({m.key, TypeName(field), Format(field),
                    m.default_doc.empty() ? "`" + Format(def) + "`" : std::string(m.default_doc),
                    m.allowed_doc.empty() ? Allowed(field, m) : std::string(m.allowed_doc), m.help,
                    m.read_by});
  }
};

std::vector<Row> Rows(const RunConfig& config) {
  RunConfig copy = config;  // the list takes a mutable config; Describe only reads it
  Describe describe;
  ForEachField(copy, describe);
  return describe.rows;
}

// The valid keys, and the sections (proper prefixes) they sit in.
struct KeySet {
  std::vector<std::string> leaves;
  std::set<std::string, std::less<>> leaf_set, sections;
  bool IsLeaf(std::string_view key) const { return leaf_set.contains(key); }
  bool IsSection(std::string_view key) const { return sections.contains(key); }
};

const KeySet& Keys() {
  static const KeySet keys = [] {
    KeySet k;
    for (const Row& row : Rows(RunConfig())) {
      HIQ_CHECK(k.leaf_set.insert(row.key).second);  // every key appears once in the list
      k.leaves.push_back(row.key);
      for (size_t dot = row.key.find('.'); dot != std::string::npos;
           dot = row.key.find('.', dot + 1)) {
        k.sections.insert(row.key.substr(0, dot));
      }
    }
    return k;
  }();
  return keys;
}

// Optimal string alignment distance: Levenshtein plus transpositions ("lwo" -> "low" is 1).
size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// True if `abbreviation` can be read off `word` left to right ("n_seqs" in "n_sequences").
bool IsSubsequence(std::string_view abbreviation, std::string_view word) {
  size_t at = 0;
  for (const char ch : word) at += at < abbreviation.size() && abbreviation[at] == ch;
  return at == abbreviation.size();
}

// The key the user most likely meant: an abbreviated key in the same section first (shortest),
// else the nearest key or section by edit distance, if it is near enough to be help, not noise.
std::string UnknownKey(const std::string& key) {
  const KeySet& keys = Keys();
  const size_t dot = key.rfind('.');
  const std::string parent = dot == std::string::npos ? "" : key.substr(0, dot + 1);
  const std::string_view name = std::string_view(key).substr(parent.size());
  std::string best;
  for (const std::string& leaf : keys.leaves) {
    if (leaf.starts_with(parent) && leaf.find('.', parent.size()) == std::string::npos &&
        IsSubsequence(name, std::string_view(leaf).substr(parent.size())) &&
        (best.empty() || leaf.size() < best.size())) {
      best = leaf;
    }
  }
  if (best.empty()) {
    size_t best_distance = std::max<size_t>(2, key.size() / 3) + 1;
    auto consider = [&](const std::string& candidate) {
      const size_t distance = EditDistance(key, candidate);
      if (distance < best_distance) {
        best_distance = distance;
        best = candidate;
      }
    };
    for (const std::string& leaf : keys.leaves) consider(leaf);
    for (const std::string& section : keys.sections) consider(section);
  }
  if (best.empty()) return "unknown key " + Q(key) + " (docs/CONFIG.md lists the keys)";
  return "unknown key " + Q(key) + " (did you mean " + Q(best) + "?)";
}

// ---- Parsing -------------------------------------------------------------------------------

YAML::Node LoadYaml(const std::string& text, std::string_view source, std::string_view what) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) Fail(source, "YAML syntax error" + std::string(what) + ": " + e.msg);
    Fail(source, "YAML syntax error" + std::string(what) + " at line " +
                     std::to_string(e.mark.line + 1) + ", column " +
                     std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (documents.size() > 1) {
    Fail(source, "expected one YAML document" + std::string(what) + ", found " +
                     std::to_string(documents.size()));
  }
  return documents.empty() ? YAML::Node() : documents[0];
}

void AssignLeaf(RunConfig& config, const std::string& key, const YAML::Node& node,
                const ParseContext& ctx, Origins& origins) {
  AssignKey assign{key, node, ctx};
  ForEachField(config, assign);
  HIQ_CHECK(assign.found);
  origins.by_key[key] = std::string(ctx.source);
}

// Walks a YAML map; `prefix` is the dotted section it sits in ("" at the top). Dotted keys
// ("quant.bits_low: 3") are accepted at any level, as on the command line.
void ApplyMap(RunConfig& config, const YAML::Node& map, const std::string& prefix,
              const ParseContext& ctx, std::set<std::string>& seen, Origins& origins) {
  for (const auto& entry : map) {
    if (!entry.first.IsScalar()) {
      Fail(ctx.source, "keys must be names, got " + Got(entry.first) +
                           (prefix.empty() ? "" : " in section " + Q(prefix)));
    }
    const std::string key =
        prefix.empty() ? entry.first.Scalar() : prefix + "." + entry.first.Scalar();
    if (!seen.insert(key).second) Fail(ctx.source, "duplicate key " + Q(key));
    if (Keys().IsLeaf(key)) {
      AssignLeaf(config, key, entry.second, ctx, origins);
    } else if (Keys().IsSection(key)) {
      if (entry.second.IsNull()) continue;  // "cost:" with nothing under it
      if (!entry.second.IsMap()) {
        Fail(ctx.source,
             "key " + Q(key) + " is a section and must hold keys, got " + Got(entry.second));
      }
      ApplyMap(config, entry.second, key, ctx, seen, origins);
    } else {
      Fail(ctx.source, UnknownKey(key));
    }
  }
}

// "dotted.key=value"; the value is YAML (so lists and quoting work as in the file).
void ApplyOverride(RunConfig& config, const std::string& override_text, Origins& origins) {
  constexpr std::string_view kSource = "--set";
  const size_t eq = override_text.find('=');
  if (eq == std::string::npos || eq == 0) {
    Fail(kSource, "expected key=value, got " + Q(override_text));
  }
  const std::string key = override_text.substr(0, eq);
  if (Keys().IsSection(key)) {
    Fail(kSource,
         "key " + Q(key) + " is a section; set one of its keys, e.g. " +
             Q(*std::find_if(Keys().leaves.begin(), Keys().leaves.end(),
                             [&](const std::string& k) { return k.starts_with(key + "."); })));
  }
  if (!Keys().IsLeaf(key)) Fail(kSource, UnknownKey(key));
  const YAML::Node node =
      LoadYaml(override_text.substr(eq + 1), kSource, " in the value of " + Q(key));
  const ParseContext ctx{kSource, fs::current_path()};
  AssignLeaf(config, key, node, ctx, origins);
}

// ---- Validation ----------------------------------------------------------------------------

void RequireExisting(const fs::path& path, const std::string& key, bool directory,
                     const Origins& origins, std::string_view hint = {}) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  std::string problem;
  if (!fs::exists(status)) {
    problem = "does not exist";
  } else if (directory && !fs::is_directory(status)) {
    problem = "is not a directory";
  } else if (!directory && !fs::is_regular_file(status)) {
    problem = "is not a regular file";
  } else {
    return;
  }
  Fail(origins.Of(key),
       "key " + Q(key) + " = " + Q(path.string()) + " " + problem + std::string(hint));
}

// The fewest average bits per weight that any plan can take under `q`, from the terms of
// docs/BITS.md that do not depend on the layer shapes: per weight, (1 - r) (b_L + (16 + b_L) / g)
// for the low channels' codes and group scales/zeros plus r b_H for the high channels' codes,
// where r, a layer's high fraction, lies between the smallest ratio and 1. That is linear in r,
// so its least value is at one end. The high part's own scale and the channel indices add to it
// on a real model, so the solver can still refuse a budget above this bound; but a budget below
// it fails at load instead of after the Fisher pass.
double MinAverageBits(const QuantSection& q) {
  constexpr double kScaleBits = 16;  // FP16, as in LayerBitsBreakdown
  const double low =
      q.bits_low + (q.group_size > 0 ? (kScaleBits + q.bits_low) / q.group_size : 0.0);
  const auto at = [&](double r) { return (1 - r) * low + r * q.bits_high; };
  return std::min(at(q.ratios.front()), at(1.0));
}

// The rules between quant keys that the plan stage would otherwise refuse only after the
// Fisher pass.
void ValidateQuant(const QuantSection& q, const Origins& origins) {
  if (q.bits_high <= q.bits_low) {
    Fail(origins.Of({"quant.bits_high", "quant.bits_low"}),
         "key 'quant.bits_high' = " + std::to_string(q.bits_high) +
             " must be greater than key 'quant.bits_low' = " + std::to_string(q.bits_low));
  }
  const std::string budget_sources = origins.Of({"quant.budget_bits", "quant.budget_ratio"});
  if (q.budget_bits > 0 && q.budget_ratio > 0) {
    Fail(budget_sources,
         "keys 'quant.budget_bits' and 'quant.budget_ratio' are both set; set exactly one");
  }
  if (q.budget_bits == 0 && q.budget_ratio == 0) {
    Fail(budget_sources,
         "neither key 'quant.budget_bits' nor 'quant.budget_ratio' is set; set exactly one. "
         "HINT: 'quant: {budget_ratio: 0.1}' spends what a fixed 10% ratio costs");
  }
  // Rounded down to the 5 decimals the message shows, so that a budget at the shown value
  // passes; the 1e-6 keeps 2.57125 from showing as 2.57124 (the bound leaves out the channel
  // indices, so it is below every real plan by far more than that).
  const double min_bits = std::floor(MinAverageBits(q) * 1e5 + 1e-6) / 1e5;
  if (q.budget_bits > 0 && q.budget_bits < min_bits) {
    Fail(origins.Of({"quant.budget_bits", "quant.bits_low", "quant.bits_high", "quant.group_size",
                     "quant.ratios"}),
         "key 'quant.budget_bits' = " + FormatDouble(q.budget_bits) +
             " cannot be met: codes and group scales alone take at least " +
             FormatDouble(min_bits) + " bits per weight with keys 'quant.bits_low' = " +
             std::to_string(q.bits_low) + ", 'quant.bits_high' = " + std::to_string(q.bits_high) +
             ", 'quant.group_size' = " + std::to_string(q.group_size) +
             " and 'quant.ratios' from " + FormatDouble(q.ratios.front()));
  }
  if (q.budget_ratio > 0 && q.budget_ratio < q.ratios.front()) {
    Fail(origins.Of({"quant.budget_ratio", "quant.ratios"}),
         "key 'quant.budget_ratio' = " + FormatDouble(q.budget_ratio) +
             " is below the smallest of key 'quant.ratios' = " + FormatList(q.ratios) +
             ", so no candidate ratio fits the budget");
  }
}

// Each calibration set's path matches its source and exists; returns the first key whose file
// is text to tokenize, or "".
std::string ValidateSampleSets(const CalibrationSection& c, const Origins& origins) {
  std::string text_reader;
  const std::pair<std::string, const SampleSetConfig*> sets[] = {
      {"calibration.fisher", &c.fisher},
      {"calibration.cost", &c.cost},
      {"calibration.check", &c.check},
      {"calibration.reconstruction", &c.reconstruction}};
  for (const auto& [name, set] : sets) {
    const std::string path_key = name + ".path", source_key = name + ".source";
    const std::string sources = origins.Of({path_key, source_key});
    if (set->source == SampleSource::kGenerate) {
      if (!set->path.empty()) {
        Fail(sources, "key " + Q(path_key) + " is set but key " + Q(source_key) +
                          " is 'generate', which reads no file. HINT: remove it, or pass --set " +
                          path_key + "=");
      }
      continue;
    }
    if (set->path.empty()) {
      Fail(sources, "key " + Q(path_key) + " must be set when key " + Q(source_key) + " is " +
                        Q(EnumName(set->source)));
    }
    RequireExisting(set->path, path_key, /*directory=*/false, origins);
    if (set->source == SampleSource::kText && text_reader.empty()) text_reader = path_key;
  }
  return text_reader;
}

// Ranges first, then the rules between keys, then the files, so that a message names the first
// thing to fix in the file before anything about the disk.
void Validate(const RunConfig& c, const Origins& origins) {
  RunConfig copy = c;
  CheckRanges check_ranges{origins};
  ForEachField(copy, check_ranges);
  if (c.model.path.empty()) {
    Fail(origins.Of("model.path"),
         "missing required key model.path. HINT: add 'model: {path: DIR}' with a Hugging Face "
         "LLaMA checkpoint directory, or pass --set model.path=DIR");
  }
  ValidateQuant(c.quant, origins);
  if (c.quantize.beta_start < c.quantize.beta_end) {
    Fail(origins.Of({"quantize.beta_start", "quantize.beta_end"}),
         "key 'quantize.beta_start' = " + FormatDouble(c.quantize.beta_start) +
             " is below key 'quantize.beta_end' = " + FormatDouble(c.quantize.beta_end) +
             "; AdaRound anneals beta downwards");
  }
  RequireExisting(c.model.path, "model.path", /*directory=*/true, origins,
                  ". HINT: point model.path at a Hugging Face LLaMA checkpoint directory, in the "
                  "file or with --set model.path=DIR");
  const std::string text_reader = ValidateSampleSets(c.calibration, origins);
  if (!text_reader.empty()) {
    if (c.model.tokenizer.empty()) {
      Fail(origins.Of("model.tokenizer"),
           "key 'model.tokenizer' is unset but " + Q(text_reader) + " is text to tokenize");
    }
    RequireExisting(c.model.tokenizer, "model.tokenizer", /*directory=*/false, origins,
                    " (needed to tokenize " + Q(text_reader) + ")");
  }
  if (c.output.empty()) Fail(origins.Of("output"), "key 'output' is unset");
}

std::string EscapeMarkdownCell(std::string_view text) {
  std::string out;
  for (const char ch : text) {
    if (ch == '|') out += '\\';
    out += ch;
  }
  return out;
}

}  // namespace

std::string_view Name(SampleSource value) { return EnumName(value); }
std::string_view Name(ChannelScore value) { return EnumName(value); }
std::string_view Name(CostMode value) { return EnumName(value); }
std::string_view Name(CostCenter value) { return EnumName(value); }
std::string_view Name(CostCandidates value) { return EnumName(value); }
std::string_view Name(SolverMethod value) { return EnumName(value); }
std::string_view Name(QuantizeMethod value) { return EnumName(value); }
std::string_view Name(ReconInputs value) { return EnumName(value); }
std::string_view Name(ConfigStage value) { return EnumName(value); }

RunConfig::RunConfig() {
  SetDefaults set_defaults;
  ForEachField(*this, set_defaults);
}

RunConfig ParseConfig(std::string_view yaml_text, const fs::path& base_dir,
                      const std::string& source_name, const std::vector<std::string>& overrides) {
  RunConfig config;
  Origins origins;
  origins.fallback = source_name;
  const ParseContext ctx{source_name, NormalPath(fs::absolute(base_dir))};
  const YAML::Node root = LoadYaml(std::string(yaml_text), source_name, "");
  if (root.IsMap()) {
    std::set<std::string> seen;
    ApplyMap(config, root, "", ctx, seen, origins);
  } else if (!root.IsNull()) {
    Fail(source_name, "the top level must be a map of keys, got " + Got(root));
  }
  for (const std::string& override_text : overrides) ApplyOverride(config, override_text, origins);

  // Defaults that follow other keys are resolved last, so that --set model.path=DIR moves the
  // tokenizer along with it.
  if (config.model.tokenizer.empty() && !config.model.path.empty()) {
    config.model.tokenizer = config.model.path / "tokenizer.model";
  }
  if (config.output.empty()) {
    config.output = NormalPath(fs::current_path() / "out" / fs::path(source_name).stem());
  }
  Validate(config, origins);
  return config;
}

RunConfig LoadConfig(const fs::path& yaml_file, const std::vector<std::string>& overrides) {
  const std::string name = yaml_file.string();
  std::error_code ec;
  if (!fs::exists(yaml_file, ec)) {
    throw IoError("LoadConfig: config file " + Q(name) + " does not exist");
  }
  if (fs::is_directory(yaml_file, ec)) {
    throw IoError("LoadConfig: config file " + Q(name) + " is a directory, expected a YAML file");
  }
  std::ifstream in(yaml_file, std::ios::binary);
  if (!in) {
    throw IoError("LoadConfig: cannot open config file " + Q(name) + ": " + std::strerror(errno));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError("LoadConfig: cannot read config file " + Q(name));
  return ParseConfig(text.str(), fs::absolute(yaml_file).parent_path(), name, overrides);
}

void ValidateConfig(const RunConfig& config, const std::string& source_name) {
  Origins origins;
  origins.fallback = source_name;
  Validate(config, origins);
}

std::string ToYaml(const RunConfig& config) {
  std::string out = "# hiq run config, resolved: every key, absolute paths (docs/CONFIG.md).\n";
  for (const ConfigStage stage : AllStages()) {
    out += "# fingerprint of stage " + std::string(Name(stage)) + ": " +
           Fingerprint(config, stage) + "\n";
  }
  std::vector<std::string> open;  // the sections enclosing the previous key
  for (const Row& row : Rows(config)) {
    std::vector<std::string> parts;
    for (size_t begin = 0;;) {
      const size_t dot = row.key.find('.', begin);
      parts.push_back(row.key.substr(begin, dot - begin));
      if (dot == std::string::npos) break;
      begin = dot + 1;
    }
    size_t common = 0;
    while (common < open.size() && common + 1 < parts.size() && open[common] == parts[common]) {
      ++common;
    }
    open.resize(common);
    for (size_t i = common; i + 1 < parts.size(); ++i) {
      out += std::string(2 * i, ' ') + parts[i] + ":\n";
      open.push_back(parts[i]);
    }
    out += std::string(2 * (parts.size() - 1), ' ') + parts.back() + ": " + row.value + "\n";
  }
  return out;
}

std::string CanonicalText(const RunConfig& config, ConfigStage stage) {
  // Bump the version when the formatting below changes. The stage's name is in the text so
  // that two stages reading the same keys still have fingerprints of their own.
  std::string out = "hiq-config-v2 stage " + std::string(Name(stage)) + "\n";
  for (const Row& row : Rows(config)) {
    if (Reads(row.read_by, stage)) out += row.key + ": " + row.value + "\n";
  }
  return out;
}

std::string CanonicalTextOf(const RunConfig& config, std::string_view part,
                            std::span<const std::string_view> keys) {
  const std::vector<Row> rows = Rows(config);
  auto under = [](const std::string& key, std::string_view name) {
    return key == name ||
           (key.size() > name.size() && key.starts_with(name) && key[name.size()] == '.');
  };
  for (std::string_view name : keys) {
    if (std::none_of(rows.begin(), rows.end(), [&](const Row& r) { return under(r.key, name); })) {
      throw ConfigError("CanonicalTextOf: '" + std::string(name) +
                        "' is not a config key or "
                        "section");
    }
  }
  std::string out = "hiq-config-v2 stage " + std::string(part) + "\n";
  for (const Row& row : rows) {
    if (std::any_of(keys.begin(), keys.end(),
                    [&](std::string_view k) { return under(row.key, k); }))
      out += row.key + ": " + row.value + "\n";
  }
  return out;
}

std::string Fingerprint(const RunConfig& config, ConfigStage stage) {
  return Sha256Hex(CanonicalText(config, stage));
}

std::vector<std::string> ConfigKeys() { return Keys().leaves; }

std::string ConfigMarkdown() {
  std::string out = R"(# hiq run configuration

<!-- Generated by hiq::ConfigMarkdown() from the key list in src/config/config.cpp: do not edit.
     tests/test_config.cpp fails when this file is stale; regenerate it with
     HIQ_UPDATE_DOCS=1 build/tests/test_config --gtest_filter='ConfigDocs.*' -->

A run (`hiq plan CONFIG.yaml`) is described by one YAML file of nested sections, e.g.
`quant: {bits_low: 2, bits_high: 3}`; a dotted key such as `quant.bits_low: 2` is accepted too.
Every key except `model.path` has a default, so a config lists only what it changes (see
`configs/`). `hiq config CONFIG.yaml` prints the resolved config: every key, paths made
absolute, plus each stage's fingerprint; that output loads back to the same config. A key is
listed here only once a stage reads it ("read by"); any other key is an unknown key.

**Paths.** A relative path in a config file is resolved against the directory of that file, so
a config works from any working directory; a relative path given with `--set` is resolved
against the current directory. `model.tokenizer` defaults to `tokenizer.model` inside
`model.path`, and `output` to `out/<config file stem>` under the current directory. An empty
path (`""`) means unset.

**Overrides.** `--set key=value` (repeatable, applied in order after the file) sets one dotted
key; the value is read as YAML, e.g. `--set quant.ratios=[0.05,0.1]` or
`--set calibration.cost.source=text`. `--output DIR` is `--set output=DIR`.

**Checks.** All at load, before any stage runs: unknown keys (with the closest valid key),
wrong types, values out of range, inconsistent keys and missing input files are errors that
name the key and where it was set (the file, or `--set`). Exactly one of `quant.budget_bits` and
`quant.budget_ratio` must be set; `quant.bits_high` must be greater than `quant.bits_low`;
`quant.budget_ratio` must be at least the smallest of `quant.ratios`, and `quant.budget_bits` at
least what codes and group scales alone take at the smallest ratio (docs/BITS.md), so that a
budget no plan can meet fails before the Fisher pass.

**Calibration sets.** `calibration.fisher` gives the gradients whose squares rank the channels
(real text works best); `calibration.cost` the sequences on which the loss differences of the
cost matrix are measured (in-domain: sampled from the model when no in-domain text exists);
`calibration.check` held-out sequences on which every plan's loss is measured before it is kept.

**Fingerprint.** A stage's output is stamped with the SHA-256 of the canonical text of the keys
that stage reads (its name in "read by"), so that changing a key one stage ignores does not
invalidate that stage's result. Keys that cannot change any result (`output`, `threads`) are
read by none.

| key | type | default | allowed | read by | meaning |
|---|---|---|---|---|---|
)";
  for (const Row& row : Rows(RunConfig())) {
    out += "| `" + row.key + "` | " + row.type + " | " + EscapeMarkdownCell(row.default_text) +
           " | " + EscapeMarkdownCell(row.allowed) + " | " + StageNames(row.read_by) + " | " +
           EscapeMarkdownCell(row.help) + " |\n";
  }
  return out;
}

}  // namespace hiq
