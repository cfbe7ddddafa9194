// Tests of hiq/config/config.h: the shipped configs, defaults, path resolution, --set, the YAML and
// fingerprint round trips, every error message, and that docs/CONFIG.md is the generated text.
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "hiq/base/error.h"   // ConfigError, IoError
#include "hiq/base/sha256.h"  // Sha256Hex
#include "hiq/config/config.h"
#include "hiq/quant/quant.h"  // ValidateQuantSpec: what the quant keys must agree with
#include "test_util.h"        // DataDir, SourceDir, TempDir, EXPECT_THROW_MSG

namespace hiq {
namespace {

namespace fs = std::filesystem;
using test::DataDir;
using test::SourceDir;
using test::TempDir;

fs::path Stories() { return (DataDir() / "stories260K").lexically_normal(); }
fs::path WikiValid() { return (DataDir() / "text/wikitext-2/valid.txt").lexically_normal(); }
fs::path TinyValid() {
  return (DataDir() / "text/tinystories/valid-head30KB.txt").lexically_normal();
}
fs::path TinySample() { return (DataDir() / "text/tinystories/sample.txt").lexically_normal(); }
fs::path ConfigFile(const std::string& name) { return SourceDir() / "configs" / name; }

// The smallest valid config: the required model path, the Fisher text and a budget. Dotted
// top-level keys, so that a test can add a `quant:` or `calibration:` section of its own.
std::string MinimalYaml() {
  return "model.path: \"" + Stories().string() + "\"\n" + "calibration.fisher.path: \"" +
         WikiValid().string() + "\"\n" + "quant.budget_ratio: 0.1\n";
}
std::string WithoutLine(std::string yaml, const std::string& line_start) {
  const size_t begin = yaml.find(line_start);
  return begin == std::string::npos ? yaml : yaml.erase(begin, yaml.find('\n', begin) - begin + 1);
}

RunConfig Parse(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return ParseConfig(yaml, "/base", "config.yaml", overrides);
}

size_t Occurrences(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

// Changes the working directory for one test and restores it.
class CwdGuard {
 public:
  explicit CwdGuard(const fs::path& dir) : saved_(fs::current_path()) { fs::current_path(dir); }
  ~CwdGuard() {
    std::error_code ec;
    fs::current_path(saved_, ec);
  }
  CwdGuard(const CwdGuard&) = delete;
  CwdGuard& operator=(const CwdGuard&) = delete;

 private:
  fs::path saved_;
};

// ---- The shipped configs ------------------------------------------------------------------

TEST(ConfigFiles, StoriesW2LoadsWithPathsResolvedAgainstTheFile) {
  const RunConfig c = LoadConfig(ConfigFile("stories260k-w2.yaml"));
  EXPECT_TRUE(c.model.path.is_absolute());
  EXPECT_EQ(c.model.path, c.model.path.lexically_normal());
  EXPECT_TRUE(fs::equivalent(c.model.path, Stories())) << c.model.path;
  EXPECT_EQ(c.model.tokenizer, c.model.path / "tokenizer.model");
  EXPECT_EQ(c.calibration.fisher.source, SampleSource::kText);
  EXPECT_TRUE(fs::equivalent(c.calibration.fisher.path, WikiValid()));
  EXPECT_EQ(c.calibration.cost.source, SampleSource::kGenerate);
  EXPECT_EQ(c.calibration.check.source, SampleSource::kGenerate);
  EXPECT_EQ(c.quant.bits_low, 2);
  EXPECT_EQ(c.quant.bits_high, 3);
  EXPECT_EQ(c.quant.group_size, 32);
  EXPECT_EQ(c.quant.budget_ratio, 0.10);
  EXPECT_EQ(c.quant.budget_bits, 0.0);
  EXPECT_EQ(c.output, fs::current_path() / "out" / "stories260k-w2");
}

TEST(ConfigFiles, StoriesW3DiffersFromW2OnlyInBitsAndOutput) {
  const RunConfig w2 = LoadConfig(ConfigFile("stories260k-w2.yaml"));
  RunConfig w3 = LoadConfig(ConfigFile("stories260k-w3.yaml"));
  EXPECT_EQ(w3.quant.bits_low, 3);
  EXPECT_EQ(w3.quant.bits_high, 4);
  EXPECT_EQ(w3.output.filename(), "stories260k-w3");
  w3.quant.bits_low = w2.quant.bits_low;
  w3.quant.bits_high = w2.quant.bits_high;
  w3.output = w2.output;
  EXPECT_EQ(w3, w2);
}

TEST(ConfigFiles, Llama2ConfigFailsOnItsPlaceholderModelPathWithAHint) {
  const fs::path file = ConfigFile("llama2-7b-w2g64.yaml");
  EXPECT_THROW_MSG(LoadConfig(file), ConfigError,
                   file.string() +
                       ": key 'model.path' = '/path/to/Llama-2-7b-hf' does not exist. HINT: point "
                       "model.path at a Hugging Face LLaMA checkpoint directory, in the file or "
                       "with --set model.path=DIR");
}

TEST(ConfigFiles, Llama2ConfigLoadsOnceModelPathIsSet) {
  const RunConfig c =
      LoadConfig(ConfigFile("llama2-7b-w2g64.yaml"), {"model.path=" + Stories().string()});
  EXPECT_EQ(c.model.path, Stories());
  EXPECT_EQ(c.quant.bits_low, 2);
  EXPECT_EQ(c.quant.bits_high, 3);
  EXPECT_EQ(c.quant.group_size, 64);
  EXPECT_EQ(c.quant.budget_ratio, 0.05);
  EXPECT_EQ(c.calibration.fisher.n_sequences, 128);
  EXPECT_EQ(c.calibration.fisher.seq_len, 2048);
  EXPECT_TRUE(fs::equivalent(c.calibration.fisher.path, WikiValid()));
}

TEST(ConfigFiles, LoadingDoesNotDependOnTheWorkingDirectory) {
  const RunConfig from_here = LoadConfig(ConfigFile("stories260k-w2.yaml"));
  TempDir elsewhere("hiq-config-cwd");
  CwdGuard cwd(elsewhere.path());
  RunConfig from_there = LoadConfig(fs::relative(ConfigFile("stories260k-w2.yaml")));
  EXPECT_EQ(from_there.output, fs::current_path() / "out" / "stories260k-w2");
  from_there.output = from_here.output;  // the default output follows the cwd by design
  EXPECT_EQ(from_there, from_here);
}

// ---- Defaults -----------------------------------------------------------------------------

TEST(ConfigDefaults, AreTheDocumentedValues) {
  const RunConfig c = Parse(MinimalYaml());
  EXPECT_EQ(c.model.tokenizer, Stories() / "tokenizer.model");
  const SampleSetConfig& fisher = c.calibration.fisher;
  const SampleSetConfig& cost = c.calibration.cost;
  const SampleSetConfig& check = c.calibration.check;
  EXPECT_EQ(fisher.source, SampleSource::kText);
  EXPECT_EQ(cost.source, SampleSource::kGenerate);
  EXPECT_EQ(check.source, SampleSource::kGenerate);
  EXPECT_EQ(fisher.n_sequences, 128);
  EXPECT_EQ(cost.n_sequences, 32);
  EXPECT_EQ(check.n_sequences, 32);
  EXPECT_EQ(fisher.seed, 1u);
  EXPECT_EQ(cost.seed, 2u);
  EXPECT_EQ(check.seed, 3u);
  for (const SampleSetConfig* set : {&fisher, &cost, &check}) {
    EXPECT_EQ(set->seq_len, 128);
    EXPECT_EQ(set->temperature, 1.0);
  }
  EXPECT_TRUE(cost.path.empty());
  EXPECT_EQ(c.quant.bits_low, 2);
  EXPECT_EQ(c.quant.bits_high, 3);
  EXPECT_EQ(c.quant.group_size, 32);
  EXPECT_EQ(c.quant.ratios, (std::vector<double>{0.02, 0.05, 0.10, 0.15, 0.20}));
  EXPECT_EQ(c.quant.budget_bits, 0.0);
  EXPECT_EQ(c.quant.score, ChannelScore::kFisher);
  EXPECT_EQ(c.cost.mode, CostMode::kLoss);
  EXPECT_EQ(c.cost.center, CostCenter::kPlan);
  EXPECT_FALSE(c.cost.pairs);
  EXPECT_EQ(c.cost.refine, 2);
  EXPECT_EQ(c.cost.local_fit_switches, 10);
  EXPECT_EQ(c.solver.method, SolverMethod::kPareto);
  EXPECT_EQ(c.solver.time_limit, 60.0);
  EXPECT_EQ(c.solver.mip_gap, 0.0);
  EXPECT_EQ(c.output, fs::current_path() / "out" / "config");
  EXPECT_EQ(c.threads, 0);
}

TEST(ConfigDefaults, EnumNamesAreTheYamlSpellings) {
  EXPECT_EQ(Name(SampleSource::kTokens), "tokens");
  EXPECT_EQ(Name(ChannelScore::kFisherImpact), "fisher_impact");
  EXPECT_EQ(Name(CostMode::kLocal), "local");
  EXPECT_EQ(Name(CostCenter::kFp), "fp");
  EXPECT_EQ(Name(SolverMethod::kMilp), "milp");
  EXPECT_EQ(Name(ConfigStage::kPlan), "plan");
}

// ---- Paths and overrides ------------------------------------------------------------------

TEST(ConfigPaths, RelativePathsResolveAgainstBaseDirAndAreNormalised) {
  const std::string yaml = WithoutLine(MinimalYaml(), "calibration.fisher.path") +
                           "calibration.fisher.path: wikitext-2/./../wikitext-2/valid.txt\n"
                           "calibration.cost.source: text\n"
                           "calibration.cost.path: tinystories//valid-head30KB.txt\n";
  const RunConfig c = ParseConfig(yaml, DataDir() / "text", "config.yaml");
  EXPECT_EQ(c.calibration.fisher.path, WikiValid());
  EXPECT_EQ(c.calibration.cost.path, TinyValid());
}

TEST(ConfigPaths, TrailingSeparatorAndEmptyPathsAreNormalised) {
  const RunConfig c =
      Parse(WithoutLine(MinimalYaml(), "model.path") + "model.path: \"" + Stories().string() +
            "/\"\ncalibration.cost.path: \"\"\noutput: /tmp/run/\n");
  EXPECT_EQ(c.model.path, Stories());
  EXPECT_TRUE(c.calibration.cost.path.empty());
  EXPECT_EQ(c.output, "/tmp/run");
  EXPECT_TRUE(
      Parse(MinimalYaml() + "calibration:\n  cost:\n    path: ~\n").calibration.cost.path.empty());
}

TEST(ConfigPaths, SetPathsResolveAgainstTheWorkingDirectory) {
  CwdGuard cwd(DataDir() / "text" / "tinystories");
  const RunConfig c = Parse(MinimalYaml(), {"calibration.check.source=text",
                                            "calibration.check.path=sample.txt", "output=runs/a"});
  EXPECT_EQ(c.calibration.check.path, TinySample());
  EXPECT_EQ(c.output, fs::current_path() / "runs" / "a");
}

TEST(ConfigPaths, DefaultOutputIsNamedAfterTheConfigFile) {
  const RunConfig c = ParseConfig(MinimalYaml(), "/base", "sweeps/w2-r10.yaml");
  EXPECT_EQ(c.output, fs::current_path() / "out" / "w2-r10");
}

TEST(ConfigPaths, DefaultTokenizerFollowsAnOverriddenModelPath) {
  TempDir model("hiq-config-model");
  WriteFile(model / "tokenizer.model", "not read by the config");
  const RunConfig c = Parse(MinimalYaml(), {"model.path=" + model.path().string()});
  EXPECT_EQ(c.model.tokenizer, model.path() / "tokenizer.model");
}

TEST(ConfigPaths, TokenizerIsOnlyRequiredWhenTextIsRead) {
  TempDir model("hiq-config-model");  // no tokenizer.model in it
  const std::string yaml = "model.path: \"" + model.path().string() +
                           "\"\nquant.budget_ratio: 0.1\ncalibration.fisher.source: generate\n";
  EXPECT_EQ(Parse(yaml).model.tokenizer, model.path() / "tokenizer.model");
  EXPECT_THROW_MSG(
      Parse(yaml,
            {"calibration.cost.source=text", "calibration.cost.path=" + TinyValid().string()}),
      ConfigError,
      "config.yaml: key 'model.tokenizer' = '" + (model.path() / "tokenizer.model").string() +
          "' does not exist (needed to tokenize 'calibration.cost.path')");
}

TEST(ConfigOverrides, ApplyInOrderAfterTheFileAndParseValuesAsYaml) {
  const RunConfig c = Parse(
      MinimalYaml() + "quant:\n  bits_low: 2\n",
      {"quant.bits_low=3", "quant.bits_high=16", "quant.bits_high=4", "quant.ratios=[0.05, 0.1]",
       "cost.mode=local", "cost.pairs=true", "calibration.cost.seed=18446744073709551615"});
  EXPECT_EQ(c.quant.bits_low, 3);
  EXPECT_EQ(c.quant.bits_high, 4);
  EXPECT_EQ(c.quant.ratios, (std::vector<double>{0.05, 0.1}));
  EXPECT_EQ(c.cost.mode, CostMode::kLocal);
  EXPECT_TRUE(c.cost.pairs);
  EXPECT_EQ(c.calibration.cost.seed, 18446744073709551615u);
}

// ---- Round trips and the fingerprint ------------------------------------------------------

// Sets every key to a valid non-default value (EveryKeyIsChangedByTheOverrideList checks that
// no key is missed, so a new key must be added here and is then round-tripped too).
std::vector<std::string> EveryKeyChanged(const TempDir& dir) {
  WriteFile(dir / "tokenizer.model", "x");
  WriteFile(dir / "tokens.h5", "x");
  const std::string d = dir.path().string();
  return {"model.path=" + d,
          "model.tokenizer=" + d + "/tokenizer.model",
          "calibration.fisher.source=tokens",
          "calibration.fisher.path=" + d + "/tokens.h5",
          "calibration.fisher.newlines=keep",
          "calibration.fisher.n_sequences=7",
          "calibration.fisher.seq_len=33",
          "calibration.fisher.seed=11",
          "calibration.fisher.temperature=0.5",
          "calibration.cost.source=text",
          "calibration.cost.path=" + TinySample().string(),
          "calibration.cost.newlines=keep",
          "calibration.cost.n_sequences=5",
          "calibration.cost.seq_len=64",
          "calibration.cost.seed=12",
          "calibration.cost.temperature=0.7",
          "calibration.check.source=text",
          "calibration.check.path=" + TinyValid().string(),
          "calibration.check.newlines=keep",
          "calibration.check.n_sequences=6",
          "calibration.check.seq_len=65",
          "calibration.check.seed=13",
          "calibration.check.temperature=1.25",
          "calibration.reconstruction.source=text",
          "calibration.reconstruction.path=" + TinySample().string(),
          "calibration.reconstruction.newlines=keep",
          "calibration.reconstruction.n_sequences=9",
          "calibration.reconstruction.seq_len=31",
          "calibration.reconstruction.seed=14",
          "calibration.reconstruction.temperature=0.9",
          "quant.bits_low=3",
          "quant.bits_high=16",
          "quant.group_size=0",
          "quant.ratios=[0.01, 0.125, 1]",
          "quant.budget_bits=3.3",
          "quant.budget_ratio=0",
          "quant.score=fisher_impact",
          "cost.mode=fisher",
          "cost.center=fp",
          "cost.candidates=gptq",
          "cost.pairs=true",
          "cost.refine=0",
          "cost.local_fit_switches=3",
          "solver.method=milp",
          "solver.time_limit=2.5",
          "solver.mip_gap=0.001",
          "quantize.method=gptq",
          "quantize.inputs=quantized",
          "quantize.steps=17",
          "quantize.batch=2",
          "quantize.lwc_lr=0.02",
          "quantize.lwc_init=3",
          "quantize.round_lr=0.002",
          "quantize.round_lambda=0.1",
          "quantize.beta_start=10",
          "quantize.beta_end=3",
          "quantize.warmup=0.1",
          "quantize.seed=99",
          "quantize.gptq_act_order=true",
          "quantize.gptq_damp=0.1",
          "output=" + d + "/out",
          "threads=2"};
}

// key -> its value in ToYaml's output, as YAML text.
std::map<std::string, std::string> YamlValues(const std::string& yaml) {
  const YAML::Node root = YAML::Load(yaml);
  std::map<std::string, std::string> values;
  for (const std::string& key : ConfigKeys()) {
    YAML::Node node = root;  // Node::operator= would assign into root; reset() rebinds
    std::stringstream parts(key);
    for (std::string part; std::getline(parts, part, '.');) node.reset(node[part]);
    values[key] = YAML::Dump(node);
  }
  return values;
}

TEST(ConfigRoundTrip, EveryKeyIsChangedByTheOverrideList) {
  TempDir dir("hiq-config-all");
  const auto defaults = YamlValues(ToYaml(Parse(MinimalYaml())));
  const auto changed = YamlValues(ToYaml(Parse(MinimalYaml(), EveryKeyChanged(dir))));
  for (const std::string& key : ConfigKeys()) {
    EXPECT_NE(changed.at(key), defaults.at(key)) << key << " is not changed by EveryKeyChanged";
  }
}

TEST(ConfigRoundTrip, ToYamlLoadsBackToTheSameConfig) {
  TempDir dir("hiq-config-yaml");
  for (const RunConfig& original : {LoadConfig(ConfigFile("stories260k-w2.yaml")),
                                    Parse(MinimalYaml(), EveryKeyChanged(dir))}) {
    const std::string yaml = ToYaml(original);
    WriteFile(dir / "resolved.yaml", yaml);
    const RunConfig from_file = LoadConfig(dir / "resolved.yaml");
    EXPECT_EQ(from_file, original) << yaml;
    EXPECT_EQ(ToYaml(from_file), yaml);
    EXPECT_EQ(ParseConfig(yaml, "/somewhere/else", "x.yaml"), original);
  }
}

TEST(ConfigRoundTrip, PathsWithYamlSpecialCharactersSurviveToYaml) {
  TempDir dir("hiq-config-quote");
  RunConfig c = Parse(MinimalYaml());
  c.output = dir.path() / "we\"ird\\ name: #1 [x] \u00e9\t";
  const std::string yaml = ToYaml(c);
  EXPECT_EQ(ParseConfig(yaml, "/", "resolved.yaml"), c) << yaml;
}

TEST(ConfigRoundTrip, EveryKeyCanBeSetWithSetToItsPrintedValue) {
  TempDir dir("hiq-config-set");
  const RunConfig changed = Parse(MinimalYaml(), EveryKeyChanged(dir));
  std::vector<std::string> overrides;
  for (const auto& [key, value] : YamlValues(ToYaml(changed)))
    overrides.push_back(key + "=" + value);
  EXPECT_EQ(Parse(MinimalYaml(), overrides), changed);
}

TEST(ConfigFingerprint, IsTheHashOfTheCanonicalTextAndSurvivesTheRoundTrip) {
  const RunConfig c = LoadConfig(ConfigFile("stories260k-w2.yaml"));
  const std::string fingerprint = Fingerprint(c, ConfigStage::kPlan);
  EXPECT_EQ(fingerprint.size(), 64u);
  EXPECT_EQ(fingerprint, Sha256Hex(CanonicalText(c, ConfigStage::kPlan)));
  EXPECT_EQ(Fingerprint(ParseConfig(ToYaml(c), "/", "resolved.yaml"), ConfigStage::kPlan),
            fingerprint);
  EXPECT_NE(ToYaml(c).find("\n# fingerprint of stage plan: " + fingerprint + "\n"),
            std::string::npos);
}

// Which stages read a key (docs/CONFIG.md's "read by" column): the plan reads all but the
// quantize stage's own keys, output and threads; the quantize stage reads its own keys, the model
// and the quantizer's bit widths and groups (the rest of the plan reaches it through the plan's
// fingerprint).
bool ReadByPlan(const std::string& key) {
  return key != "output" && key != "threads" && !key.starts_with("quantize.") &&
         !key.starts_with("calibration.reconstruction.");
}
bool ReadByQuantize(const std::string& key) {
  return key.starts_with("quantize.") || key.starts_with("calibration.reconstruction.") ||
         key.starts_with("model.") || key == "quant.bits_low" || key == "quant.bits_high" ||
         key == "quant.group_size";
}

// Each stage's canonical text holds exactly the keys it reads, each once.
TEST(ConfigFingerprint, EachStageCoversTheKeysItReadsAndNoOthers) {
  TempDir dir("hiq-config-stage");
  const RunConfig c = Parse(MinimalYaml(), EveryKeyChanged(dir));
  const std::string plan = CanonicalText(c, ConfigStage::kPlan);
  const std::string quantize = CanonicalText(c, ConfigStage::kQuantize);
  for (const std::string& key : ConfigKeys()) {
    EXPECT_EQ(Occurrences(plan, "\n" + key + ": "), ReadByPlan(key) ? 1u : 0u) << key;
    EXPECT_EQ(Occurrences(quantize, "\n" + key + ": "), ReadByQuantize(key) ? 1u : 0u) << key;
  }
}

TEST(ConfigFingerprint, IgnoresOutputAndThreadsButNotWhatThePlanReads) {
  const RunConfig base = Parse(MinimalYaml());
  const std::string plan = Fingerprint(base, ConfigStage::kPlan);
  EXPECT_EQ(
      Fingerprint(Parse(MinimalYaml(), {"output=/elsewhere", "threads=7"}), ConfigStage::kPlan),
      plan);
  for (const std::string& change :
       std::vector<std::string>{"quant.bits_low=1", "calibration.cost.seed=9", "solver.mip_gap=0.5",
                                "model.tokenizer=" + TinySample().string(),
                                "quant.ratios=[0.02, 0.05, 0.1, 0.15, 0.25]"}) {
    EXPECT_NE(Fingerprint(Parse(MinimalYaml(), {change}), ConfigStage::kPlan), plan) << change;
  }
}

TEST(ConfigFingerprint, TheTextOfSomeKeysHoldsExactlyThemAndTheSectionsNamed) {
  TempDir dir("hiq-config-part");
  const RunConfig c = Parse(MinimalYaml(), EveryKeyChanged(dir));
  const std::array<std::string_view, 2> keys = {"calibration.cost", "quant.score"};
  const std::string text = CanonicalTextOf(c, "cost", keys);
  EXPECT_TRUE(text.starts_with("hiq-config-v2 stage cost\n")) << text;
  for (const std::string& key : ConfigKeys()) {
    const bool named = key.starts_with("calibration.cost.") || key == "quant.score";
    EXPECT_EQ(Occurrences(text, "\n" + key + ": "), named ? 1u : 0u) << key;
  }
  // Each row reads as the stage's own text prints it.
  const std::string plan = CanonicalText(c, ConfigStage::kPlan);
  std::istringstream rows(text.substr(text.find('\n') + 1));
  for (std::string line; std::getline(rows, line);) {
    EXPECT_NE(plan.find("\n" + line + "\n"), std::string::npos) << line;
  }
}

TEST(ConfigFingerprint, TheTextOfSomeKeysRefusesANameThatIsNoKeyOrSection) {
  const RunConfig c = Parse(MinimalYaml());
  const std::array<std::string_view, 1> typo = {"quant.scores"};
  EXPECT_THROW_WITH(CanonicalTextOf(c, "fisher", typo), ConfigError,
                    "'quant.scores' is not a config key or section");
  const std::array<std::string_view, 1> part = {"calibration.co"};  // not a whole section name
  EXPECT_THROW_WITH(CanonicalTextOf(c, "cost", part), ConfigError, "'calibration.co'");
}

TEST(ConfigFingerprint, CanonicalTextFormatIsPinned) {
  const std::string text = CanonicalText(Parse(MinimalYaml()), ConfigStage::kPlan);
  EXPECT_TRUE(
      text.starts_with("hiq-config-v2 stage plan\nmodel.path: \"" + Stories().string() + "\"\n"))
      << text;
  for (const char* line :
       {"\ncalibration.fisher.source: text\n", "\ncalibration.cost.seed: 2\n",
        "\ncalibration.check.temperature: 1.0\n", "\nquant.ratios: [0.02, 0.05, 0.1, 0.15, 0.2]\n",
        "\nquant.budget_bits: 0.0\n", "\ncost.pairs: false\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line;
  }
  EXPECT_TRUE(text.ends_with("\nsolver.time_limit: 60.0\nsolver.mip_gap: 0.0\n")) << text;
}

// ---- Errors, by exact message -------------------------------------------------------------

TEST(ConfigErrors, UnknownKeysNameTheClosestValidKey) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_lwo: 2\n"), ConfigError,
                   "config.yaml: unknown key 'quant.bits_lwo' (did you mean 'quant.bits_low'?)");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "qaunt:\n  bits_low: 2\n"), ConfigError,
                   "config.yaml: unknown key 'qaunt' (did you mean 'quant'?)");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "calibration:\n  fisher:\n    n_seqs: 2\n"), ConfigError,
                   "config.yaml: unknown key 'calibration.fisher.n_seqs' (did you mean "
                   "'calibration.fisher.n_sequences'?)");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "frobnicate: 1\n"), ConfigError,
                   "config.yaml: unknown key 'frobnicate' (docs/CONFIG.md lists the keys)");
}

