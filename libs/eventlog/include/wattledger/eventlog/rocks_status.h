// The one conversion from rocksdb::Status to our Status.
#pragma once

#include <rocksdb/status.h>

#include <string>

#include "wattledger/base/status.h"

namespace wattledger::eventlog {

inline Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  StatusCode code = StatusCode::kInternal;
  if (s.IsNotFound()) code = StatusCode::kNotFound;
  else if (s.IsCorruption()) code = StatusCode::kDataLoss;
  else if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) code = StatusCode::kUnavailable;
  else if (s.IsInvalidArgument()) code = StatusCode::kInvalidArgument;
  return Status(code, what + ": " + s.ToString());
}

}  // namespace wattledger::eventlog
