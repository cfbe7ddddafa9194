// Robustness cases of the inputs checked against each other and of text as evaluators read it:
// text that is not UTF-8, tokenize over its own input, token files of another tokenizer or with
// ids beyond the vocabulary, a tokenizer that is not the model's, lengths beyond the context or
// the text. Every rank refuses these alike and the first to abort the job wins the race to print,
// so the cases run on one rank (tests/test_cli.cpp runs the checks under mpirun).
#include <fstream>
#include <nlohmann/json.hpp>

#include "hiq/base/sha256.h"   // Sha256Hex
#include "hiq/io/tokenizer.h"  // Tokenizer, WriteTokenFile
#include "robustness.h"

namespace hiq::test {
namespace {

namespace fs = std::filesystem;

std::string Model() { return (DataDir() / "stories260K").string(); }
std::string Sample() { return (DataDir() / "text/tinystories/sample.txt").string(); }

std::string Eval(const Sandbox& s, int np, const std::string& model, const fs::path& text,
                 const std::string& extra = "") {
  return s.Hiq(np) + " eval --model " + model + " --text " + text.string() + extra;
}

// A token file at $TMP/<name> holding `ids` (BOS first), made by the model's tokenizer unless
// `tokenizer_sha256` says otherwise.
fs::path Tokens(const Sandbox& s, const std::string& name, std::vector<int32_t> ids,
                std::string tokenizer_sha256 = "", const std::string& newlines = "lf") {
  if (tokenizer_sha256.empty()) {
    tokenizer_sha256 = Tokenizer(DataDir() / "stories260K/tokenizer.model").sha256();
  }
  WriteTokenFile(s / name, ids, {tokenizer_sha256, std::string(64, '0'), 1, "x.txt", newlines});
  return s / name;
}

// 600 ids of the real text, in range.
std::vector<int32_t> RealIds() {
  const Tokenizer tokenizer(DataDir() / "stories260K/tokenizer.model");
  std::vector<int32_t> ids = TokenizeFile(tokenizer, Sample(), Newlines::kLf);
  ids.resize(600);
  return ids;
}

// A copy of stories260K whose config.json `edit` changes.
fs::path EditedConfig(const Sandbox& s, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path dir = s.CopyModel();
  nlohmann::json config;
  std::ifstream(dir / "config.json") >> config;
  edit(config);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

const std::string kLatin1 = "Once upon a time, a caf\xe9 opened.\n";

const int kRegistered = RegisterCases({
    {.name = "TextNotUtf8",
     .area = "text",
     .what = "eval of a Latin-1 text (byte 0xe9 at offset 23)",
     .command = [](Sandbox& s) { return Eval(s, 1, Model(), s.Write("latin1.txt", kLatin1)); },
     .message = "hiq: error: ReadTextFile: '$TMP/latin1.txt' is not UTF-8: ill-formed sequence at "
                "byte offset 23 (byte 0xe9). HINT: convert it, e.g. `iconv -f latin1 -t utf-8`"},
    {.name = "TextTruncatedUtf8",
     .area = "text",
     .what = "eval of text ending inside a 3-byte UTF-8 sequence",
     .command =
         [](Sandbox& s) { return Eval(s, 1, Model(), s.Write("cut.txt", "The end \xe2\x82")); },
     .message = "hiq: error: ReadTextFile: '$TMP/cut.txt' is not UTF-8: ill-formed "
                "sequence at byte offset 8 (byte 0xe2). HINT: convert it, e.g. `iconv -f latin1 "
                "-t utf-8`"},
    {.name = "CalibrationTextNotUtf8",
     .area = "text",
     .what = "plan whose calibration.cost text is Latin-1, refused before the weights load",
     .command =
         [](Sandbox& s) {
           const fs::path text = s.Write("latin1.txt", kLatin1);
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set calibration.cost.path=" + text.string();
         },
     .message = "hiq: error: ReadTextFile: '$TMP/latin1.txt' is not UTF-8: ill-formed sequence at "
                "byte offset 23 (byte 0xe9). HINT: convert it, e.g. `iconv -f latin1 -t utf-8`"},
    {.name = "CalibrationNewlinesUnknown",
     .area = "config",
     .what = "calibration.fisher.newlines: crlf",
     .command =
         [](Sandbox& s) {
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set calibration.fisher.newlines=crlf";
         },
     .message = "hiq: error: --set: key 'calibration.fisher.newlines' = 'crlf' is not one of: lf, "
                "keep"},
    {.name = "TokenizeOutIsItsText",
     .area = "output",
     .what = "tokenize --out naming the --text file (via ./ and via a symlink)",
     .command =
         [](Sandbox& s) {
           const fs::path text = s.Write("t.txt", "Once upon a time.\n");
           fs::create_symlink(text, s / "link.txt");
           return s.Hiq() + " tokenize --model " + Model() + " --text " + text.string() +
                  " --out " + (s.path() / "." / "link.txt").string();
         },
     .message = "hiq: error: hiq tokenize: --out '$TMP/./link.txt' is the input --text "
                "'$TMP/t.txt'; writing it would destroy the text",
     .check =
         [](Sandbox& s, const CommandResult&) {
           std::ifstream in(s / "t.txt");
           EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), "Once upon a time.\n");
         }},
    {.name = "TokenFileOfAnotherTokenizer",
     .area = "token file",
     .what = "eval of a token file whose tokenizer_sha256 is not the model's tokenizer.model",
     .command =
         [](Sandbox& s) {
           return Eval(s, 1, Model(),
                       Tokens(s, "tokens.h5", RealIds(), Sha256Hex("another tokenizer")));
         },
     .message = "hiq: error: token file '$TMP/tokens.h5' was made by a tokenizer with sha256 "
                "<sha256>, but the model's '$DATA/stories260K/tokenizer.model' has sha256 "
                "<sha256>. HINT: re-run `hiq tokenize --model` with this model"},
    {.name = "TokenIdBeyondVocab",
     .area = "token file",
     .what = "a token id >= vocab_size at index 599, past every window a seed would draw first",
     .command =
         [](Sandbox& s) {
           std::vector<int32_t> ids = RealIds();
           ids[599] = 512;
           return Eval(s, 1, Model(), Tokens(s, "tokens.h5", ids), " --seq-len 64");
         },
     .message = "hiq: error: token file '$TMP/tokens.h5': id 512 at index 599 is outside "
                "[0, vocab_size = 512) of '$DATA/stories260K/config.json'"},
    {.name = "TokenIdNegative",
     .area = "token file",
     .what = "a negative token id",
     .command =
         [](Sandbox& s) {
           std::vector<int32_t> ids = RealIds();
           ids[10] = -7;
           return Eval(s, 1, Model(), Tokens(s, "tokens.h5", ids), " --seq-len 64");
         },
     .message = "hiq: error: token file '$TMP/tokens.h5': id -7 at index 10 is outside "
                "[0, vocab_size = 512) of '$DATA/stories260K/config.json'"},
    {.name = "TokenFileNewlinesUnknown",
     .area = "token file",
     .what = "a token file whose newlines attribute is neither lf nor keep",
     .command =
         [](Sandbox& s) {
           return Eval(s, 1, Model(), Tokens(s, "tokens.h5", RealIds(), "", "crlf"));
         },
     .message = "hiq: error: ReadTokenFile: '$TMP/tokens.h5': attribute newlines = \"crlf\", "
                "expected \"lf\" or \"keep\""},
    {.name = "CalibrationTokenIdBeyondVocab",
     .area = "token file",
     .what = "plan with calibration.fisher from a token file holding id 9999",
     .command =
         [](Sandbox& s) {
           std::vector<int32_t> ids = RealIds();
           ids[123] = 9999;
           const fs::path tokens = Tokens(s, "tokens.h5", ids);
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set calibration.fisher.source=tokens --set calibration.fisher.path=" +
                  tokens.string();
         },
     .message = "hiq: error: token file '$TMP/tokens.h5': id 9999 at index 123 is outside "
                "[0, vocab_size = 512) of '$DATA/stories260K/config.json'"},
    {.name = "TokenizerPiecesNotVocabSize",
     .area = "tokenizer",
     .what = "tokenize with a model whose config.json says vocab_size 32000 (tokenizer: 512)",
     .command =
         [](Sandbox& s) {
           const fs::path model =
               EditedConfig(s, [](nlohmann::json& c) { c["vocab_size"] = 32000; });
           return s.Hiq() + " tokenize --model " + model.string() + " --text " + Sample() +
                  " --out " + (s / "t.h5").string();
         },
     .message = "hiq: error: the tokenizer '$TMP/model/tokenizer.model' does not belong to the "
                "model of '$TMP/model/config.json': it has 512 pieces but vocab_size is 32000",
     .check = [](Sandbox& s, const CommandResult&) { EXPECT_FALSE(fs::exists(s / "t.h5")); }},
    {.name = "TokenizerBosNotConfigs",
     .area = "tokenizer",
     .what = "eval with config.json bos_token_id 0 (tokenizer: 1)",
     .command =
         [](Sandbox& s) {
           const fs::path model = EditedConfig(s, [](nlohmann::json& c) { c["bos_token_id"] = 0; });
           return Eval(s, 1, model.string(), Sample(), " --seq-len 64");
         },
     .message = "hiq: error: the tokenizer '$TMP/model/tokenizer.model' does not belong to "
                "the model of '$TMP/model/config.json': its BOS id is 1 but bos_token_id is 0"},
    {.name = "TokenizerEosNotConfigs",
     .area = "tokenizer",
     .what = "plan with config.json eos_token_id [0, 3] (tokenizer: 2), data-free calibration",
     .command =
         [](Sandbox& s) {
           const fs::path model = EditedConfig(s, [](nlohmann::json& c) {
             c["eos_token_id"] = {0, 3};
           });
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set model.path=" + model.string() +
                  " --set model.tokenizer=" + (model / "tokenizer.model").string();
         },
     .message = "hiq: error: the tokenizer '$TMP/model/tokenizer.model' does not belong to the "
                "model of '$TMP/model/config.json': its EOS id is 2 but eos_token_id is [0, 3]"},
    {.name = "EvalSeqLenBeyondContext",
     .area = "config",
     .what = "eval --seq-len 1024 on a model of max_position_embeddings 512",
     .command = [](Sandbox& s) { return Eval(s, 1, Model(), Sample(), " --seq-len 1024"); },
     .message = "hiq: error: hiq eval: --seq-len = 1024 is longer than the model's context, "
                "max_position_embeddings = 512 in '$DATA/stories260K/config.json'"},
    {.name = "CalibrationSeqLenBeyondContext",
     .area = "config",
     .what = "calibration.check.seq_len 600 on a model of max_position_embeddings 512",
     .command =
         [](Sandbox& s) {
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set calibration.check.seq_len=600";
         },
     .message = "hiq: error: calibration.check.seq_len = 600 is longer than the model's "
                "context, max_position_embeddings = 512 in '$DATA/stories260K/config.json'"},
    {.name = "CalibrationMoreSequencesThanWindows",
     .area = "text",
     .what = "calibration.cost asks 2000 sequences of 33 tokens from a text of 1,883 tokens",
     .command =
         [](Sandbox& s) {
           return s.Hiq() + " plan " + s.PlanConfig().string() +
                  " --set calibration.cost.path=" + Sample() +
                  " --set calibration.cost.n_sequences=2000";
         },
     .message =
         "hiq: error: calibration.cost: $DATA/text/tinystories/sample.txt holds 1883 "
         "tokens, which give 1851 distinct windows of seq_len + 1 = 33, fewer than "
         "n_sequences = 2000. HINT: lower calibration.cost.n_sequences or use a longer text"},
    {.name = "EvalTextShorterThanOneWindow",
     .area = "text",
     .what = "eval of a 7-token text at the model's context of 512",
     .command =
         [](Sandbox& s) {
           return Eval(s, 1, Model(), s.Write("short.txt", "Once upon a time.\n"));
         },
     .message = "hiq: error: eval: $TMP/short.txt holds 7 tokens, fewer than one window of 512. "
                "HINT: use a smaller --seq-len"},
    {.name = "QuantizeReconstructionTextTooShort",
     .area = "text",
     .what =
         "quantize whose reconstruction text is shorter than one window, refused before the plan",
     .command =
         [](Sandbox& s) {
           const fs::path text = s.Write("short.txt", "Once upon a time.\n");
           return s.Hiq() + " quantize " + s.PlanConfig().string() +
                  " --set calibration.reconstruction.path=" + text.string();
         },
     .message = "hiq: error: calibration.reconstruction: $TMP/short.txt holds 7 tokens, fewer "
                "than one window of seq_len + 1 = 33. HINT: lower "
                "calibration.reconstruction.seq_len"},
});

}  // namespace
}  // namespace hiq::test

