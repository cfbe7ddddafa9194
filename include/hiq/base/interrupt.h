// hiq/base/interrupt.h - what the process is doing, for the one line a SIGTERM or SIGINT prints.
//
// The stages name their steps as they go (SetStage("plan: fisher")); the handler installed by
// InstallInterruptHandlers() writes "hiq: interrupted by SIGTERM during plan: fisher (rank 1);
// OUT is incomplete" to stderr with write(2), removes the output lock this process holds, and
// ends the process with _exit(128 + signo). Slurm sends SIGTERM at a job's time limit and
// Open MPI's mpirun forwards SIGTERM and SIGINT to the ranks as SIGTERM (docs/FORMATS.md,
// "Signals"). Everything the handler reads is a preformatted static buffer, so it is
// async-signal-safe; no destructor, flush or MPI call runs after the signal. Names longer than the
// buffers are cut. Thread-safety: the setters may be called from any one thread at a time.
#pragma once

#include <string>

namespace hiq {

// The step now running, e.g. "plan: cost terms" (at most 127 bytes are kept). Fires the fault
// HIQ_FAULT arms for this step, if any (hiq/base/fault.h), so it may throw or not return.
void SetStage(const char* name);
std::string CurrentStage();

// The rank and rank count the message names ("(rank r)" when count > 1).
void SetInterruptRank(int rank, int count);
// The output directory the message calls incomplete, and the lock file this process holds
// (removed by the handler); null or empty for none.
void SetInterruptOutput(const char* out_dir, const char* lock_file);

// The process is already ending with an error (main's catch): a signal from now on, such as
// the SIGTERM that Open MPI's MPI_Abort delivers to every rank, ends it without a second line.
void SilenceInterrupts();

// Writes `line` to stderr with write(2), removes the output lock this process holds and ends the
// process with _exit(code), as the handler does (the stall watchdog's end, hiq/base/watchdog.h).
// Signals are silenced first, so the SIGTERM that mpirun sends next prints nothing more.
[[noreturn]] void EndProcessWithLine(const char* line, int code);

// Installs the handler for SIGTERM and SIGINT.
void InstallInterruptHandlers();

// The handler's line for `signo` from the current state, without the newline (for tests).
std::string InterruptMessage(int signo);

}  // namespace hiq
