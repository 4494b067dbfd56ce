#include "services/registry.h"

#include "services/ledger/app.h"

namespace wattledger::services {

const std::vector<ServiceFactory>& Registry() {
  static const std::vector<ServiceFactory> factories = {ledger::LedgerFactory()};
  return factories;
}

}  // namespace wattledger::services
