// Robustness cases of the output directory (docs/FORMATS.md, "The output directory"): paths that
// cannot be an output, locks of live, foreign, garbled and dead runs, what a run leaves of the
// previous one, file size limits, and SIGTERM/SIGINT under mpirun and alone.
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "robustness.h"

namespace hiq::test {
namespace {

namespace fs = std::filesystem;

std::string Plan(const Sandbox& s, int np, const std::string& extra = "") {
  return s.Hiq(np) + " plan " + s.PlanConfig().string() + extra;
}

std::string Read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// A previous complete plan output at $TMP/out (as hiq wrote it), and its hashes at $TMP/before.
std::string PreviousPlanThen(const Sandbox& s, const std::string& then) {
  return Plan(s, 1) + " > " + (s / "first.log").string() + " 2>&1 && " + then;
}

// The plan's own files, complete, and nothing of the run's machinery left beside them.
void ExpectCompletePlanOnly(const Sandbox& s) {
  for (const char* f : {"plan.json", "plan.h5", "fixed/plan.json", "fixed/plan.h5"}) {
    EXPECT_TRUE(fs::is_regular_file(s.Out() / f)) << f;
  }
  for (const auto& e : fs::directory_iterator(s.Out())) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "plan.json" || name == "plan.h5" || name == "fixed" ||
                name == "notes.txt" || name == ".resume")
        << e.path() << " left beside the plan";
  }
}

// mpirun (or hiq alone) in the background with a large cost set, so that the cost terms run for
// many seconds; `signal` once the cost set is logged, then the log.
std::string Interrupted(const Sandbox& s, int np, const char* signal) {
  const std::string log = (s / "run.log").string();
  return "sh -c '" +
         Plan(s, np, " --set calibration.cost.n_sequences=64 --set calibration.cost.seq_len=128") +
         " > " + log + " 2>&1 & p=$!; i=0; while ! grep -q \"cost set\" " + log +
         " && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; kill -" + signal +
         " $p; wait $p; code=$?; cat " + log + "; exit $code'";
}