TEST(ConfigErrors, WrongTypesSayWhatWasExpectedAndFound) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: two\n"), ConfigError,
                   "config.yaml: key 'quant.bits_low' must be an integer, got 'two'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: 2.0\n"), ConfigError,
                   "config.yaml: key 'quant.bits_low' must be an integer, got '2.0'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: {a: 1}\n"), ConfigError,
                   "config.yaml: key 'quant.bits_low' must be an integer, got a map");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "solver:\n  time_limit: soon\n"), ConfigError,
                   "config.yaml: key 'solver.time_limit' must be a finite number, got 'soon'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "solver:\n  time_limit: .inf\n"), ConfigError,
                   "config.yaml: key 'solver.time_limit' must be a finite number, got '.inf'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "cost:\n  pairs: maybe\n"), ConfigError,
                   "config.yaml: key 'cost.pairs' must be true or false, got 'maybe'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "calibration:\n  check:\n    seed: -1\n"), ConfigError,
                   "config.yaml: key 'calibration.check.seed' must be an integer in [0, 2^64), "
                   "got '-1'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "model:\n  tokenizer: [a]\n"), ConfigError,
                   "config.yaml: key 'model.tokenizer' must be a path, got a list");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant: 3\n"), ConfigError,
                   "config.yaml: key 'quant' is a section and must hold keys, got '3'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "cost:\n  refine:\n"), ConfigError,
                   "config.yaml: key 'cost.refine' must be an integer, got nothing");
}

