// The services this build contains. `wattledger dev` runs all of them in one process on the
// local bus; `wattledger <name>` runs one of them on its own. A service joins by adding its
// factory to Registry() in registry.cc.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wattledger/base/status.h"
#include "wattledger/server/server.h"

namespace CLI {
class App;
}

namespace wattledger::services {

struct ServiceFactory {
  std::string name;
  std::string description;
  // Adds service-specific flags (with defaults) to a subcommand and returns a maker that uses
  // them. Called once per subcommand that can host the service.
  std::function<std::function<Result<std::unique_ptr<server::Service>>(const server::ServerFlags&)>(CLI::App*)>
      add_flags;
  // Extra subcommands of `wattledger <name>` (replay, ...), optional.
  std::function<void(CLI::App* service_cmd, std::function<int()>* run)> add_tools;
};

const std::vector<ServiceFactory>& Registry();

}  // namespace wattledger::services
