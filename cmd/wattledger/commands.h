// Subcommands of the `wattledger` binary. Each Add* registers its CLI11 subcommand and, when it
// is chosen, sets *run to the function main will call.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace wattledger::cmd {

void AddMockKafka(CLI::App& root, std::function<int()>* run);
void AddDev(CLI::App& root, std::function<int()>* run);
void AddServices(CLI::App& root, std::function<int()>* run);

int Main(int argc, char** argv);

}  // namespace wattledger::cmd
