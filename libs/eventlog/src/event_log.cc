#include "wattledger/eventlog/event_log.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/slice.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <numeric>
#include <string_view>
#include <unordered_map>

#include "wattledger/base/check.h"
#include "wattledger/base/utf8.h"
#include "wattledger/eventlog/rocks_status.h"
#include "wattledger/eventlog/sha256.h"

namespace wattledger::eventlog {
namespace {

constexpr char kShapeKey[] = "shape";
constexpr char kPosPrefix[] = "pos/";
constexpr char kIdemPrefix[] = "idem/";
// Commit writes the meta column family's idempotency keys before its positions: key order.
static_assert(std::string_view(kIdemPrefix) < std::string_view(kPosPrefix));

void PutBigEndian32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t GetBigEndian(std::string_view in, size_t offset, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(in[offset + i]);
  return v;
}

std::string PositionKey(std::string_view consumer, uint32_t source_partition) {
  std::string key(kPosPrefix);
  key.append(consumer);
  key.push_back('\0');
  PutBigEndian32(&key, source_partition);
  return key;
}

constexpr size_t kPositionBytes = 16;

// Into a buffer: 16 bytes do not fit std::string's inline storage.
void EncodePosition(const Position& pos, char (&out)[kPositionBytes]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(pos.seq >> (8 * (7 - i)));
  const auto offset = static_cast<uint64_t>(pos.offset);
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<char>(offset >> (8 * (7 - i)));
}

// The indices of the last op of each distinct key in `ops`, in key order. A stable sort by key
// puts the calls for one key next to each other in call order, so the last of each run is the
// write that wins; the others never reach the WriteBatch. Stable, a merge sort: a batch's
// state keys often come in runs already in key order (the ledger's statement rows, while it wrote
// them, did: introsort met such runs with its heap-sort fallback, 3% of a hot account's charges).
template <typename Op>
std::vector<size_t> LastWriteOfEachKey(const std::vector<Op>& ops) {
  std::vector<size_t> order(ops.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ops[a].key < ops[b].key; });
  size_t kept = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i + 1 < order.size() && ops[order[i]].key == ops[order[i + 1]].key) continue;
    order[kept++] = order[i];
  }
  order.resize(kept);
  return order;
}

