// Wiring of the ledger service: flags -> LedgerService, and the `wattledger ledger replay` tool.
#pragma once

#include "services/registry.h"

namespace wattledger::ledger {

services::ServiceFactory LedgerFactory();

}  // namespace wattledger::ledger