TEST(ConfigErrors, OutOfRangeValuesShowTheRange) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: 12\n"), ConfigError,
                   "config.yaml: key 'quant.bits_low' = 12 is out of range [1, 8]");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: 99999999999999999999\n"), ConfigError,
                   "config.yaml: key 'quant.bits_low' = 99999999999999999999 is out of range "
                   "[1, 8]");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  group_size: 4\n"), ConfigError,
                   "config.yaml: key 'quant.group_size' = 4 is out of range [8, 1048576] and "
                   "not 0");
  EXPECT_EQ(Parse(MinimalYaml() + "quant:\n  group_size: 0\n").quant.group_size, 0);
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_high: 12\n"), ConfigError,
                   "config.yaml: key 'quant.bits_high' = 12 is out of range [1, 8] and not 16");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_high=0"}), ConfigError,
                   "--set: key 'quant.bits_high' = 0 is out of range [1, 8] and not 16");
  EXPECT_EQ(Parse(MinimalYaml() + "quant:\n  bits_high: 16\n").quant.bits_high, 16);
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "solver:\n  time_limit: 0\n"), ConfigError,
                   "config.yaml: key 'solver.time_limit' = 0.0 is out of range (0, inf)");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "solver:\n  mip_gap: 1.5\n"), ConfigError,
                   "config.yaml: key 'solver.mip_gap' = 1.5 is out of range [0, 1]");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "calibration:\n  cost:\n    seq_len: 0\n"), ConfigError,
                   "config.yaml: key 'calibration.cost.seq_len' = 0 is out of range [1, 1048576]");
}

