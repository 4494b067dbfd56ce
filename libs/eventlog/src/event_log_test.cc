#include "wattledger/eventlog/event_log.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/common.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/transaction_log.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include "wattledger/testing/temp_dir.h"

namespace wattledger::eventlog {
namespace {

NewEvent Ev(uint32_t partition, std::string key, std::string payload = "p") {
  NewEvent e;
  e.partition = partition;
  e.aggregate_key = std::move(key);
  e.type = "test.Event";
  e.payload = std::move(payload);
  e.actor = "tester";
  e.causation.set_request_id("req-" + e.aggregate_key);
  return e;
}

// The log's database at `path`, opened directly with every column family it has (RocksDB asks
// for all of them), to look at or tamper with what is stored behind the log's back.
struct RawDb {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<std::string> names;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // handles[i] is column family names[i].

  RawDb(const std::string& path, bool read_only, rocksdb::Options o = {}) {
    EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(o, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& name : names) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* raw = nullptr;
    auto s = read_only ? rocksdb::DB::OpenForReadOnly(o, path, cfs, &handles, &raw)
                       : rocksdb::DB::Open(o, path, cfs, &handles, &raw);
    EXPECT_TRUE(s.ok()) << s.ToString();
    db.reset(raw);
  }
  ~RawDb() {
    if (db == nullptr) return;
    for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  rocksdb::ColumnFamilyHandle* cf(std::string_view name) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == name) return handles[i];
    }
    ADD_FAILURE() << "no column family " << name;
    return nullptr;
  }
  std::string name_of(uint32_t id) const {
    for (size_t i = 0; i < handles.size(); ++i) {
      if (handles[i]->GetID() == id) return names[i];
    }
    return "?" + std::to_string(id);
  }
};

// A database made at `path` behind the log's back, with the column families `names` (default
// first) and, if given, a stored shape: what a log whose creation stopped part-way, or an older
// build, left behind.
void MakeRawLog(const std::string& path, const std::vector<std::string>& names,
                const std::optional<std::string>& shape) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& name : names) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, path, cfs, &handles, &db).ok());
  if (shape) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(db->Put(wo, handles[0], "shape", *shape).ok());
  }
  for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
}

// One operation of a WriteBatch as RocksDB logged it.
struct LoggedOp {
  std::string cf;  // The column family's name.
  bool erase;
  std::string key;
  bool operator==(const LoggedOp&) const = default;
};
void PrintTo(const LoggedOp& op, std::ostream* os) {
  *os << "{" << op.cf << (op.erase ? " delete " : " put ") << HexEncode(op.key) << "}";
}

// The operations of the last WriteBatch in the write-ahead log of the (closed) log at `path`,
// in batch order. Opened without flushing the recovered WAL, so that the WAL stays readable.
std::vector<LoggedOp> LastLoggedBatch(const std::string& path) {
  struct Recorder : rocksdb::WriteBatch::Handler {
    const RawDb* raw;
    std::vector<LoggedOp> ops;
    rocksdb::Status PutCF(uint32_t cf, const rocksdb::Slice& key, const rocksdb::Slice&) override {
      ops.push_back({raw->name_of(cf), false, key.ToString()});
      return rocksdb::Status::OK();
    }
    rocksdb::Status DeleteCF(uint32_t cf, const rocksdb::Slice& key) override {
      ops.push_back({raw->name_of(cf), true, key.ToString()});
      return rocksdb::Status::OK();
    }
  };
  rocksdb::Options o;
  o.avoid_flush_during_recovery = true;
  RawDb raw(path, /*read_only=*/false, o);
  if (raw.db == nullptr) return {};
  std::unique_ptr<rocksdb::TransactionLogIterator> it;
  EXPECT_TRUE(raw.db->GetUpdatesSince(0, &it).ok());
  Recorder last;
  last.raw = &raw;
  for (; it != nullptr && it->Valid(); it->Next()) {
    last.ops.clear();
    EXPECT_TRUE(it->GetBatch().writeBatchPtr->Iterate(&last).ok());
  }
  return last.ops;
}

class EventLogTest : public ::testing::Test {
 protected:
  Result<std::unique_ptr<EventLog>> OpenLogOrError(uint32_t partitions) {
    Options o;
    o.path = dir_.Sub("log");
    o.name = "test";
    o.partitions = partitions;
    o.clock = &clock_;
    return EventLog::Open(o);
  }
  std::unique_ptr<EventLog> OpenLog(uint32_t partitions = 4) {
    auto log = OpenLogOrError(partitions);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  }
  wattledger::testing::TempDir dir_;
  ManualClock clock_;
};

TEST_F(EventLogTest, CommitAssignsGapFreeSequencesPerPartition) {
  auto log = OpenLog();
  WriteSet ws;
  ws.Append(Ev(0, "a"));
  ws.Append(Ev(1, "b"));
  ws.Append(Ev(0, "c"));
  ws.ReturnEnvelopes();
  auto result = log->Commit(std::move(ws));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  const auto& out = result->envelopes;
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].seq(), 1u);
  EXPECT_EQ(out[1].seq(), 1u);
  EXPECT_EQ(out[2].seq(), 2u);
  EXPECT_EQ(out[2].event_id(), "test/0/2");
  EXPECT_EQ(out[0].aggregate_key(), "a");
  EXPECT_EQ(out[1].aggregate_key(), "b");
  EXPECT_EQ(out[2].prev_hash(), out[0].hash());
  EXPECT_EQ(out[0].prev_hash(), std::string(kHashBytes, '\0'));
  EXPECT_EQ(log->Head(0), 2u);
  EXPECT_EQ(log->Head(1), 1u);
  EXPECT_EQ(log->Head(2), 0u);
}

