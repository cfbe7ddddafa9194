# Every dependency comes from Debian's archive (see scripts/deps.sh); nothing is downloaded.
find_package(PkgConfig REQUIRED)
find_package(MPI REQUIRED COMPONENTS C CXX)
find_package(Eigen3 3.4 REQUIRED NO_MODULE)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Threads REQUIRED)
# Parallel HDF5 (libhdf5-openmpi-dev) through its pkg-config file: FindHDF5 picks the serial
# flavour when both are installed.
pkg_check_modules(HDF5 REQUIRED IMPORTED_TARGET hdf5-openmpi)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
pkg_check_modules(OPENBLAS REQUIRED IMPORTED_TARGET openblas)
find_path(GLPK_INCLUDE_DIR glpk.h REQUIRED)
find_library(GLPK_LIBRARY glpk REQUIRED)
add_library(hiq_glpk INTERFACE)
target_include_directories(hiq_glpk SYSTEM INTERFACE ${GLPK_INCLUDE_DIR})
target_link_libraries(hiq_glpk INTERFACE ${GLPK_LIBRARY})
if(hiq_TESTS)
  find_package(GTest REQUIRED)
endif()
if(hiq_BENCH)
  find_package(benchmark REQUIRED)
endif()

# Tests run as root in CI and on 2 cores: Open MPI refuses both without these flags.
set(hiq_MPIEXEC_PREFLAGS --allow-run-as-root --oversubscribe --bind-to none)