std::string SerializeCanonical(const Envelope& e) {
  std::string out;
  google::protobuf::io::StringOutputStream raw(&out);
  google::protobuf::io::CodedOutputStream coded(&raw);
  coded.SetSerializationDeterministic(true);
  e.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// Writers of the canonical form into a buffer with room: each returns where it stopped.
char* PutVarint(char* p, uint64_t v) {
  for (; v >= 0x80; v >>= 7) *p++ = static_cast<char>(v | 0x80);
  *p++ = static_cast<char>(v);
  return p;
}
// Fields as proto3 writes them: one at its default (0, empty) is left out.
constexpr uint32_t kWireVarint = 0;
constexpr uint32_t kWireLengthDelimited = 2;
char* PutVarintField(char* p, uint32_t field, uint64_t v) {
  if (v == 0) return p;
  p = PutVarint(p, field << 3 | kWireVarint);
  return PutVarint(p, v);
}
char* PutBytesField(char* p, uint32_t field, std::string_view v) {
  if (v.empty()) return p;
  p = PutVarint(p, field << 3 | kWireLengthDelimited);
  p = PutVarint(p, v.size());
  std::memcpy(p, v.data(), v.size());
  return p + v.size();
}

// What Commit adds to a NewEvent to make its Envelope.
struct Assigned {
  std::string_view event_id;
  uint64_t seq;
  int64_t occurred_at_us;
  int64_t recorded_at_us;
  std::string_view prev_hash;
};

// Writes at the start of *buf, which it grows but never shrinks, the canonical bytes (hash
// field excluded) of the Envelope that `e` and `a` make, and returns their length; `spare`
// bytes after them are left free for the caller. Written straight from `e`, Commit builds no
// Envelope, sets no field and walks none for its size, and a reused buffer costs no allocation.
// The bytes are what deterministic serialisation of that Envelope gives: fields in number
// order, defaults left out. A field added to envelope.proto must be added here
// (EventLogTest.EnvelopeHasTheFieldsCommitWrites fails until it is); Verify checks stored
// records against protobuf's own serialisation.
size_t SerializeCanonicalTo(const NewEvent& e, const Assigned& a, size_t spare, std::string* buf) {
  const size_t causation_bytes = e.causation.ByteSizeLong();
  // At most a 1-byte tag and a 10-byte varint per field, plus the bytes of each.
  const size_t bound = 12 * 11 + a.event_id.size() + e.aggregate_key.size() + e.type.size() + e.actor.size() +
                       causation_bytes + e.payload.size() + a.prev_hash.size() + spare;
  if (buf->size() < bound) buf->resize(bound);
  char* const begin = buf->data();
  char* p = begin;
  p = PutBytesField(p, Envelope::kEventIdFieldNumber, a.event_id);
  p = PutVarintField(p, Envelope::kPartitionFieldNumber, e.partition);
  p = PutVarintField(p, Envelope::kSeqFieldNumber, a.seq);
  p = PutBytesField(p, Envelope::kAggregateKeyFieldNumber, e.aggregate_key);
  p = PutBytesField(p, Envelope::kTypeFieldNumber, e.type);
  // int64 as protobuf writes it: the two's complement as a varint, 10 bytes when negative.
  p = PutVarintField(p, Envelope::kOccurredAtUsFieldNumber, static_cast<uint64_t>(a.occurred_at_us));
  p = PutVarintField(p, Envelope::kRecordedAtUsFieldNumber, static_cast<uint64_t>(a.recorded_at_us));
  p = PutBytesField(p, Envelope::kActorFieldNumber, e.actor);
  // A message field is written when present, even empty; an event always has a causation.
  // Protobuf writes this one, unknown fields and all.
  p = PutVarint(p, Envelope::kCausationFieldNumber << 3 | kWireLengthDelimited);
  p = PutVarint(p, causation_bytes);
  p = reinterpret_cast<char*>(e.causation.SerializeWithCachedSizesToArray(reinterpret_cast<uint8_t*>(p)));
  p = PutBytesField(p, Envelope::kPayloadFieldNumber, e.payload);
  p = PutBytesField(p, Envelope::kPrevHashFieldNumber, a.prev_hash);
  return static_cast<size_t>(p - begin);
}

// hash (field 12, bytes) is the envelope's highest field, so canonical(envelope with hash) is
// canonical(envelope without hash) followed by this field: tag, length, 32 bytes.
static_assert(Envelope::kHashFieldNumber == 12);
constexpr char kHashFieldTag = (12 << 3) | 2;
constexpr size_t kHashFieldBytes = 2 + kHashBytes;

void AppendDecimal(std::string* out, uint64_t v) {
  char buf[20];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

bool HasCausation(const Causation& c) {
  return !c.request_id().empty() || !c.source_topic().empty();
}

// The name of the first text field of `e` that is not UTF-8, or nullptr. Envelope's text fields
// are proto3 strings, which protobuf serialises whatever they hold but refuses to parse unless
// they are UTF-8: a stored event with other bytes there could never be read back.
const char* NonUtf8Field(const NewEvent& e) {
  if (!IsUtf8(e.aggregate_key)) return "aggregate_key";
  if (!IsUtf8(e.type)) return "type";
  if (!IsUtf8(e.actor)) return "actor";
  if (!IsUtf8(e.causation.source_topic())) return "causation.source_topic";
  if (!IsUtf8(e.causation.request_id())) return "causation.request_id";
  return nullptr;
}

}  // namespace

std::string EventsColumnFamily(uint32_t partition) {
  return std::string(kEventsColumnFamilyPrefix) + std::to_string(partition);
}

void SetEventId(std::string* out, std::string_view name, uint32_t partition, uint64_t seq) {
  out->clear();
  out->append(name);
  out->push_back('/');
  AppendDecimal(out, partition);
  out->push_back('/');
  AppendDecimal(out, seq);
}

std::string EventKey(uint32_t partition, uint64_t seq) {
  std::string key;
  key.reserve(12);
  PutBigEndian32(&key, partition);
  PutBigEndian64(&key, seq);
  return key;
}

std::shared_ptr<rocksdb::RateLimiter> NewBackgroundWriteLimiter(uint64_t bytes_per_s) {
  if (bytes_per_s == 0) return nullptr;
  // The budget is handed out every 10 ms rather than RocksDB's default 100 ms: a flush writes
  // what a period allows as fast as it can, and 3.2 MiB at once (100 ms at 32 MiB/s) made the
  // commits' fsyncs of the next milliseconds wait behind it (paced top-ups at 55,000/s: p99 over
  // 10 ms in the windows of the flushes; loadtest/README.md, eighth session).
  constexpr int64_t kRefillPeriodUs = 10'000;
  return std::shared_ptr<rocksdb::RateLimiter>(
      rocksdb::NewGenericRateLimiter(static_cast<int64_t>(bytes_per_s), kRefillPeriodUs));
}

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 0xf]);
  }
  return out;
}

void WriteSet::SetPosition(std::string_view consumer, uint32_t source_partition, Position pos) {
  // A consumer sets its position after every message it applies, and a batch holds many from
  // the few partitions it reads: overwritten here, not kept to be sorted out by Commit (which
  // sorted hundreds of positions per commit, 2.5% of a charge's instructions).
  for (auto it = positions_.rbegin(); it != positions_.rend(); ++it) {
    if (it->source_partition == source_partition && it->consumer == consumer) {
      it->pos = pos;
      return;
    }
  }
  positions_.push_back({std::string(consumer), source_partition, pos});
}

uint64_t WriteSet::head() const {
  WL_CHECK_MSG(expected_.has_value(), "WriteSet::head() of a WriteSet whose writer set none (ExpectHead)");
  return expected_->head;
}

