// Progress lines (see hiq/base/log.h).
#include "hiq/base/log.h"

#include <cstdarg>

namespace hiq {

void Log(std::FILE* log, const char* fmt, ...) {
  if (log == nullptr) return;
  va_list args;
  va_start(args, fmt);
  std::vfprintf(log, fmt, args);
  va_end(args);
  std::fflush(log);
}

}  // namespace hiq