TEST(ConfigErrors, BadChoicesListTheChoices) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "cost:\n  mode: los\n"), ConfigError,
                   "config.yaml: key 'cost.mode' = 'los' is not one of: loss, local, fisher");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "calibration:\n  cost:\n    source: [text]\n"),
                   ConfigError,
                   "config.yaml: key 'calibration.cost.source' must be one of: text, tokens, "
                   "generate, got a list");
}

TEST(ConfigErrors, RatiosMustBeANonEmptyIncreasingListInZeroOne) {
  const auto with = [](const std::string& ratios) {
    return Parse(MinimalYaml() + "quant:\n  ratios: " + ratios + "\n");
  };
  EXPECT_THROW_MSG(with("[0.1, 0.05]"), ConfigError,
                   "config.yaml: key 'quant.ratios' must be strictly increasing, got [0.1, 0.05]");
  EXPECT_THROW_MSG(with("[0.1, 0.1]"), ConfigError,
                   "config.yaml: key 'quant.ratios' must be strictly increasing, got [0.1, 0.1]");
  EXPECT_THROW_MSG(with("[]"), ConfigError, "config.yaml: key 'quant.ratios' must not be empty");
  EXPECT_THROW_MSG(with("[0.1, 1.5]"), ConfigError,
                   "config.yaml: key 'quant.ratios' has element 1.5 out of range (0, 1]");
  EXPECT_THROW_MSG(with("[0, 0.5]"), ConfigError,
                   "config.yaml: key 'quant.ratios' has element 0.0 out of range (0, 1]");
  EXPECT_THROW_MSG(with("0.1"), ConfigError,
                   "config.yaml: key 'quant.ratios' must be a list of numbers, got '0.1'");
  EXPECT_THROW_MSG(with("[0.1, x]"), ConfigError,
                   "config.yaml: key 'quant.ratios' must be a list of numbers, got 'x' in it");
}

