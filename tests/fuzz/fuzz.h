// A fuzz target: LLVMFuzzerTestOneInput checks one input, and WlFuzzSeeds gives the inputs to
// start from. Built two ways (tests/fuzz/CMakeLists.txt): with clang and -DWL_FUZZ=ON as a
// libFuzzer binary (`make fuzz`), or with replay_main.cc as a test that replays the seeds and
// deterministic mutations of them in every `make test`. A target reports a broken property with
// WL_FUZZ_CHECK, which aborts, so that both drivers stop on it and keep the input that broke it
// (libFuzzer as crash-*, the replay driver as replay-crash-input).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::string> WlFuzzSeeds();

#define WL_FUZZ_CHECK(cond, ...)                                              \
  do {                                                                        \
    if (!(cond)) {                                                            \
      std::fprintf(stderr, "fuzz check failed: %s (%s:%d): ", #cond, __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                      \
      std::fprintf(stderr, "\n");                                             \
      std::abort();                                                           \
    }                                                                         \
  } while (0)