uint64_t WriteSet::head_after() const {
  uint64_t head = this->head();
  for (const NewEvent& e : events_) head += e.partition == expected_->partition ? 1 : 0;
  return head;
}

void WriteSet::Clear() {
  events_.clear();
  state_.clear();
  positions_.clear();
  idempotency_.clear();
  return_envelopes_ = false;
  expected_.reset();
}

std::string EventLog::ComputeHash(const Envelope& envelope) {
  Envelope copy = envelope;
  copy.clear_hash();
  Sha256 sha;
  sha.Update(copy.prev_hash());
  sha.Update(SerializeCanonical(copy));
  return sha.Final();
}

EventLog::EventLog(const Options& options) : options_(options) {}

EventLog::~EventLog() {
  if (db_) {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    db_->Close().PermitUncheckedError();
  }
}

Result<std::unique_ptr<EventLog>> EventLog::Open(const Options& options) {
  if (options.path.empty()) return InvalidArgument("event log path is empty; pass --data-dir");
  if ((options.partitions == 0 && !options.read_only) || options.partitions > 4096) {
    return InvalidArgument("event log partitions must be 1..4096, got " +
                           std::to_string(options.partitions));
  }
  if (options.clock == nullptr) return InvalidArgument("event log clock is null");
  // The name starts every event id, a proto3 string.
  if (!IsUtf8(options.name)) return InvalidArgument("event log name is not valid UTF-8");
  std::unique_ptr<EventLog> log(new EventLog(options));
  WL_RETURN_IF_ERROR(log->Init());
  return log;
}