TEST(ConfigErrors, ModelPathIsRequiredAndMustBeADirectory) {
  const std::string hint =
      ". HINT: point model.path at a Hugging Face LLaMA checkpoint directory, in the file or "
      "with --set model.path=DIR";
  EXPECT_THROW_MSG(Parse(WithoutLine(MinimalYaml(), "model.path")), ConfigError,
                   "config.yaml: missing required key model.path. HINT: add 'model: {path: DIR}' "
                   "with a Hugging Face LLaMA checkpoint directory, or pass --set model.path=DIR");
  EXPECT_THROW_MSG(Parse(""), ConfigError,
                   "config.yaml: missing required key model.path. HINT: add 'model: {path: DIR}' "
                   "with a Hugging Face LLaMA checkpoint directory, or pass --set model.path=DIR");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"model.path=/no/such/model"}), ConfigError,
                   "--set: key 'model.path' = '/no/such/model' does not exist" + hint);
  EXPECT_THROW_MSG(Parse(WithoutLine(MinimalYaml(), "model.path") + "model:\n  path: llama\n"),
                   ConfigError,
                   "config.yaml: key 'model.path' = '/base/llama' does not exist" + hint);
  EXPECT_THROW_MSG(
      Parse(MinimalYaml(), {"model.path=" + WikiValid().string()}), ConfigError,
      "--set: key 'model.path' = '" + WikiValid().string() + "' is not a directory" + hint);
}

