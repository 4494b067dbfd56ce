// EventLog: a partitioned, append-only, hash-chained event log in RocksDB, and the service state
// that is derived from it, committed together.
//
// What it owns (one RocksDB database; its column families):
//   events.<p> (partition u32 BE, seq u64 BE) -> Envelope  partition p's events, gap-free, seq from 1
//              (a log created before this layout has one "events" for all partitions, same keys)
//   state      service-defined key -> value                derived state, digestible for replay
//   default    meta: consumed input positions, idempotency keys, relay positions, the log's shape
//
// The one guarantee everything else stands on: Commit() writes a WriteSet (new events, the state
// changes they imply, the input positions consumed and the idempotency keys used) as ONE RocksDB
// WriteBatch. Either all of it is in the database or none of it is. The batch holds each key once
// (the last write of it in the WriteSet) and each column family's keys in key order, so that
// every memtable insert starts next to the previous one. With FsyncPolicy::kEveryCommit
// the WAL is fsynced before Commit returns, so whatever a caller acknowledges after Commit
// survives kill -9 and power loss. With kNone it survives a process crash but not power loss.
//
// Thread safety: all methods are safe to call from any thread. Commits that append to the same
// partition are serialised; commits to different partitions proceed in parallel and share
// RocksDB's group commit (one WAL fsync for all of them). Throughput comes from batching many
// events into one WriteSet and from partitions committing side by side. Reads never block commits.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wattledger/base/clock.h"
#include "wattledger/base/status.h"
#include "wattledger/eventlog/v1/envelope.pb.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class RateLimiter;
}  // namespace rocksdb

namespace wattledger::eventlog {

using Envelope = ::wattledger::eventlog::v1::Envelope;
using Causation = ::wattledger::eventlog::v1::Causation;

inline constexpr size_t kHashBytes = 32;
// Bounds on what one commit may carry; a larger batch is a caller bug or an attack.
inline constexpr size_t kMaxEventsPerCommit = 100'000;
inline constexpr size_t kMaxPayloadBytes = 1 << 20;

enum class FsyncPolicy {
  kEveryCommit,  // fsync the WAL before Commit returns: survives power loss. The default.
  kNone,         // leave flushing to the OS: survives kill -9, not power loss. Benchmarks only.
};

struct Options {
  std::string path;
  std::string name = "log";  // Prefix of event ids; the service's name.
  uint32_t partitions = 8;   // Fixed at creation; reopening with another number is an error.
                             // A read_only open may pass 0 to take name and partitions as stored.
  FsyncPolicy fsync = FsyncPolicy::kEveryCommit;
  Clock* clock = SystemClock::Default();
  size_t block_cache_bytes = 64 << 20;
  // The most that memtable flushes and compactions may write per second (0: no limit). A flush
  // writes about a quarter of the memtable bytes it empties (the events compress), so 32 MiB/s
  // keeps up with several hundred thousand events/s while keeping the commits' WAL fsyncs from
  // queueing behind large writes.
  uint64_t background_write_bytes_per_s = 32 << 20;
  // How fast files the log no longer needs (a WAL once its memtables are flushed, tables once
  // compacted) are deleted, 4 MiB at a time (0: each at once). Deleting a file of tens of MiB at
  // once made every commit's fsync wait 13-36 ms here (ext4 with online discard frees its blocks
  // in the journal commit that fsync waits for). Far above the rate the log writes them.
  uint64_t background_delete_bytes_per_s = 256 << 20;
  // Opens an existing log for reading only, alongside a live writer in another process (replay,
  // audit). Commit fails with FAILED_PRECONDITION.
  bool read_only = false;
};

// A consumed input position: the last applied seq of a source partition and, when the input
// came through Kafka, the offset of that message (the consumer restarts after it).
struct Position {
  uint64_t seq = 0;
  int64_t offset = -1;
  bool operator==(const Position&) const = default;
};

struct NewEvent {
  uint32_t partition = 0;
  // Text: aggregate_key, type, actor and the causation's strings must be UTF-8 (proto3 strings).
  std::string aggregate_key;
  std::string type;
  std::string payload;  // Bytes.
  std::string actor;
  int64_t occurred_at_us = 0;  // 0 means "now" by the log's clock.
  Causation causation;
};

// WriteSet collects everything one commit writes. Not thread-safe; owned by one writer.
//
// Within one WriteSet the last write of a key wins, in call order: of the PutState and
// DeleteState calls for one key only the last is written (a Put after a Delete puts, a Delete
// after a Put deletes), and likewise for SetPosition of one (consumer, source partition) and
// PutIdempotency of one key. That leaves the database exactly as writing every call in order
// would, without the memtable inserts of the overwritten ones: a service that materialises its
// state per input (the ledger: the account, a system account and the consumer position for each
// posting) rewrites the same keys many times in one batch.
class WriteSet {
 public:
  void Append(NewEvent event) { events_.push_back(std::move(event)); }
  void PutState(std::string key, std::string value) {
    state_.push_back({std::move(key), std::move(value), false});
  }
  void DeleteState(std::string key) { state_.push_back({std::move(key), {}, true}); }
  // Records that `consumer` has applied `source_partition` up to `pos`.
  void SetPosition(std::string_view consumer, uint32_t source_partition, Position pos);
  // Remembers an idempotency key with the result to return when the key is seen again.
  void PutIdempotency(std::string key, std::string value) {
    idempotency_.push_back({std::move(key), std::move(value)});
  }
  // Where `partition`'s chain stands before this WriteSet's events: the seq its first event of
  // that partition will get is head() + 1. Set by the one writer that appends to the partition
  // (runtime::Processor), which knows it before the commit even while its previous commit is
  // still under way, so that a handler can name its events' seqs (the ledger's txn ids) as it
  // writes them. Commit refuses the set (INTERNAL) if the partition's head is elsewhere by then:
  // the names would be wrong.
  void ExpectHead(uint32_t partition, uint64_t head) { expected_ = {partition, head}; }
  // The head set by ExpectHead; a WriteSet without one is a caller's bug (WL_CHECK).
  uint64_t head() const;
  // That partition's head once this WriteSet is committed: head() plus its events there.
  uint64_t head_after() const;
  // Asks Commit to return the appended envelopes in CommitResult::envelopes. Without it Commit
  // builds none: they cost allocations per event that most writers would only throw away.
  void ReturnEnvelopes() { return_envelopes_ = true; }
  bool empty() const { return events_.empty() && state_.empty() && positions_.empty() && idempotency_.empty(); }
  size_t event_count() const { return events_.size(); }
  size_t state_count() const { return state_.size(); }  // Puts and deletes, each call counted.
  void Clear();

