// Ledger checkpoints: a partition's folded Ledger written to a file, so that a start loads it and
// folds only the events after it, instead of the whole log (which grows with every charge).
//
// A checkpoint is written at a clean stop, once every batch is durable and the partition's
// ledger is the fold of its log up to its head. It is used only when all of these hold, else the
// start folds the whole partition as before and logs why:
//   * it was written by this very build (the executable's GNU build ID): what a fold makes of an
//     event, and the state's encoding, are this build's own;
//   * it is of this partition of a log of as many partitions, and its seq is within the log;
//   * the event at its seq is the one it was written after: its hash in the log's chain equals
//     the one recorded, so it is not of another log that happens to be as long;
//   * its SHA-256 over every byte before it matches (checked first, so that no field is believed
//     before it is known to be what was written), the state parses and holds the ledger's
//     invariants (Ledger::Load), and nothing in it is of an event past its seq.
// A build without a build ID writes and reads none: any two such builds would pass for one.
// A checkpoint is never the record: the log is. `wattledger ledger replay --verify` folds each
// partition from its first event and compares the checkpoint with that fold.
//
// The file, partition-<p>.ckpt in the checkpoint directory (a sibling of the log's), is:
// "wattledger-ledger-checkpoint\n", then through SnapshotWriter the file format (1), the build
// ID, the partition, the partitions, the seq, the hash of the event at seq ("" for seq 0), the
// Ledger (Ledger::Save); then 32 bytes of SHA-256 of all that. It is written to a temporary file,
// synced, renamed over the last one and the directory synced: a crash leaves the old one or the
// new one, never half of one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "services/ledger/domain/ledger.h"
#include "wattledger/base/build_id.h"
#include "wattledger/base/status.h"
#include "wattledger/eventlog/event_log.h"

namespace wattledger::ledger::adapters {

// The checkpoint directory of the ledger run with `data_dir` (its log is data_dir/ledger).
inline std::string CheckpointDirIn(const std::string& data_dir) { return data_dir + "/ledger-checkpoints"; }
std::string CheckpointPath(const std::string& dir, uint32_t partition);

// Writes `ledger`, the fold of `partition` of `log` up to `seq`, as that partition's checkpoint
// in `dir` (made if missing). Returns the bytes written.
Result<uint64_t> WriteCheckpoint(const std::string& dir, const eventlog::EventLog& log, uint32_t partition,
                                 uint64_t seq, const Ledger& ledger, std::string_view build = BuildId());

struct LoadedCheckpoint {
  std::unique_ptr<Ledger> ledger;
  uint64_t seq = 0;    // The ledger is the fold of the partition up to this seq.
  uint64_t bytes = 0;  // Of the file.
};

// The checkpoint of `partition` of `log` in `dir`. NOT_FOUND: there is none. FAILED_PRECONDITION:
// one this build may not use (another build's, another log's or partition's, or beyond the log's
// end). DATA_LOSS: a damaged one. Each error says which, and what was found.
Result<LoadedCheckpoint> ReadCheckpoint(const std::string& dir, const eventlog::EventLog& log, uint32_t partition,
                                        const LedgerConfig& config, std::string_view build = BuildId());

}  // namespace wattledger::ledger::adapters
