// Runs a fuzz target without libFuzzer (see fuzz.h): its seeds, every file named on the command
// line (a file, or each file of a directory: a libFuzzer corpus or crash), then --mutations
// inputs made from the seeds by flipping, cutting, repeating and splicing bytes, from a fixed
// random seed so that every run (with any compiler) replays the same inputs. --write-seeds DIR
// writes the seeds as files, to start a libFuzzer corpus from.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

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

// The input being checked, for the abort handler: a check that fails leaves it in
// replay-crash-input (in the working directory), to replay with `<target> replay-crash-input`.
const std::string* current = nullptr;

void SaveCurrentInput(int) {
  if (current != nullptr) {
    const int fd = ::open("replay-crash-input", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, current->data(), current->size());
      ::close(fd);
      static const char kSaved[] = "the input that failed is in replay-crash-input\n";
      (void)!::write(2, kSaved, sizeof kSaved - 1);
    }
  }
  ::signal(SIGABRT, SIG_DFL);
  ::raise(SIGABRT);
}

void Run(const std::string& input) {
  current = &input;
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  current = nullptr;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string Mutate(const std::vector<std::string>& seeds, std::mt19937_64& rng) {
  std::string s = seeds[rng() % seeds.size()];
  for (int edits = 1 + static_cast<int>(rng() % 4); edits > 0; --edits) {
    switch (rng() % 6) {
      case 0: {  // Change a byte.
        if (s.empty()) break;
        const size_t at = rng() % s.size();
        s[at] = static_cast<char>(rng());
        break;
      }
      case 1: {  // Flip a bit.
        if (s.empty()) break;
        const size_t at = rng() % s.size();
        s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;
      }
      case 2:  // Cut short.
        s.resize(s.empty() ? 0 : rng() % s.size());
        break;
      case 3: {  // Insert a random byte.
        const size_t at = rng() % (s.size() + 1);  // Each draw on its own line: a fixed order.
        const char c = static_cast<char>(rng());
        s.insert(s.begin() + static_cast<std::ptrdiff_t>(at), c);
        break;
      }
      case 4: {  // Repeat a slice.
        if (s.empty()) break;
        const size_t at = rng() % s.size();
        const size_t length = 1 + rng() % 16;
        s.insert(at, s.substr(at, length));
        break;
      }
      default: {  // Splice with another seed.
        const std::string& other = seeds[rng() % seeds.size()];
        const size_t keep = rng() % (s.size() + 1);
        const size_t from = other.empty() ? 0 : rng() % other.size();
        s = s.substr(0, keep) + other.substr(from);
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
  ::signal(SIGABRT, SaveCurrentInput);
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
