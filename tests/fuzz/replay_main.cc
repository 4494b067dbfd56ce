// Runs a fuzz target without libFuzzer (see fuzz.h): its seeds, every file named on the command
// line (a file, or each file of a directory: a libFuzzer corpus or crash), then --mutations
// inputs made from the seeds by flipping, cutting, repeating and splicing bytes, from a fixed
// random seed so that every run replays the same inputs. --write-seeds DIR writes the seeds as
// files, to start a libFuzzer corpus from.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "fuzz.h"

namespace {

namespace fs = std::filesystem;

void Run(const std::string& input) {
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
    switch (rng() % 6) {
      case 0:  // Change a byte.
        if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng());
        break;
      case 1:  // Flip a bit.
        if (!s.empty()) s[rng() % s.size()] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 2:  // Cut short.
        s.resize(s.empty() ? 0 : rng() % s.size());
        break;
      case 3:  // Insert a random byte.
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(s.empty() ? 0 : rng() % (s.size() + 1)),
                 static_cast<char>(rng()));
        break;
      case 4: {  // Repeat a slice.
        if (s.empty()) break;
        const size_t at = rng() % s.size();
        s.insert(at, s.substr(at, 1 + rng() % 16));
        break;
      }
      default: {  // Splice with another seed.
        const std::string& other = seeds[rng() % seeds.size()];
        s = s.substr(0, s.empty() ? 0 : rng() % (s.size() + 1)) +
            other.substr(other.empty() ? 0 : rng() % other.size());
        break;
      }
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long mutations = 200'000;
  std::vector<std::string> paths;
  std::string write_seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--mutations" && i + 1 < argc) {
      mutations = std::stol(argv[++i]);
    } else if (arg == "--write-seeds" && i + 1 < argc) {
      write_seeds = argv[++i];
    } else if (arg.starts_with("-")) {
      std::cerr << "usage: " << argv[0] << " [--mutations N] [--write-seeds DIR] [FILE|DIR]...\n";
      return 2;
    } else {
      paths.push_back(arg);
    }
  }
  const std::vector<std::string> seeds = WlFuzzSeeds();
  if (seeds.empty()) {
    std::cerr << "the target has no seeds\n";
    return 2;
  }
  if (!write_seeds.empty()) {
    fs::create_directories(write_seeds);
    for (size_t i = 0; i < seeds.size(); ++i) {
      std::ofstream(fs::path(write_seeds) / ("seed-" + std::to_string(i)), std::ios::binary) << seeds[i];
    }
    std::cout << "wrote " << seeds.size() << " seeds to " << write_seeds << "\n";
    return 0;
  }
  size_t files = 0;
  for (const auto& seed : seeds) Run(seed);
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      for (const auto& entry : fs::directory_iterator(p)) {
        if (entry.is_regular_file()) Run(ReadFile(entry.path())), ++files;
      }
    } else {
      Run(ReadFile(p));
      ++files;
    }
  }
  std::mt19937_64 rng(20261122);
  for (long i = 0; i < mutations; ++i) Run(Mutate(seeds, rng));
  std::cout << seeds.size() << " seeds, " << files << " files, " << mutations << " mutations: no check failed\n";
  return 0;
}
