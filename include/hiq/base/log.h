// hiq/base/log.h - progress lines of the stages: printf to a stream that may be null.
//
// A stage logs from rank 0 only by handing the other ranks a null stream, so no caller tests the
// rank. Each line is flushed at once, so that a job log shows where a run stopped.
// Thread-safe as std::fprintf is.
#pragma once

#include <cstdio>

namespace hiq {

// printf(fmt, ...) to `log` and flush; nothing when `log` is null.
void Log(std::FILE* log, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace hiq
