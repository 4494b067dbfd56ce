// The ledger's state as bytes, for checkpoints: Ledger::Save writes everything Apply folded in,
// and Ledger::Load reads it back into a ledger equal to the one saved (operator==, and the same
// decisions from then on). The adapter frames the bytes (which log, partition and seq they are
// of, the build that wrote them, a checksum) and decides whether a checkpoint may be used.
//
// The encoding is this build's own: varints, zigzag for signed numbers, length-prefixed strings,
// each map as a count and its entries. A key table's fingerprints differ between builds, and so
// may what a fold makes of an event, so only the build that wrote a checkpoint may read it (the
// adapter checks). Load trusts nothing it reads: a count, a length or an enum out of range, a key
// twice, bytes left over or an invariant that does not hold is DataLoss, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "wattledger/base/status.h"

namespace wattledger::ledger {

class Ledger;
struct LedgerConfig;

// Bytes out, a buffer at a time: `sink` is called with each full buffer and, at Finish, the rest.
class SnapshotWriter {
 public:
  explicit SnapshotWriter(std::function<void(std::string_view)> sink, size_t buffer_bytes = 1 << 20);
  void U64(uint64_t v);
  void I64(int64_t v);
  void Byte(uint8_t v);
  void Str(std::string_view v);
  // Hands what is buffered to the sink.
  void Finish();
  uint64_t written() const { return written_ + buf_.size(); }

 private:
  void FlushIfFull();
  std::function<void(std::string_view)> sink_;
  std::string buf_;
  size_t buffer_bytes_;
  uint64_t written_ = 0;
};

// Bytes in, a buffer at a time: `source(dst, max)` fills up to max bytes and returns how many,
// 0 at the end. Every read checks what it gets; the first problem sticks (error()) and makes
// every later read fail too.
class SnapshotReader {
 public:
  explicit SnapshotReader(std::function<size_t(char* dst, size_t max)> source, size_t buffer_bytes = 1 << 20);
  bool U64(uint64_t* v);
  bool I64(int64_t* v);
  bool Byte(uint8_t* v);
  // At most max_bytes long.
  bool Str(std::string* v, size_t max_bytes = kMaxString);
  // A count of entries that follow, each at least one byte: at most `max`.
  bool Count(uint64_t* v, uint64_t max = UINT64_MAX);
  // Records `what` as the problem (if none yet) and returns false.
  bool Fail(std::string what);
  // True once every byte was read and nothing failed.
  bool AtEnd();
  const Status& error() const { return error_; }
  uint64_t read() const { return consumed_; }

  static constexpr size_t kMaxString = 1 << 20;

 private:
  bool Fill(size_t want);  // At least `want` bytes buffered, or false at the end.
  std::function<size_t(char*, size_t)> source_;
  std::string buf_;
  size_t pos_ = 0;
  size_t buffer_bytes_;
  uint64_t consumed_ = 0;
  bool ended_ = false;
  Status error_;
};

// Ledger::Save into memory, and Ledger::Load from it (tests, fuzzing), through buffers of
// `buffer_bytes`.
std::string SaveToString(const Ledger& ledger, size_t buffer_bytes = 1 << 20);
Result<std::unique_ptr<Ledger>> LoadFromString(std::string_view bytes, const LedgerConfig& config,
                                               size_t buffer_bytes = 1 << 20);

}  // namespace wattledger::ledger