Status EventLog::Init() {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.IncreaseParallelism(2);
  // One thread inserts each group commit's batches into the memtable, in turn. Concurrent
  // inserts would search the skiplist from the top for every key, and cannot use the per-partition
  // insert hints below; with the few cores a ledger has, the search was the larger cost.
  db_options.allow_concurrent_memtable_write = false;
  // A write group's WAL write and sync, and its memtable inserts, in two queues: the next group
  // writes and syncs its WAL while this one inserts. Without it a group's commits waited for the
  // group before them to finish its inserts as well. A commit still returns once its WAL is synced
  // and its inserts are visible, in order. Closed-loop uniform top-ups: ahead in eight interleaved
  // pairs out of eight, by 0-20% (loadtest/README.md, eighteenth session).
  db_options.enable_pipelined_write = true;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options_.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // The most one memtable may hold (set on the column families: each is opened with its own
  // options, not the database's); the budget below flushes them sooner.
  cf.write_buffer_size = 64 << 20;
  // The log is read in long sequential runs: large blocks amortise the per-block cost (cache
  // lookup, checksum, decompression) over ~170 events instead of ~10. State keeps 4 KiB blocks
  // for its point lookups. Events are only ever read by iterators, which no Bloom filter serves:
  // building one cost every flush a hash per event.
  rocksdb::BlockBasedTableOptions events_table = table;
  events_table.block_size = 64 << 10;
  events_table.filter_policy.reset();
  rocksdb::ColumnFamilyOptions events_cf = cf;
  events_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(events_table));
  // An event key is (partition, seq), and each partition appends in seq order: the memtable keeps
  // an insert hint per partition (the key's first 4 bytes), so an append lands next to the last
  // one instead of being searched for from the top (or, in an older log's shared column family,
  // among all partitions' events). Nothing may DeleteRange in these column families: RocksDB 7.8
  // keeps one hint map for a memtable's points and range tombstones, so a range tombstone's hint
  // would point into the wrong skiplist.
  events_cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(4));
  // Each partition's events have a column family of their own (EventsColumnFamily): its keys only
  // ever grow, so no two of its files overlap and compaction moves files down the levels without
  // reading or rewriting them. (In one shared column family every flush's file spanned all
  // partitions, and each compaction rewrote them all.) One budget for all memtables: when they
  // hold more, the oldest is flushed, so the partitions' flushes come one at a time, each a
  // fraction of the budget, instead of all together. It triggers flushes and does not stop
  // writes; it grows with the partitions, as each memtable reserves a block before it holds
  // anything.
  db_options.db_write_buffer_size = (64 << 20) + static_cast<size_t>(options_.partitions) * (2 << 20);
  // Flushes and compactions run below the request threads' priority (nice 19): they may take
  // longer, not the cores a commit is waiting for. A flush that falls behind has spare memtables
  // before writes are slowed (from five waiting) or stopped (six). The thread pools are the
  // process's (every log in it shares them); where the platform cannot lower their priority they
  // run at the normal one.
  for (auto pool : {rocksdb::Env::Priority::HIGH, rocksdb::Env::Priority::LOW}) {
    db_options.env->LowerThreadPoolCPUPriority(pool, rocksdb::CpuPriority::kLow).PermitUncheckedError();
  }
  cf.max_write_buffer_number = 6;
  events_cf.max_write_buffer_number = 6;
  // What flushes and compactions write goes to the disk a little at a time, not in bursts that
  // every commit's WAL fsync would queue behind: at most background_write_bytes_per_s (see
  // NewBackgroundWriteLimiter), and synced every 512 KiB as it is written instead of all at the end.
  db_options.rate_limiter = NewBackgroundWriteLimiter(options_.background_write_bytes_per_s);
  db_options.bytes_per_sync = 512 << 10;
  if (options_.background_delete_bytes_per_s > 0) {
    // Deleted a chunk at a time by a background thread of the manager's; WALs too. Trash left
    // by a stopped process is deleted when the log is next opened. A reader's open empties the
    // trash of the writer beside it too (RocksDB does so at every open), so it gets the same
    // manager: a chunk at a time, never a whole file at once. The rate keeps the trash small; if
    // it were set below the rate the log makes old files, files would be deleted at once again
    // once the trash held four times the tables (the ratio), rather than fill the disk.
    rocksdb::Status made;
    db_options.sst_file_manager.reset(rocksdb::NewSstFileManager(
        db_options.env, nullptr, "", static_cast<int64_t>(options_.background_delete_bytes_per_s),
        /*delete_existing_trash=*/true, &made, /*max_trash_db_ratio=*/4.0, /*bytes_max_delete_chunk=*/4 << 20));
    if (!made.ok()) return FromRocks(made, "set up the deletion of the event log's old files at " + options_.path);
  }

  // Which column families exist decides the layout; a new log gets one per partition.
  std::vector<std::string> names;
  const rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, options_.path, &names);
  if (!listed.ok() && !listed.IsPathNotFound()) {
    return FromRocks(listed, "list the column families of the event log at " + options_.path);
  }
  const bool exists = listed.ok();
  if (!exists && options_.read_only) return FailedPrecondition("no event log at " + options_.path + " to open read-only");
  // A new log opens with the default column family alone; the rest are created below in one call.
  if (!exists) names = {rocksdb::kDefaultColumnFamilyName};
  shared_events_ = std::find(names.begin(), names.end(), kSharedEventsColumnFamily) != names.end();
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& name : names) {
    const bool events = name == kSharedEventsColumnFamily || name.starts_with(kEventsColumnFamilyPrefix);
    if (shared_events_ && name.starts_with(kEventsColumnFamilyPrefix)) {
      return DataLoss("event log at " + options_.path + " has both the shared events column family and '" + name +
                      "'; wattledger never writes both: restore the data dir from a backup, or check --data-dir");
    }
    cfs.emplace_back(name, events ? events_cf : cf);
  }
  rocksdb::DB* raw = nullptr;
  if (options_.read_only) {
    db_options.create_if_missing = false;
    WL_RETURN_IF_ERROR(FromRocks(rocksdb::DB::OpenForReadOnly(db_options, options_.path, cfs, &handles_, &raw),
                                 "open event log read-only at " + options_.path));
  } else {
    WL_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(db_options, options_.path, cfs, &handles_, &raw),
                                 "open event log at " + options_.path));
  }
  db_.reset(raw);
  meta_ = handles_[std::find(names.begin(), names.end(), rocksdb::kDefaultColumnFamilyName) - names.begin()];

  // The shape (name, partitions) is fixed at creation.
  std::string stored;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, kShapeKey, &stored);
  if (s.ok() && options_.read_only && options_.partitions == 0) {
    // A reader may take the shape as stored.
    auto slash = stored.rfind('/');
    options_.name = stored.substr(0, slash);
    options_.partitions = static_cast<uint32_t>(std::strtoul(stored.c_str() + slash + 1, nullptr, 10));
    if (options_.partitions == 0 || options_.partitions > 4096) return DataLoss("stored log shape '" + stored + "' is invalid");
  }
  std::string shape = options_.name + "/" + std::to_string(options_.partitions);
  if (s.IsNotFound() && options_.read_only && names.size() > 1) {
    return FailedPrecondition("the event log at " + options_.path +
                              " stopped before its creation was finished; open it once read-write to finish it");
  } else if (s.IsNotFound() && options_.read_only) {
    return FailedPrecondition("no event log at " + options_.path + " to open read-only");
  } else if (!s.ok() && !s.IsNotFound()) {
    return FromRocks(s, "read log shape");
  } else if (s.ok() && stored != shape) {
    return FailedPrecondition("event log at " + options_.path + " was created as '" + stored +
                              "' (name/partitions) but opened as '" + shape +
                              "'; use the original settings or a new --data-dir");
  }

  // The state's column family and each partition's events'. Logs written before the per-partition
  // layout keep their one shared column family; its keys are the same (partition, seq), so
  // everything else reads and writes them the same way.
  // A batch's state keys reach the memtable in key order (see Commit), and a service keeps each
  // kind of record under a prefix of its own (the ledger's account views under "acct/"): an
  // insert hint per 5-byte prefix starts each key's search from the last one of its kind, not
  // from the top of a skiplist of millions. As for the events, nothing may DeleteRange here.
  rocksdb::ColumnFamilyOptions state_cf = cf;
  state_cf.memtable_insert_with_hint_prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(5));
  std::vector<rocksdb::ColumnFamilyDescriptor> wanted = {{"state", state_cf}};
  if (shared_events_) {
    wanted.emplace_back(kSharedEventsColumnFamily, events_cf);
  } else {
    for (uint32_t p = 0; p < options_.partitions; ++p) wanted.emplace_back(EventsColumnFamily(p), events_cf);
  }
  // Those missing are created together: a new log lacks all of them, and one whose creation
  // stopped half-way lacks some (a reader may not create them). RocksDB rewrites its options file
  // after each single creation, reading every column family's section back: creating a
  // 300-partition log one by one took 20 s of CPU.
  std::unordered_map<std::string_view, rocksdb::ColumnFamilyHandle*> by_name;
  for (size_t i = 0; i < cfs.size(); ++i) by_name.emplace(cfs[i].name, handles_[i]);
  std::vector<rocksdb::ColumnFamilyDescriptor> missing;
  for (const auto& w : wanted) {
    if (!by_name.contains(w.name)) missing.push_back(w);
  }
  if (!missing.empty() && options_.read_only) {
    return DataLoss("event log at " + options_.path + " has no column family '" + missing.front().name +
                    "'; open it once read-write to finish its creation, or restore it from a backup");
  }
  if (!missing.empty()) {
    std::vector<rocksdb::ColumnFamilyHandle*> created;
    const rocksdb::Status made = db_->CreateColumnFamilies(missing, &created);
    handles_.insert(handles_.end(), created.begin(), created.end());  // Closed with the rest, even on failure.
    WL_RETURN_IF_ERROR(FromRocks(made, "create the event log's column families at " + options_.path));
    for (size_t i = 0; i < missing.size(); ++i) by_name.emplace(missing[i].name, created[i]);
  }
  // The shape last, so that a log with its shape has all its column families (older builds wrote
  // the shape first: the opens above finish such a log). A stop before this line leaves a log
  // without a shape, which the next read-write open finishes too.
  if (s.IsNotFound()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    WL_RETURN_IF_ERROR(FromRocks(db_->Put(wo, meta_, kShapeKey, shape), "write log shape"));
  }
  state_ = by_name.at("state");
  for (size_t i = 1; i < wanted.size(); ++i) events_.push_back(by_name.at(wanted[i].name));
  // The shared column family serves every partition.
  events_.resize(options_.partitions, events_.front());

  // Recover heads and chain tips by seeking to the last key of each partition.
  heads_.assign(options_.partitions, 0);
  last_hash_.assign(options_.partitions, std::string(kHashBytes, '\0'));
  for (uint32_t p = 0; p < options_.partitions; ++p) partition_mu_.push_back(std::make_unique<std::mutex>());
  for (uint32_t p = 0; p < options_.partitions; ++p) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_[p]));
    it->SeekForPrev(EventKey(p, UINT64_MAX));
    // An iterator error is not an empty partition: a head of 0 would overwrite the log.
    WL_RETURN_IF_ERROR(FromRocks(it->status(), "scan event log heads"));
    if (!it->Valid()) continue;
    auto key = it->key();
    if (key.size() != 12 || GetBigEndian(key.ToStringView(), 0, 4) != p) continue;
    Envelope last;
    if (!last.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return DataLoss("event log partition " + std::to_string(p) +
                      ": last record does not parse; run `wlctl audit verify`");
    }
    heads_[p] = GetBigEndian(key.ToStringView(), 4, 8);
    last_hash_[p] = last.hash();
  }
  return Status::Ok();
}

