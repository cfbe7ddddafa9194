// hiq - the command line. The one place that catches: every error is printed once as
// "hiq: error: ..." (with the rank when several run) and, under MPI, takes the whole job down
// with Comm::AbortWorld (MPI_Abort) so that no rank is left waiting in a collective.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <optional>
#include <thread>

#include "hiq/base/error.h"          // hiq::Error
#include "hiq/base/fault.h"          // ArmFaultFromEnvironment
#include "hiq/base/interrupt.h"      // InstallInterruptHandlers, SetStage
#include "hiq/base/sysinfo.h"        // PeakRssBytes
#include "hiq/base/watchdog.h"       // StartWatchdog, StopWatchdog
#include "hiq/config/config.h"       // LoadConfig, ToYaml
#include "hiq/dist/mpi.h"            // MpiSession, Comm
#include "hiq/dist/pipeline.h"       // Pipeline
#include "hiq/io/checkpoint.h"       // Checkpoint, PrintInspect
#include "hiq/io/digest.h"           // DigestOutput, DescribeOutput
#include "hiq/io/h5.h"               // H5LibraryStateBroken
#include "hiq/io/output.h"           // OutputDir
#include "hiq/io/stagestore.h"       // RemoveStoreTemporaries
#include "hiq/io/synth.h"            // WriteSyntheticModel
#include "hiq/io/tokenizer.h"        // Tokenizer, WriteTokenFile
#include "hiq/model/blas.h"          // PinBlasCore, SetBlasThreads, CurrentBlasInfo
#include "hiq/model/llama.h"         // KeepActivationMemory
#include "hiq/stages/calibration.h"  // CheckCalibrationSets
#include "hiq/stages/eval.h"         // Perplexity
#include "hiq/stages/plan.h"         // RunPlanStage, WritePlan, ReadPlan, ApplyPlanRtn
#include "hiq/stages/quantize.h"     // RunQuantizeStage, LoadQuantizedPipeline, ExportQuantized
#include "hiq/stages/resume.h"       // ResumeStore, PlanEntryPath