 private:
  friend class EventLog;
  struct StateOp {
    std::string key, value;
    bool erase;
  };
  // One per (consumer, source partition): a later SetPosition of the pair overwrites its pos.
  struct PosOp {
    std::string consumer;
    uint32_t source_partition;
    Position pos;
  };
  struct IdemOp {
    std::string key, value;
  };
  // Every call in order (positions: every pair, in the order first set); Commit keeps the last
  // write of each key.
  std::vector<NewEvent> events_;
  std::vector<StateOp> state_;
  std::vector<PosOp> positions_;
  std::vector<IdemOp> idempotency_;
  bool return_envelopes_ = false;
  struct ExpectedHead {
    uint32_t partition;
    uint64_t head;
  };
  std::optional<ExpectedHead> expected_;
};

// What one commit appended to one partition.
struct Appended {
  uint32_t partition = 0;
  // The commit's events of this partition got seqs first_seq..last_seq, in the order they were
  // appended.
  uint64_t first_seq = 0;
  uint64_t last_seq = 0;
  std::string last_hash;  // Hash of the event at last_seq: the partition's chain tip.
};

// What Commit returns: by default where each partition's chain now ends, not the events.
struct CommitResult {
  size_t events = 0;                 // Events appended.
  std::vector<Appended> partitions;  // One per partition appended to, in ascending order.
  // Only if the WriteSet asked with ReturnEnvelopes(), else empty: the appended envelopes with
  // seq and hash filled in, in the order they were appended.
  std::vector<Envelope> envelopes;
};

struct VerifyReport {
  uint64_t events_checked = 0;
  std::vector<uint64_t> heads;  // Last seq per partition.
  bool ok = true;
  std::string problem;  // First problem found: "partition 2: gap after seq 41 (next is 43)".
};

struct CommitStats {
  uint64_t commits = 0;
  uint64_t events = 0;
};

// Observer hooks so a metrics layer can watch the log without the log depending on it.
struct CommitObserver {
  // latency_us: the whole Commit; write_us: the part of it in RocksDB's write (the WAL's write and
  // sync, and the memtable inserts), the rest being the envelopes, their hashes and the locks.
  std::function<void(size_t events, int64_t latency_us, int64_t write_us)> on_commit;
};

class EventLog {
 public:
  static Result<std::unique_ptr<EventLog>> Open(const Options& options);
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  const std::string& name() const { return options_.name; }
  uint32_t partitions() const { return options_.partitions; }

  // Commits `ws` atomically and returns what it appended (see CommitResult; the envelopes only
  // if `ws` asked for them). An invalid WriteSet (bad partition, oversized payload, event with
  // no causation, a text field that is not UTF-8) is rejected whole with INVALID_ARGUMENT and
  // nothing is written.
  Result<CommitResult> Commit(WriteSet ws);