Result<CommitResult> EventLog::Commit(WriteSet ws) {
  if (options_.read_only) return FailedPrecondition("event log " + options_.path + " is open read-only");
  if (ws.events_.size() > kMaxEventsPerCommit) {
    return InvalidArgument("commit carries " + std::to_string(ws.events_.size()) +
                           " events; the limit is " + std::to_string(kMaxEventsPerCommit));
  }
  for (const auto& e : ws.events_) {
    WL_RETURN_IF_ERROR(CheckPartition(e.partition, "event partition"));
    if (e.type.empty()) return InvalidArgument("event type is empty");
    if (e.payload.size() > kMaxPayloadBytes) {
      return InvalidArgument("event payload of " + std::to_string(e.payload.size()) +
                             " bytes exceeds " + std::to_string(kMaxPayloadBytes));
    }
    // Before the type goes into a message.
    if (const char* field = NonUtf8Field(e)) {
      return InvalidArgument(std::string("event field ") + field +
                             " is not valid UTF-8; text fields must be, bytes belong in the payload");
    }
    if (!HasCausation(e.causation)) {
      return InvalidArgument("event " + e.type + " has no causation (source position or request id)");
    }
  }

  if (ws.expected_ && ws.expected_->partition >= options_.partitions) {
    return Internal("commit expects the head of partition " + std::to_string(ws.expected_->partition) +
                    ", which does not exist");
  }

  auto start = std::chrono::steady_clock::now();
  const size_t n = ws.events_.size();
  // The events go into the batch in key order (partition, seq): the memtable skiplist then
  // inserts each key right after the previous one instead of searching from the top for every
  // event. Each partition's events keep their append order, which is the order their seqs and
  // chain are made in, so one pass in this order does both.
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    return ws.events_[a].partition < ws.events_[b].partition;
  });
  // Lock the partitions this commit appends to, in ascending order (no deadlock between commits).
  std::vector<uint32_t> touched;
  for (uint32_t i : order) {
    if (touched.empty() || touched.back() != ws.events_[i].partition) touched.push_back(ws.events_[i].partition);
  }
  std::vector<std::unique_lock<std::mutex>> partition_locks;
  partition_locks.reserve(touched.size());
  for (uint32_t p : touched) partition_locks.emplace_back(*partition_mu_[p]);
  const int64_t now_us = options_.clock->NowMicros();
  // Work on copies so that a failed write leaves heads and chain tips untouched. Only the
  // touched partitions are read or written, and nobody else appends to them while we hold them.
  std::vector<uint64_t> heads;
  std::vector<std::string> tips(options_.partitions);
  CommitObserver observer;
  {
    std::lock_guard lock(mu_);
    heads = heads_;
    for (uint32_t p : touched) tips[p] = last_hash_[p];
    observer = observer_;
  }
  if (ws.expected_ && heads[ws.expected_->partition] != ws.expected_->head) {
    // Not the input's fault: the writer lost track of its own commits. Nothing is written.
    return Internal("commit expected partition " + std::to_string(ws.expected_->partition) + " at seq " +
                    std::to_string(ws.expected_->head) + " but it is at " +
                    std::to_string(heads[ws.expected_->partition]) + "; the writer's commits went out of order");
  }
  CommitResult result;
  result.events = n;
  result.partitions.reserve(touched.size());
  for (uint32_t p : touched) result.partitions.push_back({p, heads[p] + 1, 0, {}});
  if (ws.return_envelopes_) result.envelopes.resize(n);

  size_t reserve = 0;
  for (const auto& e : ws.events_) reserve += e.payload.size() + 256;
  for (const auto& op : ws.state_) reserve += op.key.size() + op.value.size() + 16;
  rocksdb::WriteBatch batch(reserve);
  // Buffers for one event at a time, reused: they keep their capacity, so an event costs no
  // allocation unless its envelope is returned.
  std::string id, record, tip;
  Sha256 sha;
  for (uint32_t i : order) {
    NewEvent& e = ws.events_[i];
    const uint64_t seq = ++heads[e.partition];
    SetEventId(&id, options_.name, e.partition, seq);
    const Assigned a{id, seq, e.occurred_at_us != 0 ? e.occurred_at_us : now_us, now_us, tips[e.partition]};
    // One serialisation: hash = SHA-256(prev_hash || canonical bytes without hash), exactly what
    // ComputeHash computes, and the stored value is those bytes with the hash field appended.
    const size_t n = SerializeCanonicalTo(e, a, kHashFieldBytes, &record);
    sha.Reset();
    sha.Update(a.prev_hash);
    sha.Update(std::string_view(record.data(), n));
    sha.Final(&tip);
    record[n] = kHashFieldTag;
    record[n + 1] = static_cast<char>(kHashBytes);
    std::memcpy(&record[n + 2], tip.data(), kHashBytes);
    batch.Put(events_[e.partition], EventKey(e.partition, seq), rocksdb::Slice(record.data(), n + kHashFieldBytes));
    if (ws.return_envelopes_) {
      // Moved, not copied: the NewEvent is ours and is not read again.
      Envelope& env = result.envelopes[i];
      env.set_event_id(id);
      env.set_partition(e.partition);
      env.set_seq(seq);
      env.set_aggregate_key(std::move(e.aggregate_key));
      env.set_type(std::move(e.type));
      env.set_occurred_at_us(a.occurred_at_us);
      env.set_recorded_at_us(a.recorded_at_us);
      env.set_actor(std::move(e.actor));
      *env.mutable_causation() = std::move(e.causation);
      env.set_payload(std::move(e.payload));
      env.set_prev_hash(a.prev_hash.data(), a.prev_hash.size());
      env.set_hash(tip);
    }
    tips[e.partition].swap(tip);
  }
  // State and meta: the last write of each key only, in key order (see WriteSet).
  for (size_t i : LastWriteOfEachKey(ws.state_)) {
    const auto& op = ws.state_[i];
    if (op.erase) {
      batch.Delete(state_, op.key);
    } else {
      batch.Put(state_, op.key, op.value);
    }
  }
  for (size_t i : LastWriteOfEachKey(ws.idempotency_)) {
    const auto& op = ws.idempotency_[i];
    const rocksdb::Slice key_parts[] = {kIdemPrefix, op.key};
    const rocksdb::Slice value(op.value);
    batch.Put(meta_, rocksdb::SliceParts(key_parts, 2), rocksdb::SliceParts(&value, 1));
  }
  // One op per key already (see SetPosition); in key order, as the rest.
  std::vector<std::pair<std::string, Position>> positions;
  positions.reserve(ws.positions_.size());
  for (const auto& op : ws.positions_) {
    positions.emplace_back(PositionKey(op.consumer, op.source_partition), op.pos);
  }
  std::sort(positions.begin(), positions.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [key, pos] : positions) {
    char value[kPositionBytes];
    EncodePosition(pos, value);
    batch.Put(meta_, key, rocksdb::Slice(value, sizeof value));
  }

  rocksdb::WriteOptions wo;
  wo.sync = options_.fsync == FsyncPolicy::kEveryCommit;
  const auto write_start = std::chrono::steady_clock::now();
  WL_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), "commit to event log"));
  const auto write_end = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mu_);
    for (uint32_t p : touched) {
      // We held p since reading its head: it moved only by what we appended.
      WL_CHECK(heads[p] > heads_[p]);
      heads_[p] = heads[p];
      last_hash_[p] = tips[p];
    }
    stats_.commits++;
    stats_.events += n;
  }
  partition_locks.clear();
  appended_.notify_all();
  if (observer.on_commit) {
    using std::chrono::microseconds;
    auto us = std::chrono::duration_cast<microseconds>(std::chrono::steady_clock::now() - start);
    auto write_us = std::chrono::duration_cast<microseconds>(write_end - write_start);
    observer.on_commit(n, us.count(), write_us.count());
  }
  for (auto& a : result.partitions) {
    a.last_seq = heads[a.partition];
    a.last_hash = std::move(tips[a.partition]);
  }
  return result;
}