// The observer hears of each commit once, with its events and how long it took: the whole
// Commit, and the part of it in RocksDB's write, which cannot be longer.
TEST_F(EventLogTest, ObserverHearsEachCommitWithItsWriteTime) {
  auto log = OpenLog();
  std::vector<std::tuple<size_t, int64_t, int64_t>> seen;
  log->SetObserver({[&](size_t events, int64_t latency_us, int64_t write_us) {
    seen.emplace_back(events, latency_us, write_us);
  }});
  for (int i = 0; i < 2; ++i) {
    WriteSet ws;
    ws.Append(Ev(0, "a"));
    if (i == 1) ws.Append(Ev(1, "b"));
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  }
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(std::get<0>(seen[0]), 1u);
  EXPECT_EQ(std::get<0>(seen[1]), 2u);
  for (const auto& [events, latency_us, write_us] : seen) {
    EXPECT_GE(write_us, 0);
    EXPECT_LE(write_us, latency_us);
  }
}

// Without ReturnEnvelopes a commit returns no envelopes, only where each partition's chain ends.
TEST_F(EventLogTest, CommitResultGivesSeqRangesAndChainTipsPerPartition) {
  auto log = OpenLog();
  WriteSet first;
  first.Append(Ev(2, "a"));
  ASSERT_TRUE(log->Commit(std::move(first)).ok());
  WriteSet ws;
  ws.Append(Ev(2, "b"));
  ws.Append(Ev(0, "c"));
  ws.Append(Ev(2, "d"));
  ws.PutState("k", "v");
  auto result = log->Commit(std::move(ws));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->events, 3u);
  EXPECT_TRUE(result->envelopes.empty());
  ASSERT_EQ(result->partitions.size(), 2u);
  const Appended& p0 = result->partitions[0];
  const Appended& p2 = result->partitions[1];
  EXPECT_EQ(p0.partition, 0u);
  EXPECT_EQ(p0.first_seq, 1u);
  EXPECT_EQ(p0.last_seq, 1u);
  EXPECT_EQ(p2.partition, 2u);
  EXPECT_EQ(p2.first_seq, 2u);
  EXPECT_EQ(p2.last_seq, 3u);
  auto stored = log->Read(2, 1, 10);
  ASSERT_TRUE(stored.ok());
  ASSERT_EQ(stored->size(), 3u);
  EXPECT_EQ((*stored)[1].aggregate_key(), "b");
  EXPECT_EQ((*stored)[2].aggregate_key(), "d");
  EXPECT_EQ(p2.last_hash, (*stored)[2].hash());
  EXPECT_EQ(p0.last_hash, log->Read(0, 1, 1)->at(0).hash());

  WriteSet state_only;
  state_only.PutState("k", "w");
  auto none = log->Commit(std::move(state_only));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->events, 0u);
  EXPECT_TRUE(none->partitions.empty());
}

TEST_F(EventLogTest, StateAndPositionsAndIdempotencyCommitWithEvents) {
  auto log = OpenLog();
  WriteSet ws;
  ws.Append(Ev(2, "acct"));
  ws.PutState("acct/A1", "100");
  ws.SetPosition("billing", 3, Position{41, 1000});
  ws.PutIdempotency("K1", "txn-1");
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  EXPECT_EQ(log->GetState("acct/A1")->value(), "100");
  EXPECT_EQ(log->GetPosition("billing", 3)->value(), (Position{41, 1000}));
  EXPECT_FALSE(log->GetPosition("billing", 2)->has_value());
  EXPECT_EQ(log->GetIdempotency("K1")->value(), "txn-1");
  EXPECT_FALSE(log->GetIdempotency("K2")->has_value());

  WriteSet del;
  del.DeleteState("acct/A1");
  ASSERT_TRUE(log->Commit(std::move(del)).ok());
  EXPECT_FALSE(log->GetState("acct/A1")->has_value());
}

TEST_F(EventLogTest, LastWriteOfAKeyInAWriteSetWinsInCallOrder) {
  auto log = OpenLog();
  WriteSet before;
  before.PutState("put-after-delete", "old");
  before.PutState("delete-after-put", "old");
  before.SetPosition("c", 1, Position{5, 50});
  ASSERT_TRUE(log->Commit(std::move(before)).ok());

  WriteSet ws;
  ws.PutState("a", "1");
  ws.PutState("a", "2");
  ws.DeleteState("put-after-delete");
  ws.PutState("put-after-delete", "new");
  ws.PutState("delete-after-put", "new");
  ws.DeleteState("delete-after-put");
  ws.PutState("put-delete-put", "1");
  ws.DeleteState("put-delete-put");
  ws.PutState("put-delete-put", "3");
  ws.SetPosition("c", 1, Position{9, 90});
  ws.SetPosition("c", 2, Position{7, 70});
  ws.SetPosition("cc", 1, Position{3, 30});  // Another consumer of the same partition.
  ws.SetPosition("c", 1, Position{8, 80});  // Last, not highest: the caller decides.
  ws.SetPosition("cc", 2, Position{4, 40});
  ws.PutIdempotency("K", "first");
  ws.PutIdempotency("K", "second");
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());

  EXPECT_EQ(log->GetState("a")->value_or("absent"), "2");
  EXPECT_EQ(log->GetState("put-after-delete")->value_or("absent"), "new");
  EXPECT_EQ(log->GetState("delete-after-put")->value_or("absent"), "absent");
  EXPECT_EQ(log->GetState("put-delete-put")->value_or("absent"), "3");
  EXPECT_EQ(log->GetPosition("c", 1)->value(), (Position{8, 80}));
  EXPECT_EQ(log->GetPosition("c", 2)->value(), (Position{7, 70}));
  EXPECT_EQ(log->GetPosition("cc", 1)->value(), (Position{3, 30}));
  EXPECT_EQ(log->GetPosition("cc", 2)->value(), (Position{4, 40}));
  EXPECT_EQ(log->GetIdempotency("K")->value(), "second");
}