TEST(ConfigErrors, CrossFieldChecksNameBothKeys) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  bits_low: 3\n"), ConfigError,
                   "config.yaml: key 'quant.bits_high' = 3 must be greater than key "
                   "'quant.bits_low' = 3");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_low=4"}), ConfigError,
                   "config.yaml, --set: key 'quant.bits_high' = 3 must be greater than key "
                   "'quant.bits_low' = 4");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  budget_bits: 2.5\n"), ConfigError,
                   "config.yaml: keys 'quant.budget_bits' and 'quant.budget_ratio' are both set; "
                   "set exactly one");
  EXPECT_THROW_MSG(Parse(WithoutLine(MinimalYaml(), "quant.budget_ratio")), ConfigError,
                   "config.yaml: neither key 'quant.budget_bits' nor 'quant.budget_ratio' is set; "
                   "set exactly one. HINT: 'quant: {budget_ratio: 0.1}' spends what a fixed 10% "
                   "ratio costs");
}

// Budgets that no plan can meet fail at load, not after the Fisher pass (the solver's own
// "infeasible" message, with the model's exact range, is for budgets between this bound and it).
TEST(ConfigErrors, BudgetsNoPlanCanMeetFailAtLoad) {
  const std::string bits_budget = WithoutLine(MinimalYaml(), "quant.budget_ratio");
  EXPECT_THROW_MSG(Parse(bits_budget + "quant:\n  budget_bits: 2.5\n"), ConfigError,
                   "config.yaml: key 'quant.budget_bits' = 2.5 cannot be met: codes and group "
                   "scales alone take at least 2.57125 bits per weight with keys "
                   "'quant.bits_low' = 2, 'quant.bits_high' = 3, 'quant.group_size' = 32 and "
                   "'quant.ratios' from 0.02");
  EXPECT_EQ(Parse(bits_budget + "quant:\n  budget_bits: 2.57125\n").quant.budget_bits, 2.57125);
  // One group per row: the bound is b_L plus the high channels' share; --set is named too.
  EXPECT_THROW_MSG(Parse(bits_budget + "quant:\n  budget_bits: 1.5\n", {"quant.group_size=0"}),
                   ConfigError,
                   "config.yaml, --set: key 'quant.budget_bits' = 1.5 cannot be met: codes and "
                   "group scales alone take at least 2.02 bits per weight with keys "
                   "'quant.bits_low' = 2, 'quant.bits_high' = 3, 'quant.group_size' = 0 and "
                   "'quant.ratios' from 0.02");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.budget_ratio=0.01"}), ConfigError,
                   "--set, config.yaml: key 'quant.budget_ratio' = 0.01 is below the smallest of "
                   "key 'quant.ratios' = [0.02, 0.05, 0.1, 0.15, 0.2], so no candidate ratio fits "
                   "the budget");
  EXPECT_EQ(Parse(MinimalYaml(), {"quant.budget_ratio=0.02"}).quant.budget_ratio, 0.02);
}

