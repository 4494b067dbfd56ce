#include "services/registry.h"

namespace wattledger::services {

const std::vector<ServiceFactory>& Registry() {
  static const std::vector<ServiceFactory> factories = {};
  return factories;
}

}  // namespace wattledger::services
