// hiq/config/config.h - the run configuration: what `hiq plan CONFIG.yaml` does.
//
// A RunConfig is plain structs. Every field is listed exactly once, in one visitor list in
// src/config/config.cpp (the gemma.cpp gemma_args.h ForEach pattern), with its dotted YAML key,
// default, allowed range or choices, the stages that read it and help text. That list drives
// YAML parsing, `--set key=value` overrides (the value is parsed as YAML by the same code),
// validation, ToYaml, each stage's canonical text behind Fingerprint() and docs/CONFIG.md, so
// adding a key is one entry there. A key is listed only once a stage reads it: a config that
// sets anything else gets an "unknown key" error rather than a setting that silently does
// nothing.
//
// Paths: a relative path in a YAML file is resolved against that file's directory (configs work
// from any cwd); a relative path in a `--set` against the current directory. All are stored as
// lexically normal absolute paths. Defaults that depend on other keys are resolved after the
// overrides: model.tokenizer = <model.path>/tokenizer.model, output = <cwd>/out/<config stem>.
//
// Errors: a ConfigError whose message starts with where the value was set (the YAML file as
// named by the caller, or `--set`) and names the dotted key, what was found and what is allowed:
// "config.yaml: key 'quant.bits_low' = 12 is out of range [1, 8]". An unreadable file is an
// IoError. No global state: every function is thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hiq/base/text.h"  // Newlines