// The batch itself: events, then each state and meta key once, in key order, whatever the order
// of the calls.
TEST_F(EventLogTest, CommitWritesEachKeyOnceInKeyOrder) {
  {
    auto log = OpenLog(2);
    WriteSet ws;
    ws.Append(Ev(1, "x"));
    ws.PutState("acct/b", "1");
    ws.SetPosition("svc", 3, Position{1, -1});
    ws.Append(Ev(0, "y"));
    ws.PutState("sys/0/revenue", "1");
    ws.PutState("acct/a", "1");
    ws.SetPosition("svc", 0, Position{1, -1});
    ws.PutIdempotency("K2", "v");
    ws.Append(Ev(1, "z"));
    ws.DeleteState("acct/b");
    ws.PutState("sys/0/revenue", "2");
    ws.SetPosition("svc", 3, Position{2, -1});
    ws.PutIdempotency("K1", "v");
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  }
  auto pos = [](uint32_t sp) {
    std::string key = "pos/svc";
    key.push_back('\0');
    key.append({'\0', '\0', '\0', static_cast<char>(sp)});
    return key;
  };
  const std::vector<LoggedOp> want = {
      {"events.0", false, EventKey(0, 1)}, {"events.1", false, EventKey(1, 1)},
      {"events.1", false, EventKey(1, 2)}, {"state", false, "acct/a"},
      {"state", true, "acct/b"},           {"state", false, "sys/0/revenue"},
      {"default", false, "idem/K1"},       {"default", false, "idem/K2"},
      {"default", false, pos(0)},          {"default", false, pos(3)},
  };
  EXPECT_EQ(LastLoggedBatch(dir_.Sub("log")), want);
}

TEST_F(EventLogTest, InvalidWriteSetIsRejectedWholeAndWritesNothing) {
  auto log = OpenLog(2);
  WriteSet ws;
  ws.Append(Ev(0, "ok"));
  ws.PutState("k", "v");
  ws.Append(Ev(7, "bad-partition"));
  auto out = log->Commit(std::move(ws));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Head(0), 0u);
  EXPECT_FALSE(log->GetState("k")->has_value());

  WriteSet no_cause;
  NewEvent e = Ev(0, "x");
  e.causation.Clear();
  no_cause.Append(e);
  EXPECT_EQ(log->Commit(std::move(no_cause)).status().code(), StatusCode::kInvalidArgument);

  WriteSet big;
  big.Append(Ev(0, "big", std::string(kMaxPayloadBytes + 1, 'x')));
  EXPECT_EQ(log->Commit(std::move(big)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(log->Head(0), 0u);
}

// A writer that names its events' seqs before the commit (ExpectHead) gets INTERNAL, and
// nothing is written, if the partition's head is not where it expected: the names would be wrong.
TEST_F(EventLogTest, ACommitThatExpectsAnotherHeadIsRefusedWhole) {
  auto log = OpenLog(2);
  WriteSet first;
  first.ExpectHead(1, 0);
  first.Append(Ev(1, "a"));
  first.Append(Ev(0, "other partition"));
  first.Append(Ev(1, "b"));
  EXPECT_EQ(first.head(), 0u);
  EXPECT_EQ(first.head_after(), 2u) << "only the expected partition's events count";
  ASSERT_TRUE(log->Commit(std::move(first)).ok());

  WriteSet stale;
  stale.ExpectHead(1, 1);  // The head is 2.
  stale.Append(Ev(1, "c"));
  stale.PutState("k", "v");
  auto out = log->Commit(std::move(stale));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInternal);
  EXPECT_NE(out.status().message().find("expected partition 1 at seq 1 but it is at 2"), std::string::npos)
      << out.status().ToString();
  EXPECT_EQ(log->Head(1), 2u);
  EXPECT_FALSE(log->GetState("k")->has_value());

  WriteSet nowhere;
  nowhere.ExpectHead(9, 0);
  nowhere.PutState("k", "v");
  EXPECT_EQ(log->Commit(std::move(nowhere)).status().code(), StatusCode::kInternal);

  WriteSet right;
  right.ExpectHead(1, 2);
  right.Append(Ev(1, "c"));
  ASSERT_TRUE(log->Commit(std::move(right)).ok());
  EXPECT_EQ(log->Head(1), 3u);
}

// Envelope's text fields are proto3 strings: protobuf writes invalid UTF-8 (with a log line) but
// refuses to parse it, so such an event would be stored and then never read back, and a log
// whose last record does not parse cannot even be opened.
TEST_F(EventLogTest, TextFieldsThatAreNotUtf8AreRejected) {
  auto log = OpenLog(1);
  const std::string bad("\xff\xfe", 2);
  const std::vector<std::pair<std::string, std::function<void(NewEvent&)>>> cases = {
      {"aggregate_key", [&](NewEvent& e) { e.aggregate_key = bad; }},
      {"type", [&](NewEvent& e) { e.type = "t" + bad; }},
      {"actor", [&](NewEvent& e) { e.actor = bad; }},
      {"causation.request_id", [&](NewEvent& e) { e.causation.set_request_id(bad); }},
      {"causation.source_topic", [&](NewEvent& e) { e.causation.set_source_topic(bad); }},
  };
  for (const auto& [field, spoil] : cases) {
    WriteSet ws;
    ws.Append(Ev(0, "fine"));
    NewEvent e = Ev(0, "k");
    spoil(e);
    ws.Append(std::move(e));
    ws.PutState("k", "v");
    auto out = log->Commit(std::move(ws));
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(out.status().message().find(field), std::string::npos) << out.status().message();
  }
  EXPECT_EQ(log->Head(0), 0u);
  EXPECT_FALSE(log->GetState("k")->has_value());

  // Non-ASCII text is fine, and payloads are bytes.
  WriteSet ws;
  NewEvent e = Ev(0, "сч\xc3\xabt-€", bad);
  e.actor = "opérateur";
  ws.Append(std::move(e));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto read = log->Read(0, 1, 1);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 1u);
  EXPECT_EQ((*read)[0].payload(), bad);
  EXPECT_EQ((*read)[0].actor(), "opérateur");
}