namespace hiq::test {
namespace {

// One real plan of stories260K per process (hiq plan on the sandbox's small config), copied to
// $TMP/plan for each case, plan.json edited by `edit`.
fs::path EditedPlan(const Sandbox& s, const std::function<void(nlohmann::json&)>& edit) {
  static TempDir made("hiq-robust-plan");
  static bool planned = false;
  if (!planned) {
    const CommandResult r = RunCommand(s.Hiq() + " plan " + s.PlanConfig().string() + " --output " +
                                       (made / "plan").string());
    EXPECT_EQ(r.exit_code, 0) << r.output;
    planned = true;
  }
  fs::copy(made / "plan", s / "plan", fs::copy_options::recursive);
  nlohmann::json plan;
  std::ifstream(s / "plan" / "plan.json") >> plan;
  edit(plan);
  std::ofstream(s / "plan" / "plan.json") << plan.dump(2);
  return s / "plan";
}

std::string EvalPlan(const Sandbox& s, int np, const fs::path& plan,
                     const std::string& model = Model()) {
  return Eval(s, np, model, Sample(), " --seq-len 64 --plan " + plan.string());
}

nlohmann::json& Layer(nlohmann::json& plan, int l) {
  return plan["layers"][static_cast<size_t>(l)];
}

const int kPlanCases = RegisterCases({
    {.name = "PlanOfAnotherModel",
     .area = "plan",
     .what = "eval --plan with a model of the same shapes whose config.json differs",
     .command =
         [](Sandbox& s) {
           const fs::path plan = EditedPlan(s, [](nlohmann::json&) {});
           const fs::path model = EditedConfig(s, [](nlohmann::json& c) { c["bos_token_id"] = 1; });
           return EvalPlan(s, 1, plan, model.string());
         },
     .message = "hiq: error: plan $TMP/plan/plan.json was made for the model with fingerprint "
                "<sha256>, not for $TMP/model "
                "(fingerprint <sha256>)"},
    {.name = "PlanWithoutModelFingerprint",
     .area = "plan",
     .what = "plan.json without model_fingerprint (cannot be checked against the model)",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1,
                           EditedPlan(s, [](nlohmann::json& p) { p.erase("model_fingerprint"); }));
         },
     .message = "hiq: error: ReadPlan: $TMP/plan/plan.json: missing key 'model_fingerprint', so "
                "the plan cannot be checked against the model (written before hiq recorded it). "
                "HINT: re-run `hiq plan`"},
    {.name = "PlanCandidateOutOfRange",
     .area = "plan",
     .what = "a layer's candidate is 7 with 5 ratios",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1,
                           EditedPlan(s, [](nlohmann::json& p) { Layer(p, 3)["candidate"] = 7; }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 3 'model.layers.0.self_attn.o_proj' "
                "has candidate 7, expected one of the plan's 5 ratios, 0..4"},
    {.name = "PlanRatioNotItsCandidates",
     .area = "plan",
     .what = "a layer's ratio is not the ratio of its candidate",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1,
                           EditedPlan(s, [](nlohmann::json& p) { Layer(p, 5)["ratio"] = 0.3; }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 5 'model.layers.0.mlp.up_proj' has "
                "ratio 0.3 but its candidate 2 is ratio 0.1"},
    {.name = "PlanChannelCountWrong",
     .area = "plan",
     .what = "a layer lists one channel fewer than its ratio gives",
     .command =
         [](Sandbox& s) {
           return EvalPlan(
               s, 1, EditedPlan(s, [](nlohmann::json& p) { Layer(p, 6)["channels"].erase(0); }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 6 'model.layers.0.mlp.down_proj' has "
                "17 channels, expected ceil(0.1 * 172) = 18"},
    {.name = "PlanChannelsNotAscending",
     .area = "plan",
     .what = "a layer's channels repeat one index",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1, EditedPlan(s, [](nlohmann::json& p) {
                             auto& c = Layer(p, 9)["channels"];
                             c[1] = c[0];
                           }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 9 'model.layers.1.self_attn.v_proj' "
                "channel 18 at position 1 breaks the rule: channels ascending, unique, in [0, 64)"},
    {.name = "PlanChannelBeyondInputs",
     .area = "plan",
     .what = "a layer's last channel is n_in",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1, EditedPlan(s, [](nlohmann::json& p) {
                             auto& c = Layer(p, 30)["channels"];
                             c[c.size() - 1] = Layer(p, 30)["shape"][1];
                           }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 30 'model.layers.4.self_attn.v_proj' "
                "channel 64 at position 6 breaks the rule: channels ascending, unique, in [0, 64)"},
    {.name = "PlanBitsNotLayerBits",
     .area = "plan",
     .what = "a layer's bits are not LayerBits of its channels at the plan's spec",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1, EditedPlan(s, [](nlohmann::json& p) {
                             Layer(p, 2)["bits"] = Layer(p, 2)["bits"].get<double>() - 1;
                           }));
         },
     .message = "hiq: error: plan $TMP/plan/plan.json: layer 2 'model.layers.0.self_attn.v_proj' "
                "has bits 6191, expected LayerBits = 6192 for 7 channels at the plan's spec"},
    {.name = "PlanSpecInvalid",
     .area = "plan",
     .what = "plan.json spec bits_low 9",
     .command =
         [](Sandbox& s) {
           return EvalPlan(s, 1,
                           EditedPlan(s, [](nlohmann::json& p) { p["spec"]["bits_low"] = 9; }));
         },
     .message =
         "hiq: error: plan $TMP/plan/plan.json: spec: QuantSpec.bits_low = 9, expected 1..8"},
});

}  // namespace
}  // namespace hiq::test