namespace hiq {

// Choice-valued keys. The YAML spelling of each value is Name(value) (lower case, as listed).
enum class SampleSource { kText, kTokens, kGenerate };  // text | tokens | generate
enum class ChannelScore { kFisher, kFisherImpact };     // fisher | fisher_impact
enum class CostMode { kLoss, kLocal, kFisher };         // loss | local | fisher
enum class CostCenter { kPlan, kFp };                   // plan | fp
enum class CostCandidates { kRtn, kGptq };              // rtn | gptq
enum class SolverMethod { kPareto, kMilp };             // pareto | milp
std::string_view Name(SampleSource value);              // e.g. "generate"
std::string_view Name(ChannelScore value);
std::string_view Name(CostMode value);
std::string_view Name(CostCenter value);
std::string_view Name(CostCandidates value);
std::string_view Name(SolverMethod value);
// How the layers are quantized (DESIGN.md 1.5 and the baselines), at the plan's bits.
enum class QuantizeMethod { kHiq, kFixedRatio, kLwc, kAdaRound, kGptq, kRtn };
// hiq | fixed_ratio | lwc | adaround | gptq | rtn
enum class ReconInputs { kFp, kQuantized };  // fp | quantized
std::string_view Name(QuantizeMethod value);
std::string_view Name(ReconInputs value);

// The stages that read the config. Every key names the stages that read it (docs/CONFIG.md's
// "read by" column), and a stage's fingerprint covers exactly those keys, so that a key one
// stage ignores cannot invalidate that stage's result. A new stage (e.g. quantize) adds its
// enumerator here, its name in src/config/config.cpp, and that name to each key it reads.
enum class ConfigStage { kPlan, kQuantize };  // plan | quantize
std::string_view Name(ConfigStage value);

// Field meanings, defaults and ranges: docs/CONFIG.md (generated from the visitor list). The
// zero initialisers below are placeholders; RunConfig() sets the documented defaults.
struct SampleSetConfig {  // calibration.fisher / .cost / .check
  SampleSource source = SampleSource::kGenerate;
  std::filesystem::path path;         // text or token file; empty for kGenerate
  Newlines newlines = Newlines::kLf;  // how a text file's CRLF / CR are read (kText only)
  int n_sequences = 0;
  int seq_len = 0;
  uint64_t seed = 0;
  double temperature = 0.0;  // kGenerate only
  friend bool operator==(const SampleSetConfig&, const SampleSetConfig&) = default;
};
struct ModelSection {
  std::filesystem::path path;       // HF LLaMA checkpoint directory (required)
  std::filesystem::path tokenizer;  // SentencePiece tokenizer.model
  friend bool operator==(const ModelSection&, const ModelSection&) = default;
};
struct CalibrationSection {
  SampleSetConfig fisher;          // gradients -> Fisher channel scores
  SampleSetConfig cost;            // loss differences of the cost matrix
  SampleSetConfig check;           // held-out measurement of each plan
  SampleSetConfig reconstruction;  // block inputs of the quantize stage's reconstruction
  friend bool operator==(const CalibrationSection&, const CalibrationSection&) = default;
};
struct QuantSection {
  int bits_low = 0;            // b_L
  int bits_high = 0;           // b_H; 16 = FP16 retention
  int group_size = 0;          // 0 = one group per output row
  std::vector<double> ratios;  // candidate high-impact ratios R, strictly increasing
  double budget_bits = 0.0;    // average bits per quantized weight; 0 = unset
  double budget_ratio = 0.0;   // budget = bits of this fixed ratio in every layer; 0 = unset
  ChannelScore score = ChannelScore::kFisher;
  friend bool operator==(const QuantSection&, const QuantSection&) = default;
};
struct CostSection {
  CostMode mode = CostMode::kLoss;
  CostCenter center = CostCenter::kPlan;
  CostCandidates candidates = CostCandidates::kRtn;
  bool pairs = false;
  int refine = 0;
  int local_fit_switches = 0;
  friend bool operator==(const CostSection&, const CostSection&) = default;
};
struct SolverSection {
  SolverMethod method = SolverMethod::kPareto;
  double time_limit = 0.0;  // seconds
  double mip_gap = 0.0;
  friend bool operator==(const SolverSection&, const SolverSection&) = default;
};

struct QuantizeSection {
  QuantizeMethod method = QuantizeMethod::kHiq;
  ReconInputs inputs = ReconInputs::kFp;
  int steps = 0;  // reconstruction steps per block
  int batch = 0;  // sequences per step
  double lwc_lr = 0.0, lwc_init = 0.0;
  double round_lr = 0.0, round_lambda = 0.0, beta_start = 0.0, beta_end = 0.0, warmup = 0.0;
  uint64_t seed = 0;  // the sequence order of each block's training
  bool gptq_act_order = false;
  double gptq_damp = 0.0;
  friend bool operator==(const QuantizeSection&, const QuantizeSection&) = default;
};

// A whole run. A value type: copy freely; not synchronised (share it read-only across threads).
struct RunConfig {
  RunConfig();  // every key at its documented default; model.path empty (it is required)
  ModelSection model;
  CalibrationSection calibration;
  QuantSection quant;
  CostSection cost;
  SolverSection solver;
  QuantizeSection quantize;
  std::filesystem::path output;
  int threads;  // OpenBLAS threads per rank; 0 = OpenBLAS's default
  friend bool operator==(const RunConfig&, const RunConfig&) = default;
};

// Reads, parses, overrides and validates `yaml_file`. `overrides` are "dotted.key=value" strings
// (from `--set`, or e.g. "output=DIR" for `--output DIR`), applied in order after the file.
// Throws IoError if the file cannot be read, ConfigError for anything wrong in it.
RunConfig LoadConfig(const std::filesystem::path& yaml_file,
                     const std::vector<std::string>& overrides = {});

// As LoadConfig, from text: relative paths resolve against `base_dir`, messages start with
// `source_name`, and the default output is <cwd>/out/<stem of source_name>.
RunConfig ParseConfig(std::string_view yaml_text, const std::filesystem::path& base_dir,
                      const std::string& source_name,
                      const std::vector<std::string>& overrides = {});

// Checks ranges, cross-field rules and that input paths exist (what ParseConfig checks last);
// for configs built in code. Throws ConfigError with messages starting with `source_name`.
void ValidateConfig(const RunConfig& config, const std::string& source_name);

// The resolved config as YAML with every key (what `hiq config` prints). ParseConfig of it, from
// any directory, gives back an equal RunConfig.
std::string ToYaml(const RunConfig& config);

// Stable flat text (a header naming the stage, then "key: value" per line, list order, fixed
// number formatting) of the keys `stage` reads, and no others: keys such as `output` and
// `threads`, which cannot change a result, are read by no stage, so that moving the output or
// changing the thread count does not invalidate a --resume. Fingerprint() is its SHA-256 (hex).
std::string CanonicalText(const RunConfig& config, ConfigStage stage);
std::string Fingerprint(const RunConfig& config, ConfigStage stage);
// The same text for a part of a stage that reads fewer keys (a resume entry of the Fisher scores,
// of one round's cost terms): the header names `part`, then the rows of `keys`, each a whole key
// or a section ("calibration.cost" takes every key under it), in list order. Throws ConfigError
// for a name that is neither, so that a misspelt key cannot drop out of a fingerprint.
std::string CanonicalTextOf(const RunConfig& config, std::string_view part,
                            std::span<const std::string_view> keys);

// Every dotted key, in list order (for CLI help and completion).
std::vector<std::string> ConfigKeys();

// The reference page docs/CONFIG.md: intro plus one table row per key (default, range, the
// stages that read it, help).
std::string ConfigMarkdown();

}  // namespace hiq
