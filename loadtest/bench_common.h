// What every benchmark binary shares: failing a run cleanly and reading the machine's load.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "wattledger/base/status.h"

namespace wattledger::bench {

// The benchmark's name for messages, and a data directory to remove if the run fails.
inline std::string& Name() {
  static std::string name = "bench";
  return name;
}
inline std::string& CleanupDir() {
  static std::string dir;
  return dir;
}

// Fails the run: exits 2 without running destructors, which would race RocksDB's (and the
// services') threads.
[[noreturn]] inline void Die(const std::string& what) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s: FAILED: %s\n", Name().c_str(), what.c_str());
  if (!CleanupDir().empty()) {
    std::error_code ec;
    std::filesystem::remove_all(CleanupDir(), ec);
  }
  std::_Exit(2);
}

inline void Check(const Status& s, const std::string& what) {
  if (!s.ok()) Die(what + ": " + s.ToString());
}

// The 1-minute load average: other work on the machine shows in every absolute figure.
inline double LoadAverage() {
  double load = -1;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  return load;
}

}  // namespace wattledger::bench