// quant.bits_low, quant.bits_high and quant.group_size pass at load exactly when the quantizer
// takes them, so that none is refused only after the Fisher pass.
TEST(ConfigErrors, QuantKeysAcceptWhatTheQuantizerAccepts) {
  for (int low = -1; low <= 17; ++low) {
    for (int high = -1; high <= 17; ++high) {
      bool quantizer_accepts = high > low;
      try {
        ValidateQuantSpec({low, high, 32});
      } catch (const ConfigError&) {
        quantizer_accepts = false;
      }
      bool config_accepts = true;
      try {
        Parse(MinimalYaml(),
              {"quant.bits_low=" + std::to_string(low), "quant.bits_high=" + std::to_string(high)});
      } catch (const ConfigError&) {
        config_accepts = false;
      }
      EXPECT_EQ(config_accepts, quantizer_accepts) << "bits_low " << low << " bits_high " << high;
    }
  }
  for (const int group : {-1, 0, 1, 7, 8, 64, 1 << 20, (1 << 20) + 1}) {
    try {
      Parse(MinimalYaml(), {"quant.group_size=" + std::to_string(group)});
    } catch (const ConfigError&) {
      continue;  // the config may be stricter than the quantizer, never looser
    }
    EXPECT_NO_THROW(ValidateQuantSpec({2, 3, group})) << "group_size " << group;
  }
}

// Keys no stage reads were removed; a config that still sets one is told so, as for a typo.
TEST(ConfigErrors, RemovedKeysAreUnknownKeys) {
  // Each: YAML in the file, and the key the message names.
  const std::pair<std::string, std::string> in_file[] = {
      {"quant:\n  symmetric: true\n", "quant.symmetric"},
      {"seed: 0\n", "seed"},
      {"eval:\n  text: x.txt\n", "eval"},
      {"reconstruction:\n  steps: 10\n", "reconstruction"}};
  for (const auto& [yaml, key] : in_file) {
    EXPECT_THROW_MSG(Parse(MinimalYaml() + yaml), ConfigError,
                     "config.yaml: unknown key '" + key + "' (docs/CONFIG.md lists the keys)");
  }
  for (const std::string key : {"reconstruction.enabled", "eval.seq_len", "quant.symmetric"}) {
    EXPECT_THROW_MSG(Parse(MinimalYaml(), {key + "=1"}), ConfigError,
                     "--set: unknown key '" + key + "' (docs/CONFIG.md lists the keys)");
  }
}

TEST(ConfigErrors, SampleSetPathsMatchTheirSource) {
  EXPECT_THROW_MSG(Parse(WithoutLine(MinimalYaml(), "calibration.fisher.path")), ConfigError,
                   "config.yaml: key 'calibration.fisher.path' must be set when key "
                   "'calibration.fisher.source' is 'text'");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"calibration.check.source=tokens"}), ConfigError,
                   "config.yaml, --set: key 'calibration.check.path' must be set when key "
                   "'calibration.check.source' is 'tokens'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "calibration:\n  cost:\n    path: cost.txt\n"),
                   ConfigError,
                   "config.yaml: key 'calibration.cost.path' is set but key "
                   "'calibration.cost.source' is 'generate', which reads no file. HINT: remove "
                   "it, or pass --set calibration.cost.path=");
  EXPECT_THROW_MSG(Parse(WithoutLine(MinimalYaml(), "calibration.fisher.path") +
                         "calibration:\n  fisher:\n    path: wiki/valid.txt\n"),
                   ConfigError,
                   "config.yaml: key 'calibration.fisher.path' = '/base/wiki/valid.txt' does not "
                   "exist");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"calibration.check.source=text",
                                         "calibration.check.path=" + DataDir().string() + "/text"}),
                   ConfigError,
                   "--set: key 'calibration.check.path' = '" +
                       (DataDir() / "text").lexically_normal().string() +
                       "' is not a regular file");
}