Status EventLog::CheckPartition(uint32_t partition, const char* what) const {
  if (partition < options_.partitions) return Status::Ok();
  return InvalidArgument(std::string(what) + " " + std::to_string(partition) + " out of range 0.." +
                         std::to_string(options_.partitions - 1));
}

uint64_t EventLog::Head(uint32_t partition) const {
  std::lock_guard lock(mu_);
  return partition < heads_.size() ? heads_[partition] : 0;
}

Result<std::vector<Envelope>> EventLog::Read(uint32_t partition, uint64_t from_seq, size_t max) const {
  std::vector<Envelope> out;
  if (max == 0) return out;
  out.reserve(std::min<size_t>(max, 4096));
  // Each record is parsed straight into its place in `out`: no parse into a scratch envelope
  // and copy, which cost a consumer about as much as the parse itself.
  WL_RETURN_IF_ERROR(ScanInto(
      partition, from_seq, max, [&] { return &out.emplace_back(); }, [](const Envelope&) { return true; }));
  return out;
}

Status EventLog::Scan(uint32_t partition, uint64_t from_seq, size_t max,
                      const std::function<bool(const Envelope&)>& fn) const {
  Envelope env;  // Reused: ParseFromArray keeps its strings' capacity, so no allocation per event.
  return ScanInto(partition, from_seq, max, [&] { return &env; }, fn);
}

