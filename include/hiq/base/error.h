// hiq/base/error.h - the exceptions every module throws, and the invariant check.
//
// Library code throws one of the typed exceptions below with a message that names the culprit:
// "function: what was found, what was expected, which file/key/tensor" (+ "HINT: ..." when a fix
// is known). Only main() catches, once, and under MPI aborts the whole job so that no rank is left
// waiting in a collective. HIQ_CHECK is for internal invariants (bugs), never for bad input: it
// prints file:line and aborts.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hiq {

// Base of every hiq error; what() is the full, user-facing message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class IoError : public Error {  // a file cannot be opened, read, mapped or written
 public:
  using Error::Error;
};
class FormatError : public Error {  // a file's contents are not what its format promises
 public:
  using Error::Error;
};
class ConfigError : public Error {  // a config key, value or command-line flag is invalid
 public:
  using Error::Error;
};
class SolverError : public Error {  // the plan cannot be solved (infeasible budget, GLPK failure)
 public:
  using Error::Error;
};
class MpiError : public Error {  // an MPI call failed or ranks disagree
 public:
  using Error::Error;
};
class NumericalError : public Error {  // a matrix cannot be factored (GPTQ's Hessian)
 public:
  using Error::Error;
};

}  // namespace hiq

#define HIQ_CHECK(cond)                                                                      \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      std::fprintf(stderr, "%s:%d: internal check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                          \
    }                                                                                        \
  } while (0)