TEST(ConfigErrors, YamlStructureProblemsAreReportedWithTheirPlace) {
  EXPECT_THROW_MSG(Parse("quant: [1, 2\n"), ConfigError,
                   "config.yaml: YAML syntax error at line 2, column 1: end of sequence flow not "
                   "found");
  EXPECT_THROW_MSG(Parse("- a\n- b\n"), ConfigError,
                   "config.yaml: the top level must be a map of keys, got a list");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "---\nthreads: 2\n"), ConfigError,
                   "config.yaml: expected one YAML document, found 2");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "threads: 1\nthreads: 2\n"), ConfigError,
                   "config.yaml: duplicate key 'threads'");
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quant:\n  budget_ratio: 0.2\n"), ConfigError,
                   "config.yaml: duplicate key 'quant.budget_ratio'");
}

TEST(ConfigErrors, BadOverridesAreReportedAsSet) {
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_lwo=3"}), ConfigError,
                   "--set: unknown key 'quant.bits_lwo' (did you mean 'quant.bits_low'?)");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_low=two"}), ConfigError,
                   "--set: key 'quant.bits_low' must be an integer, got 'two'");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_low=12"}), ConfigError,
                   "--set: key 'quant.bits_low' = 12 is out of range [1, 8]");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant.bits_low"}), ConfigError,
                   "--set: expected key=value, got 'quant.bits_low'");
  EXPECT_THROW_MSG(Parse(MinimalYaml(), {"quant=3"}), ConfigError,
                   "--set: key 'quant' is a section; set one of its keys, e.g. 'quant.bits_low'");
  EXPECT_THROW_WITH(Parse(MinimalYaml(), {"quant.ratios=[0.1"}), ConfigError,
                    "--set: YAML syntax error in the value of 'quant.ratios' at line ");
}

TEST(ConfigErrors, UnreadableConfigFilesAreIoErrors) {
  TempDir dir("hiq-config-io");
  EXPECT_THROW_MSG(LoadConfig(dir / "nope.yaml"), IoError,
                   "LoadConfig: config file '" + (dir / "nope.yaml").string() + "' does not exist");
  EXPECT_THROW_MSG(
      LoadConfig(dir.path()), IoError,
      "LoadConfig: config file '" + dir.path().string() + "' is a directory, expected a YAML file");
}

TEST(ConfigErrors, ValidateConfigChecksConfigsBuiltInCode) {
  EXPECT_THROW_MSG(ValidateConfig(RunConfig(), "code"), ConfigError,
                   "code: missing required key model.path. HINT: add 'model: {path: DIR}' with a "
                   "Hugging Face LLaMA checkpoint directory, or pass --set model.path=DIR");
  RunConfig c = Parse(MinimalYaml());
  ValidateConfig(c, "code");
  c.quant.bits_low = 0;
  EXPECT_THROW_MSG(ValidateConfig(c, "code"), ConfigError,
                   "code: key 'quant.bits_low' = 0 is out of range [1, 8]");
}

// ---- docs/CONFIG.md -----------------------------------------------------------------------

TEST(ConfigDocs, CommittedMarkdownIsTheGeneratedText) {
  const fs::path doc = SourceDir() / "docs" / "CONFIG.md";
  const std::string generated = ConfigMarkdown();
  if (const char* update = std::getenv("HIQ_UPDATE_DOCS"); update && *update) {
    WriteFile(doc, generated);
  }
  std::ifstream in(doc, std::ios::binary);
  std::stringstream committed;
  committed << in.rdbuf();
  EXPECT_EQ(committed.str(), generated)
      << "docs/CONFIG.md is stale; regenerate it with HIQ_UPDATE_DOCS=1 build/tests/test_config "
         "--gtest_filter='ConfigDocs.*'";
}

TEST(ConfigErrors, AdaRoundBetaMustAnnealDownwards) {
  EXPECT_THROW_MSG(Parse(MinimalYaml() + "quantize:\n  beta_start: 2\n  beta_end: 20\n"),
                   ConfigError,
                   "config.yaml: key 'quantize.beta_start' = 2.0 is below key "
                   "'quantize.beta_end' = 20.0; AdaRound anneals beta downwards");
}

TEST(ConfigDocs, EachRowSaysWhichStagesReadTheKey) {
  const std::string markdown = ConfigMarkdown();
  EXPECT_NE(markdown.find("\n| key | type | default | allowed | read by | meaning |\n"),
            std::string::npos);
  EXPECT_NE(markdown.find("\n| `quant.bits_high` | int | `3` | [1, 8] or 16 | plan, quantize | "),
            std::string::npos);
  EXPECT_NE(
      markdown.find("\n| `quant.group_size` | int | `32` | 0 or [8, 1048576] | plan, quantize | "),
      std::string::npos);
  EXPECT_NE(markdown.find("\n| `quantize.steps` | int | `5120` | [1, 16777216] | quantize | "),
            std::string::npos);
  EXPECT_NE(markdown.find("\n| `threads` | int | `0` | [0, 1024] | none | "), std::string::npos);
}

TEST(ConfigDocs, EveryKeyHasOneRowWithHelp) {
  const std::string markdown = ConfigMarkdown();
  for (const std::string& key : ConfigKeys()) {
    const size_t row = markdown.find("\n| `" + key + "` | ");
    ASSERT_NE(row, std::string::npos) << key;
    EXPECT_EQ(markdown.find("\n| `" + key + "` | ", row + 1), std::string::npos) << key;
    const std::string line = markdown.substr(row + 1, markdown.find('\n', row + 1) - row - 1);
    EXPECT_GT(line.size(), key.size() + 40) << line;  // type, default, range and a sentence
  }
}

}  // namespace
}  // namespace hiq
