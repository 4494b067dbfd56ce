#include <iostream>

#include "cmd/wattledger/commands.h"
#include "wattledger/server/server.h"

namespace wattledger::cmd {

int Main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and the main thread can
  // wait for the signals synchronously.
  server::BlockShutdownSignals();
  CLI::App app{"wattledger: event-sourced prepaid electricity platform"};
  app.set_version_flag("--version", server::kVersion);
  app.require_subcommand(1);
  std::function<int()> run;
  AddDev(app, &run);
  AddServices(app, &run);
  AddMockKafka(app, &run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!run) {
    std::cerr << app.help() << "\n";
    return 2;
  }
  try {
    return run();
  } catch (const std::exception& e) {
    std::cerr << "wattledger: internal error: " << e.what() << "\n";
    return 70;
  }
}

}  // namespace wattledger::cmd