  // Last committed seq of a partition; 0 when it is empty.
  uint64_t Head(uint32_t partition) const;
  // Up to `max` events of `partition` with seq >= from_seq, in order.
  Result<std::vector<Envelope>> Read(uint32_t partition, uint64_t from_seq, size_t max) const;
  // Calls fn for up to `max` events of `partition` with seq >= from_seq, in order, until fn
  // returns false. The Envelope passed to fn is reused for the next event: copy what you keep.
  // No allocation per event, so replays and tailers should prefer it to Read.
  Status Scan(uint32_t partition, uint64_t from_seq, size_t max,
              const std::function<bool(const Envelope&)>& fn) const;
  // Reads events of `partition` one at a time, starting at `seq`: fn gets each (reused, as in
  // Scan) and returns the seq of the next to read, 0 to stop, or an error, which ends the walk
  // and is returned. One iterator serves the whole walk, so a long chain of events (an account's
  // entries, each naming the one before it) costs a seek per event, not an iterator. A seq the
  // partition does not hold is DATA_LOSS: whoever named it named an event that is not there.
  Status Walk(uint32_t partition, uint64_t seq, const std::function<Result<uint64_t>(const Envelope&)>& fn) const;
  // Blocks until Head(partition) > after_seq or the timeout passes; true if there is news.
  bool WaitForAppend(uint32_t partition, uint64_t after_seq, std::chrono::milliseconds timeout) const;
  // Number of commits so far, and a wait for the next one: lets a tailer watch every partition.
  uint64_t CommitCount() const;
  bool WaitForCommit(uint64_t after_count, std::chrono::milliseconds timeout) const;

  Result<std::optional<std::string>> GetState(std::string_view key) const;
  // Calls fn(key, value) for each state key starting with prefix, in key order, until fn
  // returns false; from the first key >= `from` when it is given (a page after the last).
  Status ScanState(std::string_view prefix, const std::function<bool(std::string_view, std::string_view)>& fn,
                   std::string_view from = {}) const;
  Result<std::optional<std::string>> GetIdempotency(std::string_view key) const;
  Result<std::optional<Position>> GetPosition(std::string_view consumer, uint32_t source_partition) const;

  // Walks every partition: seq must run 1, 2, 3... and every hash must match its content and its
  // predecessor. Reads the log as stored; decides nothing from the in-memory heads.
  Result<VerifyReport> Verify() const;
  // Hex SHA-256 over the state column family in key order: equal digests mean equal state.
  // `visit`, if given, sees every key and value digested: what a caller reads there is of the
  // same snapshot as the digest.
  Result<std::string> StateDigest(const std::function<void(std::string_view, std::string_view)>& visit = nullptr) const;

  void SetObserver(CommitObserver observer);
  CommitStats stats() const;

  // Builds the canonical hash of an envelope whose prev_hash is set; exposed for tests/tools.
  static std::string ComputeHash(const Envelope& envelope);

 private:
  // INVALID_ARGUMENT naming the range if the log has no partition `partition`; `what` says what
  // was asked of it ("partition", "event partition").
  Status CheckPartition(uint32_t partition, const char* what = "partition") const;
  // The loop of Read and Scan: parses each event of the range into *slot() and checks its place
  // in the chain, then calls accept(event) until it returns false.
  template <typename Slot, typename Accept>
  Status ScanInto(uint32_t partition, uint64_t from_seq, size_t max, Slot slot, Accept accept) const;

  explicit EventLog(const Options& options);
  Status Init();

  Options options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;  // Every column family opened, to close.
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;        // default
  rocksdb::ColumnFamilyHandle* state_ = nullptr;
  // Each partition's events: its own column family, or in an older log the one they all share.
  std::vector<rocksdb::ColumnFamilyHandle*> events_;
  bool shared_events_ = false;

  // One per partition, held by a commit for every partition it appends to, from assigning seqs
  // until the new heads are published: each partition's chain stays linear, while commits to
  // different partitions run concurrently and RocksDB can fold their WAL syncs into one.
  std::vector<std::unique_ptr<std::mutex>> partition_mu_;
  mutable std::mutex mu_;  // Short sections only: guards heads_, last_hash_, stats_, observer_.
  mutable std::condition_variable appended_;
  std::vector<uint64_t> heads_;
  std::vector<std::string> last_hash_;
  CommitStats stats_;
  CommitObserver observer_;
};

// The database's layout, exposed for tools and tests that inspect it directly. Column families:
// "default" (meta: shape, consumer positions, idempotency keys), "state" (views), and
// EventsColumnFamily(p) for each partition p's events, keyed EventKey(p, seq). A log created
// before the per-partition layout keeps every partition's events in one column family,
// kSharedEventsColumnFamily, under the same keys.
inline constexpr char kEventsColumnFamilyPrefix[] = "events.";
inline constexpr char kSharedEventsColumnFamily[] = "events";
std::string EventsColumnFamily(uint32_t partition);
std::string EventKey(uint32_t partition, uint64_t seq);
std::string HexEncode(std::string_view bytes);
// Replaces *out with the id Commit gives the event of `seq` in `partition` of the log `name`:
// "<name>/<partition>/<seq>". A writer that knows its partition's next seq can name an event (say,
// as a transaction id) before committing it.
void SetEventId(std::string* out, std::string_view name, uint32_t partition, uint64_t seq);
// The limiter an EventLog gives its flushes and compactions for
// Options::background_write_bytes_per_s (null for 0), for tools that open the database beside it
// and must write as it does.
std::shared_ptr<rocksdb::RateLimiter> NewBackgroundWriteLimiter(uint64_t bytes_per_s);

}  // namespace wattledger::eventlog