TEST_F(EventLogTest, ReopenRecoversHeadsAndContinuesTheChain) {
  std::string tip;
  {
    auto log = OpenLog();
    for (int i = 0; i < 5; ++i) {
      WriteSet ws;
      ws.Append(Ev(1, "k" + std::to_string(i)));
      auto out = log->Commit(std::move(ws));
      ASSERT_TRUE(out.ok());
      tip = out->partitions.at(0).last_hash;
    }
  }
  auto log = OpenLog();
  EXPECT_EQ(log->Head(1), 5u);
  WriteSet ws;
  ws.Append(Ev(1, "after"));
  ws.ReturnEnvelopes();
  auto out = log->Commit(std::move(ws));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->envelopes.at(0).seq(), 6u);
  EXPECT_EQ(out->envelopes.at(0).prev_hash(), tip);
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->events_checked, 6u);
}

// Files the log no longer needs are truncated a chunk at a time in the background (a large file
// deleted at once stalled every commit's fsync); trash a stopped writer left behind is deleted
// when the log is next opened.
TEST_F(EventLogTest, OldFilesAreDeletedAChunkAtATimeAndTrashLeftByAStopAtTheNextOpen) {
  namespace fs = std::filesystem;
  const std::string path = dir_.Sub("log");
  auto trash = [&] {
    std::map<std::string, uintmax_t> sizes;
    for (const auto& f : fs::directory_iterator(path)) {
      if (f.path().extension() == ".trash") sizes[f.path().filename()] = fs::file_size(f.path());
    }
    return sizes;
  };
  auto open = [&](uint64_t delete_bytes_per_s, bool read_only = false) {
    Options o;
    o.path = path;
    o.name = "test";
    o.partitions = read_only ? 0 : 2;
    o.clock = &clock_;
    o.background_delete_bytes_per_s = delete_bytes_per_s;
    o.read_only = read_only;
    auto log = EventLog::Open(o);
    EXPECT_TRUE(log.ok()) << log.status().ToString();
    return log.ok() ? std::move(log).value() : nullptr;
  };
  const std::string payload(64 << 10, 'x');
  {
    auto log = open(64 << 10);
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 96; ++i) {  // A WAL of 6 MiB.
      WriteSet ws;
      ws.Append(Ev(static_cast<uint32_t>(i % 2), "e" + std::to_string(i), payload));
      ASSERT_TRUE(log->Commit(std::move(ws)).ok());
    }
  }
  // Reopened, the log recovers that WAL into tables and no longer needs it: its first 4 MiB are
  // truncated at once, the rest waits its turn (half a minute at 64 KiB/s).
  auto writer = open(64 << 10);
  ASSERT_NE(writer, nullptr);
  std::map<std::string, uintmax_t> left;
  for (int i = 0; i < 100 && left.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (const auto& [name, size] : trash()) {
      if (size > 0 && size < (4u << 20)) left[name] = size;
    }
  }
  ASSERT_EQ(left.size(), 1u) << "no WAL was truncated by a chunk";
  writer.reset();
  EXPECT_FALSE(trash().empty()) << "the test needs trash left behind";

  auto log = open(256 << 20);
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 200 && !trash().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(trash().empty());
  size_t wals = 0;
  for (const auto& f : fs::directory_iterator(path)) wals += f.path().extension() == ".log" ? 1 : 0;
  EXPECT_LE(wals, 2u);
  // A reader beside the writer (it empties the trash too) leaves the writer working.
  auto reader = open(256 << 20, /*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  WriteSet ws;
  ws.Append(Ev(0, "after", payload));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  EXPECT_EQ(log->Head(0) + log->Head(1), 97u);
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
}

// A flush writes what one period of the limiter allows as fast as it can, and the commits' WAL
// fsyncs wait behind that burst: it must stay a few hundred KiB, not the 3.2 MiB of RocksDB's
// default 100 ms period at the default rate.
TEST(BackgroundWriteLimiter, HandsOutTheDefaultRateInBurstsOfAtMost10Ms) {
  const uint64_t rate = Options{}.background_write_bytes_per_s;
  auto limiter = NewBackgroundWriteLimiter(rate);
  ASSERT_NE(limiter, nullptr);
  EXPECT_EQ(limiter->GetBytesPerSecond(), static_cast<int64_t>(rate));
  EXPECT_LE(limiter->GetSingleBurstBytes(), static_cast<int64_t>(rate / 100));
  EXPECT_EQ(NewBackgroundWriteLimiter(0), nullptr);  // 0: no limit.
}

TEST_F(EventLogTest, ReopenWithOtherPartitionCountIsRefused) {
  { auto log = OpenLog(4); }
  Options o;
  o.path = dir_.Sub("log");
  o.name = "test";
  o.partitions = 8;
  auto log = EventLog::Open(o);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(log.status().message().find("test/4"), std::string::npos) << log.status().message();
  // The refused open added nothing: no column family for partitions 4..7.
  RawDb raw(o.path, /*read_only=*/true);
  EXPECT_EQ(raw.names.size(), 2u + 4u);
}

// A directory made ahead (by an operator or a volume mount) is a new log, not an error.
TEST_F(EventLogTest, AnEmptyDirectoryOpensAsANewLog) {
  std::filesystem::create_directories(dir_.Sub("log"));
  auto log = OpenLog(2);
  ASSERT_NE(log, nullptr);
  WriteSet ws;
  ws.Append(Ev(1, "k"));
  EXPECT_TRUE(log->Commit(std::move(ws)).ok());
}

TEST_F(EventLogTest, ReadOnlyOpenSeesTheLiveLogAndRefusesCommits) {
  auto log = OpenLog(3);
  WriteSet ws;
  ws.Append(Ev(2, "k"));
  ws.PutState("a", "1");
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  Options o;
  o.path = dir_.Sub("log");
  o.partitions = 0;  // As stored.
  o.read_only = true;
  auto reader = EventLog::Open(o);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->partitions(), 3u);
  EXPECT_EQ((*reader)->name(), "test");
  EXPECT_EQ((*reader)->Head(2), 1u);
  EXPECT_EQ(*(*reader)->StateDigest(), *log->StateDigest());
  WriteSet more;
  more.PutState("b", "2");
  EXPECT_EQ((*reader)->Commit(std::move(more)).status().code(), StatusCode::kFailedPrecondition);
  o.path = dir_.Sub("missing");
  EXPECT_FALSE(EventLog::Open(o).ok());
}

