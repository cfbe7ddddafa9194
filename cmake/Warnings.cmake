# Warning flags for hiq's own code (never for third-party headers, which are SYSTEM).
add_library(hiq_warnings INTERFACE)
target_compile_options(hiq_warnings INTERFACE
  -Wall -Wextra            # the usual set
  -Wshadow                 # a local hiding a member or outer variable is a classic bug source
  -Wnon-virtual-dtor       # exceptions and RAII classes must destruct correctly
  -Wcast-align -Wunused -Woverloaded-virtual
  -Wdouble-promotion       # float kernels must not silently compute in double
  -Wformat=2
  -Wimplicit-fallthrough
  # GCC 12 reports Eigen's AVX-512 intrinsics as maybe-uninitialized (a known false positive,
  # GCC bug 105593); it would bury real warnings under -Werror.
  -Wno-maybe-uninitialized
  # ...and std::string concatenation at -O3 as overlapping memcpy (GCC bug 105651).
  -Wno-restrict)
if(hiq_WERROR)
  target_compile_options(hiq_warnings INTERFACE -Werror)
endif()