template <typename Slot, typename Accept>
Status EventLog::ScanInto(uint32_t partition, uint64_t from_seq, size_t max, Slot slot, Accept accept) const {
  WL_RETURN_IF_ERROR(CheckPartition(partition));
  rocksdb::ReadOptions ro;
  std::string upper = EventKey(partition + 1, 0);
  rocksdb::Slice upper_slice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, events_[partition]));
  uint64_t expect = from_seq == 0 ? 1 : from_seq;
  size_t n = 0;
  for (it->Seek(EventKey(partition, expect)); it->Valid() && n < max; it->Next(), ++n) {
    Envelope* env = slot();
    if (!env->ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return DataLoss("event " + std::to_string(partition) + "/" + std::to_string(expect) +
                      " does not parse; run `wlctl audit verify`");
    }
    if (env->seq() != expect || env->partition() != partition) {
      return DataLoss("event log partition " + std::to_string(partition) + " expected seq " +
                      std::to_string(expect) + " but found " + std::to_string(env->seq()));
    }
    ++expect;
    if (!accept(*env)) break;
  }
  return FromRocks(it->status(), "scan event log");
}

Status EventLog::Walk(uint32_t partition, uint64_t seq,
                      const std::function<Result<uint64_t>(const Envelope&)>& fn) const {
  WL_RETURN_IF_ERROR(CheckPartition(partition));
  // No upper bound: each record found is checked to be the one asked for.
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_[partition]));
  Envelope env;
  while (seq != 0) {
    const std::string key = EventKey(partition, seq);
    it->Seek(key);
    if (!it->Valid() || it->key() != rocksdb::Slice(key)) {
      WL_RETURN_IF_ERROR(FromRocks(it->status(), "walk event log"));
      return DataLoss("event " + std::to_string(partition) + "/" + std::to_string(seq) + " is not in the log");
    }
    if (!env.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) || env.seq() != seq ||
        env.partition() != partition) {
      return DataLoss("event " + std::to_string(partition) + "/" + std::to_string(seq) +
                      " does not parse as itself; run `wlctl audit verify`");
    }
    WL_ASSIGN_OR_RETURN(seq, fn(env));
  }
  return Status::Ok();
}