TEST_F(EventLogTest, ReadReturnsRangeInOrder) {
  auto log = OpenLog();
  WriteSet ws;
  for (int i = 0; i < 10; ++i) ws.Append(Ev(3, "k", std::to_string(i)));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto got = log->Read(3, 4, 3);
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].seq(), 4u);
  EXPECT_EQ((*got)[0].payload(), "3");
  EXPECT_EQ((*got)[2].seq(), 6u);
  EXPECT_TRUE(log->Read(3, 11, 10)->empty());
  EXPECT_TRUE(log->Read(2, 1, 10)->empty());
  EXPECT_FALSE(log->Read(9, 1, 10).ok());
}

// A walk reads the events its callback names, in the order named (here back and forth), stops at
// 0, and ends with the callback's error or DATA_LOSS for a seq the partition does not hold.
TEST_F(EventLogTest, WalkReadsTheEventsEachOneNames) {
  auto log = OpenLog();
  WriteSet ws;
  for (int i = 1; i <= 10; ++i) ws.Append(Ev(3, "k", std::to_string(i)));
  ws.Append(Ev(2, "k", "other"));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  std::vector<uint64_t> next = {3, 9, 1, 0};  // After 7: 3, 9, 1, then stop.
  std::vector<std::string> seen;
  Status s = log->Walk(3, 7, [&](const Envelope& e) -> Result<uint64_t> {
    seen.push_back(e.payload());
    uint64_t n = next.front();
    next.erase(next.begin());
    return n;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"7", "3", "9", "1"}));
  s = log->Walk(3, 5, [](const Envelope&) -> Result<uint64_t> { return uint64_t{11}; });
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("3/11 is not in the log"), std::string::npos) << s.ToString();
  s = log->Walk(3, 5, [](const Envelope&) -> Result<uint64_t> { return InvalidArgument("stop here"); });
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(log->Walk(3, 0, [](const Envelope&) -> Result<uint64_t> { return Internal("never called"); }).ok());
  EXPECT_FALSE(log->Walk(9, 1, [](const Envelope&) -> Result<uint64_t> { return uint64_t{0}; }).ok());
}

TEST_F(EventLogTest, VerifyDetectsEditedPayloadAndGap) {
  auto path = dir_.Sub("log");
  {
    auto log = OpenLog(1);
    WriteSet ws;
    for (int i = 0; i < 5; ++i) ws.Append(Ev(0, "k", std::to_string(i)));
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  }
  // Tamper with the database behind the log's back.
  auto tamper = [&](auto&& fn) {
    RawDb raw(path, /*read_only=*/false);
    fn(raw.db.get(), raw.cf(EventsColumnFamily(0)));
  };
  tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    std::string v;
    ASSERT_TRUE(db->Get({}, events, EventKey(0, 3), &v).ok());
    Envelope env;
    ASSERT_TRUE(env.ParseFromString(v));
    env.set_payload("forged");
    ASSERT_TRUE(db->Put({}, events, EventKey(0, 3), env.SerializeAsString()).ok());
  });
  {
    auto log = OpenLog(1);
    auto report = log->Verify();
    ASSERT_TRUE(report.ok());
    EXPECT_FALSE(report->ok);
    EXPECT_NE(report->problem.find("seq 3: hash does not match"), std::string::npos) << report->problem;
  }
  tamper([](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* events) {
    ASSERT_TRUE(db->Delete({}, events, EventKey(0, 2)).ok());
  });
  auto log = OpenLog(1);
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->ok);
  EXPECT_NE(report->problem.find("gap after seq 1"), std::string::npos) << report->problem;
}

// Each partition's events are in a column family of their own, under the same keys as ever.
TEST_F(EventLogTest, EachPartitionsEventsHaveAColumnFamilyOfTheirOwn) {
  auto path = dir_.Sub("log");
  {
    auto log = OpenLog(3);
    WriteSet ws;
    ws.Append(Ev(0, "a"));
    ws.Append(Ev(2, "b"));
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  }
  {
    RawDb raw(path, /*read_only=*/false);
    std::vector<std::string> names = raw.names;
    std::sort(names.begin(), names.end());
    EXPECT_EQ(names, (std::vector<std::string>{"default", "events.0", "events.1", "events.2", "state"}));
    std::string v;
    EXPECT_TRUE(raw.db->Get({}, raw.cf("events.2"), EventKey(2, 1), &v).ok());
    EXPECT_TRUE(raw.db->Get({}, raw.cf("events.0"), EventKey(2, 1), &v).IsNotFound());
    // An event of partition 2 copied where partition 1's belong: Verify names the misplaced key.
    ASSERT_TRUE(raw.db->Put({}, raw.cf("events.1"), EventKey(2, 1), v).ok());
  }
  auto log = OpenLog(3);
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->ok);
  EXPECT_NE(report->problem.find("partition 2 seq 1: stored with partition 1's events"), std::string::npos)
      << report->problem;
}

// RocksDB writes its options file, and reads it back whole, after every single column family it
// creates: made one by one, a new 300-partition log took 20 s of CPU. The log creates them all in
// one call, so a new log's options file has been written a few times, not once per partition.
// Each write takes a new file number, which its name carries (OPTIONS-000123).
TEST_F(EventLogTest, ANewLogWritesItsOptionsFileOnceForAllItsColumnFamilies) {
  { auto log = OpenLog(64); }
  uint64_t highest = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.Sub("log"))) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("OPTIONS-")) highest = std::max<uint64_t>(highest, std::stoull(name.substr(8)));
  }
  EXPECT_GT(highest, 0u) << "no OPTIONS file in the log's directory";
  EXPECT_LT(highest, 20u) << "the options file was written once per column family";
}

