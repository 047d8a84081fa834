// The fuzz targets' assertion: a failed check prints where and traps, so
// that libFuzzer keeps the input as a crash (assert() is off in release
// builds, and an exception could be caught by the code under test).
#pragma once

#include <cstdio>

#define FUZZ_CHECK(cond)                                                            \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
      __builtin_trap();                                                             \
    }                                                                               \
  } while (0)