bool EventLog::WaitForAppend(uint32_t partition, uint64_t after_seq,
                             std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  if (partition >= heads_.size()) return false;
  return appended_.wait_for(lock, timeout, [&] { return heads_[partition] > after_seq; });
}

uint64_t EventLog::CommitCount() const {
  std::lock_guard lock(mu_);
  return stats_.commits;
}

bool EventLog::WaitForCommit(uint64_t after_count, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mu_);
  return appended_.wait_for(lock, timeout, [&] { return stats_.commits > after_count; });
}

Result<std::optional<std::string>> EventLog::GetState(std::string_view key) const {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), state_, rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  WL_RETURN_IF_ERROR(FromRocks(s, "read state"));
  return std::optional<std::string>(std::move(value));
}

Status EventLog::ScanState(std::string_view prefix, const std::function<bool(std::string_view, std::string_view)>& fn,
                           std::string_view from) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), state_));
  const std::string_view start = std::max(prefix, from);
  for (it->Seek(rocksdb::Slice(start.data(), start.size())); it->Valid(); it->Next()) {
    auto key = it->key().ToStringView();
    if (!key.starts_with(prefix)) break;
    if (!fn(key, it->value().ToStringView())) break;
  }
  return FromRocks(it->status(), "scan state");
}

Result<std::optional<std::string>> EventLog::GetIdempotency(std::string_view key) const {
  std::string value;
  std::string full = std::string(kIdemPrefix) + std::string(key);
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, full, &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  WL_RETURN_IF_ERROR(FromRocks(s, "read idempotency key"));
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<Position>> EventLog::GetPosition(std::string_view consumer,
                                                      uint32_t source_partition) const {
  std::string value;
  auto s = db_->Get(rocksdb::ReadOptions(), meta_, PositionKey(consumer, source_partition), &value);
  if (s.IsNotFound()) return std::optional<Position>();
  WL_RETURN_IF_ERROR(FromRocks(s, "read consumer position"));
  if (value.size() != 16) return DataLoss("consumer position record has " + std::to_string(value.size()) + " bytes, want 16");
  Position pos;
  pos.seq = GetBigEndian(value, 0, 8);
  pos.offset = static_cast<int64_t>(GetBigEndian(value, 8, 8));
  return std::optional<Position>(pos);
}

Result<VerifyReport> EventLog::Verify() const {
  VerifyReport report;
  report.heads.assign(options_.partitions, 0);
  std::vector<std::string> tips(options_.partitions, std::string(kHashBytes, '\0'));
  auto fail = [&](std::string problem) {
    report.ok = false;
    report.problem = std::move(problem);
    return report;
  };
  // Every key of every events column family, the shared one of an older log once.
  for (uint32_t cf = 0; cf < options_.partitions; ++cf) {
    if (shared_events_ && cf > 0) break;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), events_[cf]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto key = it->key().ToStringView();
      if (key.size() != 12) return fail("malformed event key of " + std::to_string(key.size()) + " bytes");
      const uint32_t p = static_cast<uint32_t>(GetBigEndian(key, 0, 4));
      const uint64_t seq = GetBigEndian(key, 4, 8);
      const std::string where = "partition " + std::to_string(p) + " seq " + std::to_string(seq);
      if (p >= options_.partitions) return fail(where + ": partition out of range");
      if (!shared_events_ && p != cf) return fail(where + ": stored with partition " + std::to_string(cf) + "'s events");
      if (seq != report.heads[p] + 1) {
        return fail("partition " + std::to_string(p) + ": gap after seq " +
                    std::to_string(report.heads[p]) + " (next is " + std::to_string(seq) + ")");
      }
      Envelope env;
      if (!env.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return fail(where + ": record does not parse");
      }
      if (env.partition() != p || env.seq() != seq) return fail(where + ": key and envelope disagree");
      if (env.prev_hash() != tips[p]) return fail(where + ": prev_hash does not match predecessor");
      if (ComputeHash(env) != env.hash()) return fail(where + ": hash does not match content");
      tips[p] = env.hash();
      report.heads[p] = seq;
      report.events_checked++;
    }
    WL_RETURN_IF_ERROR(FromRocks(it->status(), "verify event log"));
  }
  return report;
}

Result<std::string> EventLog::StateDigest(const std::function<void(std::string_view, std::string_view)>& visit) const {
  Sha256 sha;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), state_));
  std::string len;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (visit) visit(it->key().ToStringView(), it->value().ToStringView());
    len.clear();
    PutBigEndian64(&len, it->key().size());
    PutBigEndian64(&len, it->value().size());
    sha.Update(len);
    sha.Update(it->key().ToStringView());
    sha.Update(it->value().ToStringView());
  }
  WL_RETURN_IF_ERROR(FromRocks(it->status(), "digest state"));
  return HexEncode(sha.Final());
}

void EventLog::SetObserver(CommitObserver observer) {
  std::lock_guard lock(mu_);
  observer_ = std::move(observer);
}

CommitStats EventLog::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace wattledger::eventlog