const int kRegistered = RegisterCases({
    {.name = "OutputIsAFile",
     .area = "output",
     .what = "--output names an existing file",
     .command =
         [](Sandbox& s) {
           s.Write("out", "a file");
           return Plan(s, 1);
         },
     .message = "hiq: error: output '$TMP/out' exists and is not a directory",
     .check = [](Sandbox& s, const CommandResult&) { EXPECT_EQ(Read(s.Out()), "a file"); }},
    {.name = "OutputUnderAFile",
     .area = "output",
     .what = "--output under an existing file",
     .command =
         [](Sandbox& s) {
           s.Write("file", "a file");
           return Plan(s, 2, " --output " + (s / "file" / "out").string());
         },
     .message =
         "hiq: error: rank *: cannot create output directory '$TMP/file/out': Not a directory"},
    {.name = "OutputNotCreatable",
     .area = "output",
     .what = "--output in a location even root cannot create in (/sys)",
     .command = [](Sandbox& s) { return Plan(s, 1, " --output /sys/hiq-out"); },
     .message =
         "hiq: error: cannot create output directory '/sys/hiq-out': Operation not permitted"},
    {.name = "OutputNotWritable",
     .area = "output",
     .what = "--output an existing directory even root cannot write in (/sys)",
     .command = [](Sandbox& s) { return Plan(s, 1, " --output /sys"); },
     .message = "hiq: error: output directory '/sys' is not writable: cannot create "
                "'/sys/.hiq.lock.$PID': Permission denied"},
    {.name = "OutputLockedByALiveRun",
     .area = "output",
     .what = "another run on this host holds OUT/.hiq.lock (pid 1 is alive)",
     .command =
         [](Sandbox& s) {
           return "printf 'host=%s pid=1\\n' \"$(hostname)\" > " +
                  s.Write("out/.hiq.lock", "").string() + " && " + Plan(s, 2);
         },
     .message = "hiq: error: rank *: output directory '$TMP/out' is in use by pid 1 on host $HOST "
                "(lock file '$TMP/out/.hiq.lock'); wait for that run or choose another output "
                "directory"},
    {.name = "OutputLockedByAnotherHost",
     .area = "output",
     .what = "OUT/.hiq.lock of a run on another host (its liveness cannot be checked)",
     .command =
         [](Sandbox& s) {
           s.Write("out/.hiq.lock", "host=node-elsewhere pid=77\n");
           return Plan(s, 1);
         },
     .message = "hiq: error: output directory '$TMP/out' is locked by pid 77 on host "
                "node-elsewhere, another host, which this one cannot check (lock file "
                "'$TMP/out/.hiq.lock'); if that job is dead, remove the lock file",
     .check =
         [](Sandbox& s, const CommandResult&) {
           EXPECT_EQ(Read(s.Out() / ".hiq.lock"), "host=node-elsewhere pid=77\n");
           ExpectNothingComplete(s.Out());
         }},
    {.name = "OutputLockGarbled",
     .area = "output",
     .what = "an empty OUT/.hiq.lock",
     .command =
         [](Sandbox& s) {
           s.Write("out/.hiq.lock", "");
           return Plan(s, 1);
         },
     .message = "hiq: error: output directory '$TMP/out' is locked by '$TMP/out/.hiq.lock', which "
                "does not hold 'host=H pid=P'; remove it if no hiq run uses '$TMP/out'"},
    {.name = "OutputStaleLockTakenOver",
     .area = "output",
     .what = "OUT/.hiq.lock of a dead process on this host: reported and taken over",
     .command =
         [](Sandbox& s) {
           return "printf 'host=%s pid=999999999\\n' \"$(hostname)\" > " +
                  s.Write("out/.hiq.lock", "").string() + " && " + Plan(s, 2);
         },
     .exit_code = 0,
     .message = "hiq: taking over the stale lock $TMP/out/.hiq.lock of pid 999999999 on host $HOST "
                "(no such process)",
     .check = [](Sandbox& s, const CommandResult&) { ExpectCompletePlanOnly(s); }},
    {.name = "OutputStagingOfADeadRun",
     .area = "output",
     .what = "a staging directory left by a killed run: removed",
     .command =
         [](Sandbox& s) {
           s.Write("out/.staging-12/plan.h5", "half");
           return Plan(s, 1);
         },
     .exit_code = 0,
     .message = "hiq: removing $TMP/out/.staging-$PID, left by an interrupted run",
     .check = [](Sandbox& s, const CommandResult&) { ExpectCompletePlanOnly(s); }},
    {.name = "QuantizeOverACompleteModel",
     .area = "output",
     .what = "quantize into an output that holds model.h5, without --resume or --overwrite",
     .command =
         [](Sandbox& s) {
           s.Write("out/model.h5", "a model");
           return s.Hiq(2) + " quantize " + s.PlanConfig().string();
         },
     .message = "hiq: error: rank *: $TMP/out already holds a complete model ($TMP/out/model.h5); "
                "pass --resume to reuse it or --overwrite to replace it",
     .check = [](Sandbox& s,
                 const CommandResult&) { EXPECT_EQ(Read(s.Out() / "model.h5"), "a model"); }},
    {.name = "PlanOverACompletePlan",
     .area = "output",
     .what = "plan into an output that holds plan.json, without --resume or --overwrite",
     .command =
         [](Sandbox& s) {
           return PreviousPlanThen(s, "cp -a " + s.Out().string() + " " + (s / "before").string() +
                                          " && " + Plan(s, 1));
         },
     .message = "hiq: error: $TMP/out already holds a complete plan ($TMP/out/plan.json); pass "
                "--resume to reuse it or --overwrite to replace it",
     .check =
         [](Sandbox& s, const CommandResult&) {
           EXPECT_EQ(FileHashes(s.Out()), FileHashes(s / "before"));
         }},
    {.name = "UnfinishedResumeStore",
     .area = "output",
     .what = "an output holding the resume store of a killed run, without --resume or --overwrite",
     .command =
         [](Sandbox& s) {
           s.Write("out/.resume/plan.entry", "an entry");
           return Plan(s, 1);
         },
     .message = "hiq: error: $TMP/out holds the resume store of an unfinished run "
                "($TMP/out/.resume); pass --resume to continue it or --overwrite to start again",
     .check =
         [](Sandbox& s, const CommandResult&) {
           EXPECT_EQ(Read(s.Out() / ".resume/plan.entry"), "an entry");
         }},
    {.name = "ResumeOfAnotherConfig",
     .area = "output",
     .what = "--resume with a plan key changed since the stored plan: refused naming the key",
     .command =
         [](Sandbox& s) {
           return PreviousPlanThen(s, Plan(s, 2, " --resume --set cost.refine=3"));
         },
     .message = "hiq: error: rank *: --resume: $TMP/out/.resume/plan.entry was made with another "
                "config (plan stage: cost.refine is 2 in the entry, 3 now); it is not reused. Pass "
                "--overwrite to discard the store ($TMP/out/.resume) and compute everything again",
     .check = [](Sandbox& s, const CommandResult&) { ExpectCompletePlanOnly(s); }},
    {.name = "ResumeEntryDamaged",
     .area = "output",
     .what = "--resume with a plan entry whose first line was overwritten",
     .command =
         [](Sandbox& s) {
           const std::string entry = (s.Out() / ".resume/plan.entry").string();
           return PreviousPlanThen(
               s, "sed -i 1s/.*/garbage/ " + entry + " && " + Plan(s, 2, " --resume"));
         },
     .message = "hiq: error: rank *: resume store: $TMP/out/.resume/plan.entry is not a complete "
                "hiq-resume-entry: it does not start with 'hiq-resume-entry 1'; remove it (or pass "
                "--overwrite) to recompute it",
     .check = [](Sandbox& s, const CommandResult&) { ExpectCompletePlanOnly(s); }},
    {.name = "OutputOfAnotherRankCountReplaced",
     .area = "output",
     .what = "a plan --overwrite into a quantize output of 7 ranks: model.h5 and its shards "
             "removed, other files kept",
     .command =
         [](Sandbox& s) {
           s.Write("out/model.h5", "old root file");
           s.Write("out/plan.json", "old plan");
           s.Write("out/notes.txt", "the user's");
           for (int r = 0; r < 7; ++r) {
             s.Write("out/shards/rank-0000" + std::to_string(r) + "-of-00007.h5", "old shard");
           }
           return Plan(s, 2, " --overwrite");
         },
     .exit_code = 0,
     .message = "wrote $TMP/out/plan.json",
     .check =
         [](Sandbox& s, const CommandResult&) {
           ExpectCompletePlanOnly(s);
           EXPECT_FALSE(fs::exists(s.Out() / "model.h5"));
           EXPECT_FALSE(fs::exists(s.Out() / "shards")) << "shards of the 7-rank run";
           EXPECT_EQ(Read(s.Out() / "notes.txt"), "the user's");
         }},
    {.name = "OutputReRunFailsLate",
     .area = "output",
     .what = "a re-run that fails after the Fisher pass (infeasible budget): the previous plan "
             "stays byte for byte",
     .command =
         [](Sandbox& s) {
           return PreviousPlanThen(
               s, "cp -a " + s.Out().string() + " " + (s / "before").string() + " && " +
                      Plan(s, 2,
                           " --overwrite --set quant.budget_ratio=0 --set quant.budget_bits=2.6"));
         },
     .message = "hiq: error: rank 0: SolvePareto: budget 2.6 bits/weight is infeasible: "
                "achievable average bits range from 2.86423 to 3.04767. HINT: raise the budget to "
                "at least 2.86423 bits/weight",
     .check =
         [](Sandbox& s, const CommandResult&) {
           auto after = OutputHashes(s.Out());
           std::erase_if(after, [](const auto& kv) {  // a rank 0 killed by the abort keeps these
             return kv.first == ".hiq.lock" || kv.first.starts_with(".staging-");
           });
           EXPECT_EQ(after, OutputHashes(s / "before"));
         }},
    {.name = "FileSizeLimitAtTheResumeStore",
     .area = "disk",
     .what = "RLIMIT_FSIZE 2 KiB (prlimit --fsize): the first file the plan writes, the resume "
             "store's entry of block 0's Fisher scores (5 KB), fails with EFBIG",
     .command =
         [](Sandbox& s) {
           return AgainUnderFileSizeLimit(s, " plan " + s.PlanConfig().string(), 2048,
                                          " --overwrite");
         },
     .message = "hiq: error: resume store: cannot write "
                "'$TMP/out/.resume/fisher/block-00000.entry.tmp-$PID': File too large",
     .check = ExpectOutputAsBefore},
    {.name = "FileSizeLimitAtThePlanJson",
     .area = "disk",
     .what = "RLIMIT_FSIZE 8 KiB: the resume store's entries (at most 5 KB) pass, the plan "
             "writer's write(2) of fixed/plan.json (10 KB) fails with EFBIG",
     .command =
         [](Sandbox& s) {
           return AgainUnderFileSizeLimit(s, " plan " + s.PlanConfig().string(), 8192,
                                          " --overwrite");
         },
     .message = "hiq: error: WritePlan: cannot write '$TMP/out/.staging-$PID/fixed/plan.json.tmp': "
                "File too large",
     .check = ExpectOutputAsBefore},
    {.name = "FileSizeLimitInHdf5",
     .area = "disk",
     .what = "RLIMIT_FSIZE 16 KiB: HDF5's write of plan.h5 fails with EFBIG at close",
     .command =
         [](Sandbox& s) {
           return AgainUnderFileSizeLimit(s, " plan " + s.PlanConfig().string(), 16384,
                                          " --overwrite");
         },
     .message = "hiq: error: H5File::Commit: cannot close "
                "'$TMP/out/.staging-$PID/fixed/plan.h5.tmp-$PID': H5FD__sec2_write(): file write "
                "failed: File too large",
     .check = ExpectOutputAsBefore},
    {.name = "FileSizeLimitInAShard",
     .area = "disk",
     .what = "RLIMIT_FSIZE 64 KiB on a quantize re-run: the shard's HDF5 write fails with EFBIG; "
             "the previous model stays byte for byte",
     .command =
         [](Sandbox& s) {
           return AgainUnderFileSizeLimit(s, " quantize " + s.PlanConfig().string(), 65536,
                                          " --overwrite");
         },
     .message = "hiq: error: H5Group::WriteDataset: cannot write dataset "
                "'/tensors/model.embed_tokens.weight/data' in "
                "'$TMP/out/.staging-$PID/shards/rank-00000-of-00001.h5': H5FD__sec2_write(): file "
                "write failed: File too large",
     .check = ExpectOutputAsBefore},
    {.name = "DiskFullDuringThePlan",
     .area = "disk",
     .what = "the output on an 8 KiB tmpfs (mounted by the test, as root): the plan's first file, "
             "the resume store's entry of block 0's Fisher scores (2 pages), fails with ENOSPC; "
             "nothing is published, and the store holds no partial entry",
     .command =
         [](Sandbox& s) {
           const std::string small = (s / "small").string();
           return "mkdir " + small + " && mount -t tmpfs -o size=8k tmpfs " + small + " && { " +
                  Plan(s, 1, " --output " + small + "/out") + "; rc=$?; (cd " + small +
                  "/out && find . | sort) > " + (s / "left.txt").string() + "; umount " + small +
                  "; exit $rc; }";
         },
     .message = "hiq: error: resume store: cannot write "
                "'$TMP/small/out/.resume/fisher/block-00000.entry.tmp-$PID': No space left on "
                "device",
     .check =
         [](Sandbox& s, const CommandResult&) {
           std::ifstream in(s / "left.txt");
           const std::string left((std::istreambuf_iterator<char>(in)), {});
           EXPECT_EQ(left, ".\n./.resume\n./.resume/fisher\n")
               << "left in the full output directory:\n"
               << left;
         }},
    {.name = "SigtermToMpirun",
     .area = "signal",
     .what = "SIGTERM to mpirun -np 2 during the cost terms (as Slurm at the time limit)",
     .command = [](Sandbox& s) { return Interrupted(s, 2, "TERM"); },
     .message = "hiq: interrupted by SIGTERM during plan: cost terms (rank 1); $TMP/out is "
                "incomplete"},
    {.name = "SigintToMpirun",
     .area = "signal",
     .what = "SIGINT (Ctrl-C) to mpirun -np 2: mpirun sends the ranks SIGTERM",
     .command = [](Sandbox& s) { return Interrupted(s, 2, "INT"); },
     .message = "hiq: interrupted by SIGTERM during plan: cost terms (rank 0); $TMP/out is "
                "incomplete"},
    {.name = "SigtermToASingleProcess",
     .area = "signal",
     .what = "SIGTERM to hiq run without mpirun: exit 128 + 15",
     .command = [](Sandbox& s) { return Interrupted(s, 1, "TERM"); },
     .exit_code = 143,
     .message = "hiq: interrupted by SIGTERM during plan: cost terms; $TMP/out is incomplete"},
});

}  // namespace
}  // namespace hiq::test
