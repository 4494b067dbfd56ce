// The build the running program is: the GNU build ID the linker gave its executable (a hash of
// its contents), in hex; "" if it has none. Two runs with the same ID run the same code, so data
// only one build can read (a ledger checkpoint) is tagged with it.
#pragma once

#include <string>

namespace wattledger {

const std::string& BuildId();

}  // namespace wattledger