// A log written before the per-partition layout keeps all events in one column family. It
// opens, reads, verifies and grows as it did, and is not changed to the new layout.
TEST_F(EventLogTest, AnOlderLogWithOneSharedEventsColumnFamilyStillOpensAndGrows) {
  auto path = dir_.Sub("log");
  std::vector<Envelope> before;
  {
    auto log = OpenLog(2);
    WriteSet ws;
    for (int i = 0; i < 3; ++i) ws.Append(Ev(i % 2, "k" + std::to_string(i)));
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
    for (uint32_t p = 0; p < 2; ++p) {
      auto events = log->Read(p, 1, 100);
      ASSERT_TRUE(events.ok());
      before.insert(before.end(), events->begin(), events->end());
    }
  }
  {
    // Into the older layout: every key into "events", the per-partition ones dropped.
    RawDb raw(path, /*read_only=*/false);
    rocksdb::ColumnFamilyHandle* shared = nullptr;
    ASSERT_TRUE(raw.db->CreateColumnFamily({}, kSharedEventsColumnFamily, &shared).ok());
    for (uint32_t p = 0; p < 2; ++p) {
      std::unique_ptr<rocksdb::Iterator> it(raw.db->NewIterator({}, raw.cf(EventsColumnFamily(p))));
      for (it->SeekToFirst(); it->Valid(); it->Next()) ASSERT_TRUE(raw.db->Put({}, shared, it->key(), it->value()).ok());
      ASSERT_TRUE(it->status().ok());
      it.reset();
      ASSERT_TRUE(raw.db->DropColumnFamily(raw.cf(EventsColumnFamily(p))).ok());
    }
    ASSERT_TRUE(raw.db->DestroyColumnFamilyHandle(shared).ok());
  }
  {
    auto log = OpenLog(2);
    ASSERT_NE(log, nullptr);
    std::vector<Envelope> read;
    for (uint32_t p = 0; p < 2; ++p) {
      auto events = log->Read(p, 1, 100);
      ASSERT_TRUE(events.ok()) << events.status().ToString();
      read.insert(read.end(), events->begin(), events->end());
    }
    ASSERT_EQ(read.size(), before.size());
    for (size_t i = 0; i < read.size(); ++i) EXPECT_EQ(read[i].SerializeAsString(), before[i].SerializeAsString());
    WriteSet ws;
    ws.Append(Ev(1, "more"));
    auto result = log->Commit(std::move(ws));
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->partitions[0].last_seq, 2u);
  }
  Options o;
  o.path = path;
  o.partitions = 0;  // As stored.
  o.read_only = true;
  auto reader = EventLog::Open(o);
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto report = (*reader)->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->events_checked, 4u);
  reader->reset();
  RawDb raw(path, /*read_only=*/true);
  std::vector<std::string> names = raw.names;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"default", "events", "state"}));
}

// RocksDB creates a new database's column families one at a time: a log whose creation stopped
// before the last gets the missing ones when it is opened again.
TEST_F(EventLogTest, ALogWhoseCreationStoppedHalfWayGetsItsMissingColumnFamilies) {
  auto path = dir_.Sub("log");
  MakeRawLog(path, {rocksdb::kDefaultColumnFamilyName, "state", EventsColumnFamily(0)}, std::nullopt);
  auto log = OpenLog(2);
  ASSERT_NE(log, nullptr);
  WriteSet ws;
  ws.Append(Ev(1, "k"));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  EXPECT_EQ(log->Read(1, 1, 10)->size(), 1u);
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
}

// A reader may not finish a half-made log: it is told which column family is missing and what
// to do, and the log is left as it was.
TEST_F(EventLogTest, AReaderOfALogMissingAColumnFamilyIsToldWhichAndWhatToDo) {
  auto path = dir_.Sub("log");
  OpenLog(2).reset();
  {
    RawDb raw(path, /*read_only=*/false);
    ASSERT_TRUE(raw.db->DropColumnFamily(raw.cf(EventsColumnFamily(1))).ok());
  }
  Options o;
  o.path = path;
  o.partitions = 0;
  o.read_only = true;
  auto reader = EventLog::Open(o);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(reader.status().message().find("'" + EventsColumnFamily(1) + "'"), std::string::npos)
      << reader.status().ToString();
  EXPECT_NE(reader.status().message().find("open it once read-write"), std::string::npos)
      << reader.status().ToString();
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names).ok());
  EXPECT_EQ(std::count(names.begin(), names.end(), EventsColumnFamily(1)), 0);
}

// A log whose creation stopped before its shape was written: a reader is told to open it
// read-write once, and that open finishes it.
TEST_F(EventLogTest, ALogStoppedBeforeItsShapeIsFinishedByTheNextWriter) {
  auto path = dir_.Sub("log");
  MakeRawLog(path, {rocksdb::kDefaultColumnFamilyName, "state", EventsColumnFamily(0)}, std::nullopt);
  Options o;
  o.path = path;
  o.partitions = 0;  // As stored.
  o.read_only = true;
  auto reader = EventLog::Open(o);
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(reader.status().message().find("open it once read-write"), std::string::npos) << reader.status().message();
  auto log = OpenLog(2);
  ASSERT_NE(log, nullptr);
  log.reset();
  auto finished = EventLog::Open(o);
  EXPECT_TRUE(finished.ok()) << finished.status().ToString();
}

// A log with its shape and no other column family (as an older build left one that stopped right
// after writing the shape) is refused under another shape with nothing added, and finished under
// its own.
TEST_F(EventLogTest, ALogWithOnlyItsShapeIsFinishedUnderItsShapeAndUntouchedUnderAnother) {
  auto path = dir_.Sub("log");
  MakeRawLog(path, {rocksdb::kDefaultColumnFamilyName}, "test/3");
  auto other = OpenLogOrError(2);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kFailedPrecondition) << other.status().ToString();
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::Options(), path, &names).ok());
  EXPECT_EQ(names, std::vector<std::string>{"default"});

  auto log = OpenLog(3);
  ASSERT_NE(log, nullptr);
  WriteSet ws;
  ws.Append(Ev(2, "k"));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  log.reset();
  RawDb raw(path, /*read_only=*/true);
  names = raw.names;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"default", "events.0", "events.1", "events.2", "state"}));
}

