// The one check of text that must go into a proto3 string field: the event log's envelopes, the
// ledger's requests and records, and what wlctl sends.
#pragma once

#include <string_view>

namespace wattledger {

// Whether `s` is what protobuf's parser accepts in a proto3 string field (structurally valid
// UTF-8): text that is not could be written but never read back, and protobuf refuses to
// serialize it into a request.
bool IsUtf8(std::string_view s);

}  // namespace wattledger
