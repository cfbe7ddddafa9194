// Robustness cases of the YAML config and the command line: unknown keys, values out of range,
// inconsistent settings, files that are not there, and a budget no plan can meet.
#include "robustness.h"

namespace hiq::test {
namespace {

namespace fs = std::filesystem;

std::string Plan(const Sandbox& s, int np, const std::string& extra, const std::string& sets = "") {
  return s.Hiq(np) + " plan " + s.PlanConfig(extra).string() + sets;
}

const int kRegistered = RegisterCases({
    {.name = "ConfigKeyUnknown",
     .area = "config",
     .what = "a misspelt key (quant.bitz_low)",
     .command = [](Sandbox& s) { return Plan(s, 1, "", " --set quant.bitz_low=3"); },
     .message = "hiq: error: --set: unknown key 'quant.bitz_low' (did you mean 'quant.bits_low'?)"},
    {.name = "ConfigValueOutOfRange",
     .area = "config",
     .what = "quant.bits_low: 9 (allowed 1..8)",
     .command = [](Sandbox& s) { return Plan(s, 2, "", " --set quant.bits_low=9"); },
     .message = "hiq: error: rank *: --set: key 'quant.bits_low' = 9 is out of range [1, 8]"},
    {.name = "ConfigBitsHighNotAboveBitsLow",
     .area = "config",
     .what = "bits_high 2 with bits_low 2",
     .command = [](Sandbox& s) { return Plan(s, 1, "", " --set quant.bits_high=2"); },
     .message = "hiq: error: --set, $TMP/config.yaml: key 'quant.bits_high' = 2 must be greater "
                "than key 'quant.bits_low' = 2"},
    {.name = "ConfigYamlSyntaxError",
     .area = "config",
     .what = "a YAML file with an unclosed flow mapping",
     .command =
         [](Sandbox& s) {
           return s.Hiq(1) + " plan " + s.Write("bad.yaml", "quant: {bits_low: 2\n").string();
         },
     .message = "hiq: error: $TMP/bad.yaml: YAML syntax error at line 2, column 1: end of map flow "
                "not found"},
    {.name = "ConfigFileMissing",
     .area = "config",
     .what = "the config file does not exist",
     .command = [](Sandbox& s) { return s.Hiq(2) + " plan " + (s / "none.yaml").string(); },
     .message = "hiq: error: rank *: LoadConfig: config file '$TMP/none.yaml' does not exist"},
    {.name = "ConfigCalibrationFileMissing",
     .area = "config",
     .what = "calibration.fisher.path names no file",
     .command =
         [](Sandbox& s) {
           return Plan(s, 1, "", " --set calibration.fisher.path=" + (s / "gone.txt").string());
         },
     .message =
         "hiq: error: --set: key 'calibration.fisher.path' = '$TMP/gone.txt' does not exist"},
    {.name = "ConfigTypeMismatch",
     .area = "config",
     .what = "quant.group_size: thirty-two",
     .command = [](Sandbox& s) { return Plan(s, 1, "", " --set quant.group_size=thirty-two"); },
     .message = "hiq: error: --set: key 'quant.group_size' must be an integer, got 'thirty-two'"},
    {.name = "PlanBudgetBelowEveryAssignment",
     .area = "config",
     .what = "an average-bits budget below what the low bits alone cost",
     .command =
         [](Sandbox& s) {
           return Plan(s, 2, "", " --set quant.budget_ratio=0 --set quant.budget_bits=2.5");
         },
     .message = "hiq: error: rank *: --set, $TMP/config.yaml: key 'quant.budget_bits' = 2.5 cannot "
                "be met: codes and group scales alone take at least 2.57125 bits per weight with "
                "keys 'quant.bits_low' = 2, 'quant.bits_high' = 3, 'quant.group_size' = 32 and "
                "'quant.ratios' from 0.02"},
    {.name = "CommandOptionUnknown",
     .area = "config",
     .what = "an option hiq does not have (--seqlen for --seq-len)",
     .command =
         [](Sandbox& s) {
           return s.Hiq(1) + " eval --model " + (DataDir() / "stories260K").string() + " --text " +
                  (DataDir() / "text/tinystories/sample.txt").string() + " --seqlen 64";
         },
     .exit_code = 109,
     .message = "hiq: error: The following arguments were not expected: 64 --seqlen"},
});

}  // namespace
}  // namespace hiq::test