// A log of the shared layout that lacks its state column family gets that one, and no
// per-partition ones.
TEST_F(EventLogTest, ASharedLayoutLogMissingItsStateGetsOnlyTheState) {
  auto path = dir_.Sub("log");
  MakeRawLog(path, {rocksdb::kDefaultColumnFamilyName, kSharedEventsColumnFamily}, "test/2");
  auto log = OpenLog(2);
  ASSERT_NE(log, nullptr);
  WriteSet ws;
  ws.Append(Ev(0, "a"));
  ws.Append(Ev(1, "b"));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  EXPECT_EQ(log->Read(1, 1, 10)->size(), 1u);
  log.reset();
  RawDb raw(path, /*read_only=*/true);
  std::vector<std::string> names = raw.names;
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"default", "events", "state"}));
  std::string v;
  EXPECT_TRUE(raw.db->Get({}, raw.cf("events"), EventKey(1, 1), &v).ok());
}

// Both layouts at once is no log wattledger wrote: refused, not guessed at.
TEST_F(EventLogTest, ALogWithBothLayoutsIsRefused) {
  auto path = dir_.Sub("log");
  OpenLog(2).reset();
  {
    RawDb raw(path, /*read_only=*/false);
    rocksdb::ColumnFamilyHandle* shared = nullptr;
    ASSERT_TRUE(raw.db->CreateColumnFamily({}, kSharedEventsColumnFamily, &shared).ok());
    ASSERT_TRUE(raw.db->DestroyColumnFamilyHandle(shared).ok());
  }
  Options o;
  o.path = path;
  o.name = "test";
  o.partitions = 2;
  o.clock = &clock_;
  auto log = EventLog::Open(o);
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(log.status().message().find("both the shared events column family and 'events."), std::string::npos)
      << log.status().message();
}

std::string Canonical(const Envelope& e) {
  std::string out;
  google::protobuf::io::StringOutputStream raw(&out);
  google::protobuf::io::CodedOutputStream coded(&raw);
  coded.SetSerializationDeterministic(true);
  e.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// Checks, in the closed log at `path`, that each of `committed` is stored as exactly the
// canonical serialisation of the returned envelope.
void ExpectStoredAsCanonical(const std::string& path, const std::vector<Envelope>& committed) {
  RawDb raw(path, /*read_only=*/true);
  for (const auto& e : committed) {
    std::string v;
    ASSERT_TRUE(raw.db->Get({}, raw.cf(EventsColumnFamily(e.partition())), EventKey(e.partition(), e.seq()), &v).ok());
    EXPECT_EQ(HexEncode(v), HexEncode(Canonical(e))) << e.event_id();
  }
}

// Commit writes each record straight from the NewEvent, without protobuf, and appends the hash
// field to the bytes it hashed; the stored value must still be exactly the canonical
// serialisation of the stored envelope, and the hash exactly ComputeHash, for every partition
// and in any arrival order.
TEST_F(EventLogTest, StoredValueIsCanonicalAndHashIsComputeHash) {
  std::vector<Envelope> committed;
  {
    auto log = OpenLog(3);
    for (int c = 0; c < 3; ++c) {
      WriteSet ws;
      for (int i = 0; i < 10; ++i) ws.Append(Ev((i * 7 + c) % 3, "k" + std::to_string(i), std::string(50 + i, 'x')));
      ws.ReturnEnvelopes();
      auto out = log->Commit(std::move(ws));
      ASSERT_TRUE(out.ok());
      for (auto& e : out->envelopes) {
        EXPECT_EQ(EventLog::ComputeHash(e), e.hash());
        committed.push_back(e);
      }
    }
    auto report = log->Verify();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok) << report->problem;
  }
  ExpectStoredAsCanonical(dir_.Sub("log"), committed);
}