namespace hiq {
namespace {

namespace fs = std::filesystem;

// Peak resident set of this process, from the kernel's own accounting.
double PeakRssMiB() { return static_cast<double>(PeakRssBytes()) / 1048576.0; }

// Only rank 0 talks to stdout; the other ranks compute silently.
bool Speaks(const Comm& comm) { return comm.rank() == 0; }

// A `hiq quantize` output (model.h5) is described by its provenance, a checkpoint by its table.
int RunInspect(const fs::path& dir, bool json) {
  std::error_code ec;
  if (fs::exists(dir / "model.h5", ec)) {
    const ModelFileInfo info = ReadModelFile(dir / "model.h5");
    if (json) {
      std::cout << DescribeOutputJson(dir, info).dump(2) << "\n";
    } else {
      std::cout << DescribeOutput(dir, info);
    }
    return 0;
  }
  if (!fs::is_directory(dir, ec)) {
    throw IoError("hiq inspect: " + dir.string() + " is not a directory (or does not exist)");
  }
  if (!fs::exists(dir / "config.json", ec)) {
    throw ConfigError("hiq inspect: " + dir.string() +
                      " holds neither config.json (a Hugging Face model) nor model.h5 (a `hiq "
                      "quantize` output)");
  }
  Checkpoint checkpoint(dir);
  checkpoint.CheckLlamaTensors();
  if (json) {
    std::cout << InspectJson(checkpoint).dump(2) << "\n";
  } else {
    PrintInspect(checkpoint, std::cout);
  }
  return 0;
}

// True if `a` and `b` name one file: the same path spelled differently, or through a link.
bool SameFile(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  if (fs::equivalent(a, b, ec)) return true;
  // `b` may not exist yet while a link of it already points at `a`'s final name.
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

int RunTokenize(const fs::path& model, const fs::path& text, const fs::path& out, bool keep_cr,
                bool json) {
  if (SameFile(text, out)) {
    throw ConfigError("hiq tokenize: --out '" + out.string() + "' is the input --text '" +
                      text.string() + "'; writing it would destroy the text");
  }
  const Tokenizer tokenizer(model / "tokenizer.model");
  CheckTokenizerMatchesModel(tokenizer, ReadModelVocab(model / "config.json"));
  const Newlines newlines = keep_cr ? Newlines::kKeep : Newlines::kLf;
  const std::vector<int32_t> tokens = TokenizeFile(tokenizer, text, newlines);
  TokenFileInfo info = MakeTokenFileInfo(tokenizer, text, tokens, newlines);
  WriteTokenFile(out, tokens, info);
  if (json) {
    std::printf(
        "{\"out\": \"%s\", \"count\": %zu, \"text_sha256\": \"%s\", \"tokenizer_sha256\": "
        "\"%s\"}\n",
        out.c_str(), tokens.size(), info.text_sha256.c_str(), info.tokenizer_sha256.c_str());
  } else {
    std::printf("out=%s count=%zu text_sha256=%s tokenizer_sha256=%s\n", out.c_str(), tokens.size(),
                info.text_sha256.c_str(), info.tokenizer_sha256.c_str());
  }
  return 0;
}

struct EvalArgs {
  fs::path model, text, plan, quantized;
  int seq_len = 0, max_windows = 0, batch = 4;
  bool json = false, keep_cr = false;
};

// A file removed when the object dies (the tokenizer of a quantized model, for LoadTokens).
struct TempFile {
  fs::path path;
  ~TempFile() {
    std::error_code ec;
    if (!path.empty()) fs::remove(path, ec);
  }
};

int RunEval(const Comm& comm, const EvalArgs& args) {
  if (args.model.empty() && args.quantized.empty()) {
    throw ConfigError("hiq eval: give --model DIR, --quantized OUT, or both");
  }
  std::string fields;
  std::optional<Pipeline> pipeline;
  std::optional<Checkpoint> checkpoint;
  int64_t context = 0;
  fs::path tokenizer;
  TempFile tokenizer_copy;
  if (!args.quantized.empty()) {
    // The packed model, each rank dequantizing only its own slice.
    ModelFileInfo info;
    pipeline.emplace(LoadQuantizedPipeline(comm, args.quantized, &info));
    context = pipeline->stage().config.max_position_embeddings;
    char buf[160];
    std::snprintf(buf, sizeof buf, " avg_bits=%.6f quantized=%s", StoredAverageBits(args.quantized),
                  args.quantized.c_str());
    fields = buf;
    if (args.model.empty()) {
      if (info.tokenizer_model.empty()) {
        throw FormatError("hiq eval: " + (args.quantized / "model.h5").string() +
                          " holds no tokenizer.model; pass --model DIR for its tokenizer");
      }
      tokenizer_copy.path =
          fs::temp_directory_path() / ("hiq-tokenizer-" + std::to_string(getpid()) + "-" +
                                       std::to_string(comm.rank()) + ".model");
      std::ofstream out(tokenizer_copy.path, std::ios::binary);
      out.write(reinterpret_cast<const char*>(info.tokenizer_model.data()),
                static_cast<std::streamsize>(info.tokenizer_model.size()));
      if (!out) throw IoError("hiq eval: cannot write " + tokenizer_copy.path.string());
      tokenizer = tokenizer_copy.path;
    }
  }
  ModelVocab vocab;
  if (!args.model.empty()) {
    checkpoint.emplace(args.model);
    tokenizer = args.model / "tokenizer.model";
    vocab = ReadModelVocab(args.model / "config.json");
    if (!pipeline) {
      context = checkpoint->config().max_position_embeddings;
    } else if (!(checkpoint->config() == pipeline->stage().config)) {
      throw FormatError("hiq eval: the config.json of " + args.model.string() +
                        " is not the model quantized in " + args.quantized.string());
    }
  } else {
    vocab.config_file = (args.quantized / "model.h5").string();
    vocab.vocab_size = pipeline->stage().config.vocab_size;
  }
  if (args.seq_len > 0) {
    CheckSeqLenFitsContext(args.seq_len, context, "hiq eval: --seq-len", vocab.config_file);
  }
  const int64_t seq_len = args.seq_len > 0 ? args.seq_len : context;
  // Every rank tokenizes (cheap, and identical): no broadcast of the token stream is needed.
  // The text, the tokenizer and the lengths are checked before the weights are loaded.
  const std::vector<int32_t> tokens = LoadTokens(
      args.text, Tokenizer(tokenizer), args.keep_cr ? Newlines::kKeep : Newlines::kLf, vocab);
  const std::vector<Sequence> windows =
      PerplexityWindows(tokens, seq_len, args.max_windows, args.text.string());
  // A plan is checked against the spec and the model's shapes before the weights load.
  std::optional<PlanReport> plan;
  if (!args.plan.empty()) {
    if (!args.quantized.empty())
      throw ConfigError("hiq eval: --plan and --quantized exclude each other");
    plan.emplace(ReadPlan(args.plan));
    CheckPlanAgainstSpec(*plan, args.plan / "plan.json", checkpoint->config());
  }
  if (!pipeline) pipeline.emplace(LoadPipeline(comm, *checkpoint));
  if (plan) {
    // Each rank quantizes only its own layers, round-to-nearest, as the plan says, once the
    // plan is known to be for this model; the bits printed are what the ranks applied.
    CheckPlanModel(*plan, args.plan / "plan.json", ModelFingerprint(*checkpoint, *pipeline),
                   args.model);
    const AppliedBits applied = ApplyPlanRtn(*plan, pipeline->mutable_stage());
    const double avg_bits = comm.AllSum(applied.bits) / comm.AllSum(applied.weights);
    char buf[96];
    std::snprintf(buf, sizeof buf, " avg_bits=%.6f plan=%s", avg_bits, args.plan.c_str());
    fields = buf;
  }
  const double sent_before = static_cast<double>(comm.bytes_sent());
  const PerplexityResult result = Perplexity(*pipeline, windows, args.batch);
  // Statistics beside the result: the largest resident set of any rank, and the bytes that
  // crossed between ranks per window.
  const double rss_mb = comm.AllMax(PeakRssMiB());
  const double sent = comm.AllSum(static_cast<double>(comm.bytes_sent()) - sent_before);
  if (Speaks(comm)) {
    char stats[192];
    std::snprintf(stats, sizeof stats,
                  " ranks=%d max_rss_mib=%.1f bytes_per_window=%.0f blas_core=%s threads=%d",
                  comm.size(), rss_mb, sent / static_cast<double>(result.windows),
                  CurrentBlasInfo().core.c_str(), CurrentBlasInfo().threads);
    if (args.json) {
      std::printf("%s\n", result.Json().c_str());
    } else {
      std::printf("model=%s text=%s\n", (args.model.empty() ? args.quantized : args.model).c_str(),
                  args.text.c_str());
      std::printf("%s%s%s\n", result.KeyValues().c_str(), stats, fields.c_str());
    }
  }
  return 0;
}

// --resume and --overwrite.
struct RerunFlags {
  bool resume = false, overwrite = false;
};

// What a run may do with what OUT already holds, decided on rank 0 under the lock and thrown
// alike on every rank: a complete output (`marker`) or an unfinished run's store is refused
// unless --resume reuses it or --overwrite replaces it (the store is then discarded at once;
// the previous output stays until the commit replaces it).
ResumeStore PrepareStore(const OutputDir& out, const Comm& comm, RerunFlags flags,
                         const char* marker, const char* what) {
  ResumeStore store{out.dir() / kResumeDirName, flags.resume};
  std::string error;
  if (comm.rank() == 0) {
    std::error_code ec;
    if (flags.overwrite) {
      fs::remove_all(store.dir, ec);
      if (ec) error = "--overwrite: cannot remove " + store.dir.string() + ": " + ec.message();
    } else if (flags.resume) {
      RemoveStoreTemporaries(store.dir);
    } else if (fs::exists(out.dir() / marker, ec)) {
      error = out.dir().string() + " already holds " + what + " (" + (out.dir() / marker).string() +
              "); pass --resume to reuse it or --overwrite to replace it";
    } else if (fs::exists(PlanEntryPath(store), ec)) {
      error = out.dir().string() + " holds the resume store of an unfinished run (" +
              store.dir.string() + "); pass --resume to continue it or --overwrite to start again";
    }
  }
  comm.Broadcast(error, 0);
  if (!error.empty()) throw ConfigError(error);
  return store;
}

// plan and quantize: the output directory is checked and locked before anything is computed,
// and published complete at the end (hiq/io/output.h).
int RunPlan(const Comm& comm, const RunConfig& config, bool json, RerunFlags flags) {
  if (config.threads > 0) SetBlasThreads(config.threads);
  std::FILE* log = Speaks(comm) ? (json ? stderr : stdout) : nullptr;
  SetStage("plan: output directory");
  OutputDir out = OutputDir::Open(config.output, comm, log);
  const ResumeStore store = PrepareStore(out, comm, flags, "plan.json", "a complete plan");
  SetStage("plan: load model");
  Checkpoint checkpoint(config.model.path);
  CheckCalibrationSets(config, ConfigStage::kPlan,
                       ReadModelVocab(config.model.path / "config.json"),
                       checkpoint.config().max_position_embeddings);
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const PlanReport report = RunPlanStage(config, pipeline, checkpoint, log, &store);
  SetStage("plan: write");
  if (Speaks(comm)) WritePlan(report, out.staging());
  if (Speaks(comm) && !report.resumed) {
    SetStage("plan: store");
    SavePlan(store, PlanComponents(config, report.model_fingerprint), report);
  }
  SetStage("plan: commit");
  out.Commit(kPlanMarkers,
             ManagedOutputFiles);  // the plan is in place before any rank reports success
  SetStage("plan: done");
  if (Speaks(comm) && json) {
    std::printf("%s\n", report.Json().c_str());
  } else if (Speaks(comm)) {
    std::printf("%s", report.Table().c_str());
    std::printf("%s", report.log.c_str());
    std::printf("wrote %s\n", (config.output / "plan.json").c_str());
    std::printf("%s\n", report.KeyValues().c_str());
  }
  return 0;
}

int RunQuantize(const Comm& comm, const RunConfig& config, RerunFlags flags) {
  if (config.threads > 0) SetBlasThreads(config.threads);
  std::FILE* log = Speaks(comm) ? stdout : nullptr;
  SetStage("quantize: output directory");
  OutputDir out = OutputDir::Open(config.output, comm, log);
  const ResumeStore store = PrepareStore(out, comm, flags, "model.h5", "a complete model");
  SetStage("quantize: load model");
  Checkpoint checkpoint(config.model.path);
  CheckCalibrationSets(config, ConfigStage::kQuantize,
                       ReadModelVocab(config.model.path / "config.json"),
                       checkpoint.config().max_position_embeddings);
  Pipeline pipeline = LoadPipeline(comm, checkpoint);
  const QuantizeReport report =
      RunQuantizeStage(config, pipeline, checkpoint, out.staging(), log, stderr, &store);
  SetStage("quantize: commit");
  out.Commit(kQuantizeMarkers, ManagedOutputFiles);
  SetStage("quantize: done");
  if (Speaks(comm)) std::printf("%s\n", report.KeyValues(config.output).c_str());
  return 0;
}

int Run(const Comm& comm, int argc, char** argv) {
  CLI::App app{"hiq: layer-wise high-impact ratio post-training quantization for LLaMA models"};
  app.require_subcommand(1);
  // A usage error reads like every other error of hiq's (docs/ROBUSTNESS.md).
  app.failure_message([](const CLI::App* a, const CLI::Error& e) {
    return "hiq: error: " + CLI::FailureMessage::simple(a, e);
  });
  int threads = 0;
  app.add_option("--threads", threads, "OpenBLAS threads per rank (default: cores / local ranks)");
  double stall_timeout = 600;
  app.add_option("--stall-timeout", stall_timeout,
                 "Seconds a rank may wait on another before the job ends, naming it (0: never)")
      ->check(CLI::NonNegativeNumber);

  auto* inspect = app.add_subcommand(
      "inspect",
      "Print a checkpoint's config and tensor table, or a quantized output's provenance");
  fs::path inspect_dir;
  bool inspect_json = false;
  inspect
      ->add_option("DIR", inspect_dir,
                   "Hugging Face LLaMA model directory, or a `hiq quantize` output directory")
      ->required();
  inspect->add_flag("--json", inspect_json, "Print JSON instead of the table");

  auto* digest = app.add_subcommand(
      "digest", "One SHA-256 per layer and tensor of a quantized output, and one for the model");
  fs::path digest_dir;
  bool digest_json = false;
  digest->add_option("OUT", digest_dir, "A `hiq quantize` output directory")->required();
  digest->add_flag("--json", digest_json, "Print JSON");

  auto* tokenize = app.add_subcommand("tokenize", "Tokenize a text file into an HDF5 token file");
  fs::path tok_model, tok_text, tok_out;
  bool tok_json = false, tok_keep_cr = false;
  tokenize->add_option("--model", tok_model, "Model directory (its tokenizer.model)")->required();
  tokenize->add_option("--text", tok_text, "UTF-8 text file")->required();
  tokenize->add_option("--out", tok_out, "Output token file (.h5)")->required();
  tokenize->add_flag("--json", tok_json, "Print JSON");
  tokenize->add_flag("--keep-cr", tok_keep_cr,
                     "Keep CR bytes as they are (default: CRLF and lone CR become LF)");

  auto* config = app.add_subcommand("config", "Print the fully resolved config");
  fs::path config_file;
  std::vector<std::string> config_sets;
  config->add_option("CONFIG", config_file, "YAML config")->required();
  config->add_option("--set", config_sets, "Override a key: --set quant.bits_low=3");

  auto* eval = app.add_subcommand("eval", "Perplexity on held-out text (GPTQ protocol)");
  EvalArgs eval_args;
  eval->add_option("--model", eval_args.model,
                   "Model directory (with --quantized: only its tokenizer, checked to match)");
  eval->add_option("--text", eval_args.text, "Text file or token file (.h5)")->required();
  eval->add_option("--seq-len", eval_args.seq_len, "Window length (default: model context)");
  eval->add_option("--max-windows", eval_args.max_windows, "Evaluate at most K windows");
  eval->add_option("--batch", eval_args.batch, "Windows per pipeline message")
      ->check(CLI::Range(1, 1024));
  eval->add_flag("--json", eval_args.json, "Print the result as JSON");
  eval->add_flag("--keep-cr", eval_args.keep_cr,
                 "Read the text's CR bytes as they are (default: CRLF and lone CR become LF)");
  eval->add_option("--plan", eval_args.plan,
                   "Apply the plan in this output directory by round-to-nearest first");
  eval->add_option("--quantized", eval_args.quantized,
                   "Evaluate the packed model of this `hiq quantize` output directory");

  auto* plan = app.add_subcommand("plan", "Fisher, cost terms and the global solve: write a plan");
  fs::path plan_config;
  fs::path plan_output;
  std::vector<std::string> plan_sets;
  plan->add_option("CONFIG", plan_config, "YAML config")->required();
  plan->add_option("--output", plan_output, "Output directory (overrides the config's output)");
  plan->add_option("--set", plan_sets, "Override a key: --set cost.mode=local");
  bool plan_json = false;
  plan->add_flag("--json", plan_json, "Print the plan as JSON (progress goes to stderr)");
  RerunFlags plan_flags;
  plan->add_flag("--resume", plan_flags.resume,
                 "Reuse the plan of OUT/.resume if it was made for this config, model and build");
  plan->add_flag("--overwrite", plan_flags.overwrite,
                 "Replace a complete plan in OUT and discard its resume store")
      ->excludes("--resume");

  auto* quantize = app.add_subcommand(
      "quantize", "Plan, reconstruct every rank's blocks, write the shards and model.h5");
  fs::path quantize_config, quantize_output;
  std::vector<std::string> quantize_sets;
  quantize->add_option("CONFIG", quantize_config, "YAML config")->required();
  quantize->add_option("--output", quantize_output,
                       "Output directory (overrides the config's output)");
  quantize->add_option("--set", quantize_sets, "Override a key: --set quantize.method=gptq");
  RerunFlags quantize_flags;
  quantize->add_flag("--resume", quantize_flags.resume,
                     "Continue or redo from OUT/.resume: skip the plan and every block stored "
                     "for this config, model and build; refuse entries of another");
  quantize
      ->add_flag("--overwrite", quantize_flags.overwrite,
                 "Replace a complete model in OUT and discard its resume store")
      ->excludes("--resume");

  auto* exporter =
      app.add_subcommand("export", "Write a quantized model as a dequantized Hugging Face model");
  fs::path export_in, export_out;
  std::string export_dtype = "F32";
  double export_shard_mib = 4096;
  exporter->add_option("OUT", export_in, "A `hiq quantize` output directory")->required();
  exporter->add_option("--out", export_out, "Hugging Face directory to write")->required();
  exporter->add_option("--dtype", export_dtype, "F32 | F16 | BF16 (default F32)");
  exporter
      ->add_option("--max-shard-mib", export_shard_mib,
                   "Largest safetensors file before the weights are sharded (default 4096)")
      ->check(CLI::PositiveNumber);

  auto* synth = app.add_subcommand("synth", "Write a random-weight model with real layer shapes");
  SynthOptions synth_opts;
  synth->add_option("--shape", synth_opts.shape, "llama2-7b | llama2-70b | tiny")->required();
  synth->add_option("--layers", synth_opts.layers, "Number of blocks")->required();
  synth->add_option("--seed", synth_opts.seed, "Seed of the weights")->required();
  synth->add_option("--out", synth_opts.out, "Output model directory")->required();
  synth->add_option("--tokenizer-from", synth_opts.tokenizer_from,
                    "Copy tokenizer.model from this model directory");
  synth->add_option("--dtype", synth_opts.dtype, "F32 | F16 | BF16 (default F16)");
  synth->add_option("--vocab", synth_opts.vocab,
                    "vocab_size instead of the shape's (e.g. the --tokenizer-from model's)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Every rank parses the same argv: the first says what is wrong (or prints --help), and
    // all end with the same exit code.
    return Speaks(comm) ? app.exit(e) : e.get_exit_code();
  }
  SetBlasThreads(threads);
  if (comm.size() > 1) StartWatchdog(stall_timeout, comm.rank());
  for (const auto* command : app.get_subcommands()) SetStage(command->get_name().c_str());
  if (*inspect) return RunInspect(inspect_dir, inspect_json);
  if (*digest) {
    const OutputDigest d = DigestOutput(digest_dir);
    std::cout << (digest_json ? d.Json().dump(2) + "\n" : d.Text());
    return 0;
  }
  if (*tokenize) return RunTokenize(tok_model, tok_text, tok_out, tok_keep_cr, tok_json);
  if (*config) {
    std::cout << ToYaml(LoadConfig(config_file, config_sets));
    return 0;
  }
  if (*eval) return RunEval(comm, eval_args);
  if (*plan) {
    if (!plan_output.empty()) plan_sets.push_back("output=" + plan_output.string());
    return RunPlan(comm, LoadConfig(plan_config, plan_sets), plan_json, plan_flags);
  }
  if (*quantize) {
    if (!quantize_output.empty()) quantize_sets.push_back("output=" + quantize_output.string());
    return RunQuantize(comm, LoadConfig(quantize_config, quantize_sets), quantize_flags);
  }
  if (*exporter) {
    const std::optional<DType> dtype = DTypeFromName(export_dtype);
    if (!dtype || !(*dtype == DType::kF32 || *dtype == DType::kF16 || *dtype == DType::kBF16)) {
      throw ConfigError("hiq export: --dtype " + export_dtype + ", expected F32, F16 or BF16");
    }
    std::error_code ec;
    if (fs::equivalent(export_in, export_out, ec)) {
      throw ConfigError("hiq export: --out " + export_out.string() + " is the quantized output " +
                        export_in.string() + " itself; export into another directory");
    }
    // Staged and committed like plan and quantize: config.json appears last, with every weight.
    SetStage("export: output directory");
    OutputDir out = OutputDir::Open(export_out, comm, stdout);
    SetStage("export: write");
    const int files = ExportQuantized(export_in, out.staging(), *dtype,
                                      static_cast<uint64_t>(export_shard_mib * 1048576.0));
    SetStage("export: commit");
    out.Commit(kExportMarkers, ManagedExportFiles);
    std::printf("out=%s files=%d dtype=%s\n", export_out.c_str(), files, export_dtype.c_str());
    return 0;
  }
  if (*synth) {
    const SynthResult r = WriteSyntheticModel(synth_opts);
    std::printf("out=%s params=%lld bytes=%lld\n", synth_opts.out.c_str(),
                static_cast<long long>(r.params), static_cast<long long>(r.bytes));
    return 0;
  }
  return 1;
}

}  // namespace
}  // namespace hiq

int main(int argc, char** argv) {
  // A write past RLIMIT_FSIZE then fails with EFBIG and becomes an error naming the file,
  // instead of the default SIGXFSZ killing the process with a core dump.
  std::signal(SIGXFSZ, SIG_IGN);
  hiq::PinBlasCore(argv);
  hiq::KeepActivationMemory();
  // Destroyed after MpiSession: the watchdog also sees a rank that never reaches MPI_Finalize.
  struct WatchdogStop {
    ~WatchdogStop() { hiq::StopWatchdog(); }
  } watchdog_stop;
  hiq::MpiSession mpi(&argc, &argv);
  hiq::InstallInterruptHandlers();  // after MPI_Init, so that no handler of its replaces ours
  int rank = 0, size = 1;
  try {
    const hiq::Comm world = hiq::Comm::World();
    rank = world.rank();
    size = world.size();
    hiq::SetInterruptRank(rank, size);
    hiq::ArmFaultFromEnvironment(rank);
    return hiq::Run(world, argc, argv);
  } catch (const std::exception& e) {
    hiq::SilenceInterrupts();  // this error line is the one line of this rank
    // A NaN or an overflow arises inside a pass: the step it stopped names where the numbers went
    // wrong (the message itself names the block, layer and sequence).
    std::string during;
    if (dynamic_cast<const hiq::NumericalError*>(&e) != nullptr) {
      during = "during " + hiq::CurrentStage() + ": ";
    }
    // std::bad_alloc's what() says nothing a user can act on; the step says what needed memory.
    std::string what = e.what();
    if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
      const std::string stage = hiq::CurrentStage();
      what = "out of memory during " + (stage.empty() ? std::string("startup") : stage) +
             " (HINT: fewer calibration sequences, or more ranks so that each holds fewer blocks)";
    }
    if (size > 1) {
      std::fprintf(stderr, "hiq: error: rank %d: %s%s\n", rank, during.c_str(), what.c_str());
      std::fflush(stderr);
      hiq::Comm::AbortWorld(1);
    }
    std::fprintf(stderr, "hiq: error: %s%s\n", during.c_str(), what.c_str());
    if (hiq::H5LibraryStateBroken()) {
      std::fflush(nullptr);
      _exit(1);  // MPI_Finalize would run HDF5's termination over a file that failed to close
    }
    return 1;
  }
}
