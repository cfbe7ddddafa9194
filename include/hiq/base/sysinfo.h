// hiq/base/sysinfo.h - what a process can tell about the machine it runs on, for provenance:
// the host name, the CPU model and the process's peak resident memory (per stage, if asked).
//
// Plain functions over the kernel's own accounting (gethostname, /proc/cpuinfo, getrusage); no
// state, thread-safe. They never throw: a probe that finds nothing returns "" (or 0), and the
// provenance records that as not known rather than failing a run that has done its work.
#pragma once

#include <cstdint>
#include <string>

namespace hiq {

// gethostname(2), or "" if it fails.
std::string HostName();

// The first "model name" line of /proc/cpuinfo (x86), else its "Model" or "CPU part" line (ARM
// kernels have no model name), else "".
std::string CpuModel();

// Peak resident set size of this process since it started or since the last ResetPeakRss, in
// bytes (getrusage ru_maxrss, which Linux reports in KiB); 0 if getrusage fails.
int64_t PeakRssBytes();

// Starts a new PeakRssBytes measurement, so that one stage's peak can be told from the job's:
// the kernel's high-water mark becomes the current resident set (5 written to
// /proc/self/clear_refs, Linux 4.0+; getrusage follows it). The caller keeps the maximum over
// the measurements for the process's peak. false when the kernel refuses: the peak then stays
// the process's.
bool ResetPeakRss();

}  // namespace hiq