// The corners of the wire format: fields at their default left out, varints of several bytes,
// negative times, a causation carrying fields this build does not know.
TEST_F(EventLogTest, StoredValueIsCanonicalAtTheCornersOfTheWireFormat) {
  std::vector<Envelope> committed;
  {
    auto log = OpenLog(300);
    auto commit = [&](std::vector<NewEvent> events) {
      WriteSet ws;
      for (auto& e : events) ws.Append(std::move(e));
      ws.ReturnEnvelopes();
      auto out = log->Commit(std::move(ws));
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      for (auto& e : out->envelopes) {
        EXPECT_EQ(EventLog::ComputeHash(e), e.hash());
        committed.push_back(e);
      }
    };
    NewEvent bare;  // Partition 0, no key, actor or payload.
    bare.type = "t";
    bare.causation.set_request_id("r");
    bare.occurred_at_us = -5;
    NewEvent wide = Ev(299, std::string(200, 'k'), std::string(20'000, 'p'));
    wide.occurred_at_us = INT64_MAX;
    wide.causation.Clear();
    wide.causation.set_source_topic("billing");
    wide.causation.set_source_partition(UINT32_MAX);
    wide.causation.set_source_seq(UINT64_MAX);
    NewEvent newer = Ev(130, "n");
    // Field 15 (varint 1) is not in this build's Causation: kept as unknown and written back.
    ASSERT_TRUE(newer.causation.ParseFromString(std::string("\x22\x01r\x78\x01", 5)));
    ASSERT_FALSE(newer.causation.GetReflection()->GetUnknownFields(newer.causation).empty());
    commit({bare, wide, newer});
    clock_.SetMicros(0);  // recorded_at_us 0, and occurred_at_us 0 means now: both left out.
    commit({Ev(0, "zero-time")});
    auto report = log->Verify();
    ASSERT_TRUE(report.ok());
    EXPECT_TRUE(report->ok) << report->problem;
    auto read = log->Read(130, 1, 1);
    ASSERT_TRUE(read.ok());
    ASSERT_EQ(read->size(), 1u);
    EXPECT_EQ(Canonical((*read)[0]), Canonical(committed[2]));
  }
  ASSERT_EQ(committed.size(), 4u);
  EXPECT_EQ(committed[0].partition(), 0u);
  EXPECT_EQ(committed[0].occurred_at_us(), -5);
  EXPECT_EQ(committed[3].recorded_at_us(), 0);
  ExpectStoredAsCanonical(dir_.Sub("log"), committed);
}

// Commit writes records without protobuf (SerializeCanonicalTo in event_log.cc) and knows the
// fields below, in this order. A change to envelope.proto must be made there too, then here.
TEST_F(EventLogTest, EnvelopeHasTheFieldsCommitWrites) {
  const auto* d = Envelope::descriptor();
  std::vector<std::string> fields;
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    fields.push_back(std::to_string(f->number()) + " " + f->name() + " " + f->type_name() +
                     (f->is_repeated() ? " repeated" : "") + (f->has_presence() ? " presence" : ""));
  }
  const std::vector<std::string> want = {
      "1 event_id string",      "2 partition uint32",     "3 seq uint64",
      "4 aggregate_key string", "5 type string",          "6 occurred_at_us int64",
      "7 recorded_at_us int64", "8 actor string",         "9 causation message presence",
      "10 payload bytes",       "11 prev_hash bytes",     "12 hash bytes",
  };
  EXPECT_EQ(fields, want);
}

TEST_F(EventLogTest, ScanVisitsTheSameEventsAsRead) {
  auto log = OpenLog(2);
  WriteSet ws;
  for (int i = 0; i < 30; ++i) ws.Append(Ev(i % 2, "k" + std::to_string(i), std::to_string(i)));
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto read = log->Read(1, 4, 100);
  ASSERT_TRUE(read.ok());
  std::vector<std::string> scanned;
  ASSERT_TRUE(log->Scan(1, 4, 100, [&](const Envelope& e) {
    scanned.push_back(e.SerializeAsString());
    return true;
  }).ok());
  ASSERT_EQ(scanned.size(), read->size());
  for (size_t i = 0; i < scanned.size(); ++i) EXPECT_EQ(scanned[i], (*read)[i].SerializeAsString());
  size_t seen = 0;
  ASSERT_TRUE(log->Scan(0, 1, 100, [&](const Envelope&) { return ++seen < 3; }).ok());
  EXPECT_EQ(seen, 3u);
}

TEST_F(EventLogTest, StateDigestDependsOnlyOnState) {
  auto log = OpenLog();
  auto empty = log->StateDigest();
  ASSERT_TRUE(empty.ok());
  WriteSet ws;
  ws.PutState("a", "1");
  ws.PutState("b", "2");
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto d1 = log->StateDigest();
  EXPECT_NE(*d1, *empty);

  testing::TempDir other;
  Options o;
  o.path = other.Sub("log");
  o.name = "other";
  auto log2 = EventLog::Open(o);
  ASSERT_TRUE(log2.ok());
  WriteSet ws2;
  ws2.Append(Ev(0, "events-do-not-count"));
  ws2.PutState("b", "2");
  ws2.PutState("a", "1");
  ASSERT_TRUE((*log2)->Commit(std::move(ws2)).ok());
  EXPECT_EQ(*(*log2)->StateDigest(), *d1);
  // "a"+"12" vs "a1"+"2" must differ: lengths are part of the digest.
  WriteSet ws3;
  ws3.DeleteState("a");
  ws3.DeleteState("b");
  ws3.PutState("a1", "");
  ws3.PutState("b", "2");
  ASSERT_TRUE((*log2)->Commit(std::move(ws3)).ok());
  EXPECT_NE(*(*log2)->StateDigest(), *d1);
}

TEST_F(EventLogTest, ScanStateStartsAtFromAndDigestShowsWhatItDigests) {
  auto log = OpenLog();
  WriteSet ws;
  for (const char* k : {"a/1", "a/2", "a/3", "b/1"}) ws.PutState(k, std::string("v") + k);
  ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  auto keys = [&](std::string_view prefix, std::string_view from) {
    std::vector<std::string> out;
    EXPECT_TRUE(log->ScanState(prefix, [&](std::string_view k, std::string_view) {
      out.emplace_back(k);
      return true;
    }, from).ok());
    return out;
  };
  EXPECT_EQ(keys("a/", ""), (std::vector<std::string>{"a/1", "a/2", "a/3"}));
  EXPECT_EQ(keys("a/", std::string("a/1") + '\0'), (std::vector<std::string>{"a/2", "a/3"}));
  EXPECT_EQ(keys("a/", "a/3"), (std::vector<std::string>{"a/3"}));
  EXPECT_EQ(keys("a/", "a/4"), std::vector<std::string>{});
  EXPECT_EQ(keys("b/", "a/9"), std::vector<std::string>{"b/1"});  // A `from` before the prefix.
  std::vector<std::pair<std::string, std::string>> seen;
  auto digest = log->StateDigest([&](std::string_view k, std::string_view v) { seen.emplace_back(k, v); });
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(*digest, *log->StateDigest());
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[3], (std::pair<std::string, std::string>{"b/1", "vb/1"}));
}

TEST_F(EventLogTest, WaitForAppendWakesOnCommit) {
  auto log = OpenLog();
  EXPECT_FALSE(log->WaitForAppend(0, 0, std::chrono::milliseconds(1)));
  std::thread writer([&] {
    WriteSet ws;
    ws.Append(Ev(0, "k"));
    ASSERT_TRUE(log->Commit(std::move(ws)).ok());
  });
  EXPECT_TRUE(log->WaitForAppend(0, 0, std::chrono::seconds(30)));
  writer.join();
}

TEST_F(EventLogTest, ConcurrentCommittersKeepEveryPartitionGapFree) {
  auto log = OpenLog(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        WriteSet ws;
        ws.Append(Ev(static_cast<uint32_t>((t + i) % 4), "k"));
        ws.Append(Ev(static_cast<uint32_t>(i % 4), "k"));
        ASSERT_TRUE(log->Commit(std::move(ws)).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto report = log->Verify();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_EQ(report->events_checked, 400u);
}

}  // namespace
}  // namespace wattledger::eventlog
