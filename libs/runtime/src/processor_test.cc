#include "wattledger/runtime/processor.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <filesystem>
#include <future>
#include <latch>
#include <memory>
#include <stdexcept>

#include "wattledger/testing/temp_dir.h"

namespace wattledger::runtime {
namespace {

constexpr uint32_t kParts = 3;

// A command's event on partition p; a payload over kMaxPayloadBytes makes the log refuse it.
eventlog::NewEvent CommandEvent(uint32_t p, std::string request_id, size_t payload_bytes = 0) {
  eventlog::NewEvent e;
  e.partition = p;
  e.type = "cmd";
  e.payload = std::string(payload_bytes, 'x');
  e.causation.set_request_id(std::move(request_id));
  return e;
}

// Counts consumed events per aggregate key in state "count/<key>"; keeps a mirror in memory
// that Reload rebuilds from the store.
class CountingHandler : public Handler {
 public:
  explicit CountingHandler(eventlog::EventLog* log) : log_(log), counts_(kParts) {}

  void OnMessage(uint32_t p, const bus::Message& m, eventlog::WriteSet& ws) override {
    if (m.envelope.payload() == "throw") throw std::runtime_error("boom");
    int64_t& c = counts_[p][m.envelope.aggregate_key()];
    ++c;
    ws.PutState("count/" + m.envelope.aggregate_key(), std::to_string(c));
  }

  // Records the poison in state "poison/<event id>" = why, as a service records a rejection.
  void OnPoison(uint32_t p, const bus::Message& m, const Status& why, eventlog::WriteSet& ws) override {
    if (poison_throws) throw std::runtime_error("cannot record it either");
    {
      std::lock_guard lock(mu);
      poisoned.push_back(m.envelope.event_id());
    }
    ws.PutState("poison/" + m.envelope.event_id(), why.ToString());
  }

  Status Reload(uint32_t p) override {
    reloads++;
    counts_[p].clear();
    return log_->ScanState("count/", [&](std::string_view k, std::string_view v) {
      std::string key(k.substr(6));
      if (PartitionForKey(key, kParts) == p) counts_[p][key] = std::stoll(std::string(v));
      return true;
    });
  }

  // How many inputs were set aside so far, read under the lock the writer appends under.
  size_t PoisonedCount() {
    std::lock_guard lock(mu);
    return poisoned.size();
  }

  std::atomic<int> reloads = 0;
  bool poison_throws = false;
  std::mutex mu;
  std::vector<std::string> poisoned;  // Event ids passed to OnPoison. Under mu while a writer runs.

 private:
  eventlog::EventLog* log_;
  std::vector<std::map<std::string, int64_t>> counts_;
};

// While alive, every write of this process that would extend a file past `bytes` fails with
// EFBIG, as writes to a full disk fail: a real I/O error from the file system, underneath RocksDB.
// (RLIMIT_FSIZE; SIGXFSZ is ignored so that the write returns the error instead of killing us.)
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &old_), 0);
    rlimit limit = old_;
    limit.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  ~FileSizeLimit() {
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &old_), 0);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit old_{};
  void (*old_handler_)(int) = nullptr;
};

// The size of the largest file under `dir` that is (or is not) a RocksDB write-ahead log.
uint64_t LargestFileBytes(const std::string& dir, bool wal) {
  uint64_t bytes = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.is_regular_file() && (f.path().extension() == ".log") == wal) {
      bytes = std::max<uint64_t>(bytes, f.file_size());
    }
  }
  return bytes;
}

// Stands in for the process-stopping default of ProcessorOptions::on_fatal: records the first
// reason and how often it was asked to stop.
struct FatalCatcher {
  explicit FatalCatcher(ProcessorOptions& o) {
    o.on_fatal = [this](const Status& why) {
      if (calls++ == 0) first.set_value(why);
    };
  }
  std::future<Status> get_future() { return first.get_future(); }
  std::promise<Status> first;
  std::atomic<int> calls{0};
};

class ProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = Open("src", "src");
    bus_ = bus::NewLocalBus();
    ASSERT_TRUE(bus_->Publish("src", src_.get()).ok());
  }
  std::unique_ptr<eventlog::EventLog> Open(const std::string& dir, const std::string& name) {
    eventlog::Options o;
    o.path = dir_.Sub(dir);
    o.name = name;
    o.partitions = kParts;
    o.fsync = eventlog::FsyncPolicy::kNone;
    return std::move(eventlog::EventLog::Open(o)).value();
  }
  void Produce(int n, const std::string& payload = "x") {
    eventlog::WriteSet ws;
    for (int i = 0; i < n; ++i) {
      eventlog::NewEvent e;
      e.partition = static_cast<uint32_t>(i) % kParts;
      e.aggregate_key = "k" + std::to_string(i % 5);
      e.type = "t";
      e.payload = payload;
      e.causation.set_request_id("r");
      ws.Append(std::move(e));
    }
    ASSERT_TRUE(src_->Commit(std::move(ws)).ok());
  }
  int64_t Total(eventlog::EventLog* log) {
    int64_t total = 0;
    EXPECT_TRUE(log->ScanState("count/", [&](std::string_view, std::string_view v) {
      total += std::stoll(std::string(v));
      return true;
    }).ok());
    return total;
  }
  // Makes `log`'s WAL (in `dir`) by far the largest file of the test, so that a FileSizeLimit of
  // its size fails writes to it and to no other file (RocksDB asserts that its info LOG never
  // fails twice). Returns its size, or 0 (a failed expectation) if it is not the largest.
  uint64_t PadWal(eventlog::EventLog* log, const std::string& dir) {
    eventlog::WriteSet padding;
    padding.PutState("padding", std::string(4 << 20, 'p'));
    EXPECT_TRUE(log->Commit(std::move(padding)).ok());
    const uint64_t wal_bytes = LargestFileBytes(dir_.Sub(dir), /*wal=*/true);
    EXPECT_GT(wal_bytes, LargestFileBytes(dir_.path(), /*wal=*/false) + (1 << 20));
    return wal_bytes > LargestFileBytes(dir_.path(), /*wal=*/false) + (1 << 20) ? wal_bytes : 0;
  }
  // Holds partition p's writer inside a command until the returned latch is counted down, so
  // that what is submitted meanwhile runs as one batch. Keep the latch until the processor stops.
  static std::unique_ptr<std::latch> HoldWriter(Processor& proc, uint32_t p) {
    auto release = std::make_unique<std::latch>(1);
    std::latch entered(1);
    EXPECT_TRUE(proc.SubmitTo(p, [&entered, r = release.get()](uint32_t, eventlog::WriteSet&) -> Reply {
      entered.count_down();
      r->wait();
      return nullptr;
    }, nullptr).ok());
    entered.wait();
    return release;
  }
  // Waits (bounded) until the consumer applied `n` events in total.
  void WaitTotal(eventlog::EventLog* log, int64_t n) {
    for (int i = 0; i < 3000 && Total(log) < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(Total(log), n);
  }

  testing::TempDir dir_;
  std::unique_ptr<eventlog::EventLog> src_;
  std::unique_ptr<bus::Bus> bus_;
};

TEST_F(ProcessorTest, RepliesAfterCommitWithTheCommandsEvents) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  std::promise<std::pair<Status, std::vector<eventlog::Envelope>>> done;
  ASSERT_TRUE(proc.Submit("acct-1", [&](uint32_t p, eventlog::WriteSet& ws) -> Reply {
    EXPECT_EQ(p, PartitionForKey("acct-1", kParts));
    ws.Append(CommandEvent(p, "K1"));
    ws.Append(CommandEvent(p, "K1"));
    ws.ReturnEnvelopes();
    return [&](const Status& s, std::span<const eventlog::Envelope> events) {
      // The reply runs only after the write is in the store.
      EXPECT_EQ(log->Head(events.empty() ? 0 : events[0].partition()), events.empty() ? 0u : events.back().seq());
      done.set_value({s, {events.begin(), events.end()}});
    };
  }, nullptr).ok());
  auto [status, events] = done.get_future().get();
  EXPECT_TRUE(status.ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].seq(), 2u);
  proc.Stop();
}

TEST_F(ProcessorTest, RepliesCarryNoEventsUnlessACommandAskedForThem) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  std::promise<std::pair<Status, size_t>> done;
  ASSERT_TRUE(proc.SubmitTo(1, [&](uint32_t p, eventlog::WriteSet& ws) -> Reply {
    ws.Append(CommandEvent(p, "K2"));
    return [&](const Status& s, std::span<const eventlog::Envelope> events) { done.set_value({s, events.size()}); };
  }, nullptr).ok());
  auto [status, events] = done.get_future().get();
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(events, 0u);
  EXPECT_EQ(log->Head(1), 1u);  // Committed all the same.
  proc.Stop();
}

TEST_F(ProcessorTest, ConsumesExactlyOnceAcrossRestarts) {
  auto log = Open("svc", "svc");
  Produce(300);
  {
    CountingHandler h(log.get());
    Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
    ASSERT_TRUE(proc.Start().ok());
    WaitTotal(log.get(), 300);
    proc.Stop();
  }
  Produce(90);
  for (int round = 0; round < 3; ++round) {
    CountingHandler h(log.get());
    for (uint32_t p = 0; p < kParts; ++p) ASSERT_TRUE(h.Reload(p).ok());
    Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
    ASSERT_TRUE(proc.Start().ok());
    WaitTotal(log.get(), 390);
    proc.Stop();
  }
  EXPECT_EQ(Total(log.get()), 390);
}

TEST_F(ProcessorTest, EveryWriterStoresPositionsEvenForSourcesItGetsNothingFrom) {
  auto log = Open("svc", "svc");
  // One aggregate key: every message goes to one writer; the others get nothing of it.
  eventlog::WriteSet ws;
  for (int i = 0; i < 30; ++i) {
    eventlog::NewEvent e;
    e.partition = static_cast<uint32_t>(i) % kParts;
    e.aggregate_key = "only";
    e.type = "t";
    e.causation.set_request_id("r");
    ws.Append(std::move(e));
  }
  ASSERT_TRUE(src_->Commit(std::move(ws)).ok());
  CountingHandler h(log.get());
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  WaitTotal(log.get(), 30);
  // The restart position of the topic is the lowest over writers: all must reach the heads.
  auto lowest = [&](uint32_t sp) {
    uint64_t low = UINT64_MAX;
    for (uint32_t p = 0; p < kParts; ++p) {
      auto pos = log->GetPosition("svc<src#" + std::to_string(p), sp);
      low = std::min<uint64_t>(low, pos.ok() && pos->has_value() ? (*pos)->seq : 0);
    }
    return low;
  };
  for (int i = 0; i < 3000 && (lowest(0) < 10 || lowest(1) < 10 || lowest(2) < 10); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (uint32_t sp = 0; sp < kParts; ++sp) EXPECT_EQ(lowest(sp), src_->Head(sp)) << "source partition " << sp;
  proc.Stop();
}

TEST_F(ProcessorTest, FullQueueAnswersResourceExhausted) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  ProcessorOptions o{"svc", {}};
  o.queue_capacity = 2;
  Processor proc(o, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  std::latch release(1);
  std::latch entered(1);
  auto blocker = [&](uint32_t, eventlog::WriteSet&) -> Reply {
    entered.count_down();
    release.wait();
    return nullptr;
  };
  auto noop = [](uint32_t, eventlog::WriteSet&) -> Reply { return nullptr; };
  ASSERT_TRUE(proc.SubmitTo(0, blocker, nullptr).ok());
  entered.wait();
  ASSERT_TRUE(proc.SubmitTo(0, noop, nullptr).ok());
  ASSERT_TRUE(proc.SubmitTo(0, noop, nullptr).ok());
  Status full = proc.SubmitTo(0, noop, nullptr);
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("retry with backoff"), std::string::npos);
  EXPECT_TRUE(proc.SubmitTo(1, noop, nullptr).ok()) << "other partitions are not affected";
  release.count_down();
  proc.Stop();
}

// A command's hint reaches Handler::Prefetch on its writer twice before its turn: while the
// command two before it runs, then the one just before it. One without a hint is not announced.
TEST_F(ProcessorTest, EachCommandsHintIsPrefetchedWhileTheOneBeforeItRuns) {
  auto log = Open("svc", "svc");
  struct Recorder : CountingHandler {
    using CountingHandler::CountingHandler;
    void Prefetch(uint32_t p, const void* hint, int ahead) override {
      std::lock_guard lock(mu);
      trace.push_back("prefetch " + std::to_string(p) + " " + *static_cast<const std::string*>(hint) + " " +
                      std::to_string(ahead));
    }
    void Ran(const std::string& what) {
      std::lock_guard lock(mu);
      trace.push_back("run " + what);
    }
    std::vector<std::string> trace;
  } h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  auto release = HoldWriter(proc, 1);
  // Queued behind the blocker: they run as one batch, a, b (no hint), c.
  const std::string a = "a", c = "c";
  std::promise<void> all_ran;
  auto command = [&](const std::string& name) {
    return [&, name](uint32_t, eventlog::WriteSet&) -> Reply {
      h.Ran(name);
      if (name == "c") all_ran.set_value();
      return nullptr;
    };
  };
  ASSERT_TRUE(proc.SubmitTo(1, command("a"), nullptr, &a).ok());
  ASSERT_TRUE(proc.SubmitTo(1, command("b"), nullptr).ok());
  ASSERT_TRUE(proc.SubmitTo(1, command("c"), nullptr, &c).ok());
  release->count_down();
  all_ran.get_future().wait();
  proc.Stop();
  EXPECT_EQ(h.trace, (std::vector<std::string>{"prefetch 1 c 2", "run a", "prefetch 1 c 1", "run b", "run c"}));
}

// Handler::BeforeBatch comes once per batch, on its partition's writer, before the batch's first
// input runs: three commands queued together are one batch and one call, a later one another.
TEST_F(ProcessorTest, BeforeBatchComesOnceBeforeEachBatch) {
  auto log = Open("svc", "svc");
  struct Recorder : CountingHandler {
    using CountingHandler::CountingHandler;
    void BeforeBatch(uint32_t p) override { Add("batch " + std::to_string(p)); }
    void Add(const std::string& what) {
      std::lock_guard lock(mu);
      trace.push_back(what);
    }
    std::vector<std::string> trace;
  } h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  auto release = HoldWriter(proc, 1);
  auto command = [&](const std::string& name, std::promise<void>* ran) {
    return [&h, name, ran](uint32_t, eventlog::WriteSet&) -> Reply {
      h.Add("run " + name);
      if (ran != nullptr) ran->set_value();
      return nullptr;
    };
  };
  std::promise<void> c_ran, d_ran;
  ASSERT_TRUE(proc.SubmitTo(1, command("a", nullptr), nullptr).ok());
  ASSERT_TRUE(proc.SubmitTo(1, command("b", nullptr), nullptr).ok());
  ASSERT_TRUE(proc.SubmitTo(1, command("c", &c_ran), nullptr).ok());
  release->count_down();
  c_ran.get_future().wait();
  ASSERT_TRUE(proc.SubmitTo(1, command("d", &d_ran), nullptr).ok());
  d_ran.get_future().wait();
  proc.Stop();
  // The first batch is HoldWriter's.
  EXPECT_EQ(h.trace, (std::vector<std::string>{"batch 1", "batch 1", "run a", "run b", "run c", "batch 1", "run d"}));
}

TEST_F(ProcessorTest, ThrowingCommandFailsOnlyWhatRanAndTheRestStillRuns) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  std::latch release(1), entered(1);
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet&) -> Reply {
    entered.count_down();
    release.wait();
    return nullptr;
  }, nullptr).ok());
  entered.wait();
  // These three land in one batch: the first's effects are discarded with the failed batch, the
  // second throws, the third has not run and must run in a later batch.
  std::promise<Status> first, second, third;
  auto unexpected = [](const Status& s) { ADD_FAILURE() << "on_failure despite a Reply: " << s.ToString(); };
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/first", "1");
    return [&](const Status& s, auto) { first.set_value(s); };
  }, unexpected).ok());
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet&) -> Reply { throw std::runtime_error("bad"); },
                            [&](const Status& s) { second.set_value(s); }).ok());
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/third", "1");
    return [&](const Status& s, auto) { third.set_value(s); };
  }, unexpected).ok());
  release.count_down();
  // The command that threw is answered at once, with what happened, not left to its deadline.
  auto thrown = second.get_future();
  ASSERT_EQ(thrown.wait_for(std::chrono::seconds(10)), std::future_status::ready) << "no answer";
  Status s2 = thrown.get();
  EXPECT_EQ(s2.code(), StatusCode::kInternal);
  EXPECT_EQ(s2.message(), "handler threw: bad");
  Status s1 = first.get_future().get();
  EXPECT_EQ(s1.code(), StatusCode::kInternal);
  EXPECT_FALSE(log->GetState("count/first")->has_value());
  EXPECT_TRUE(third.get_future().get().ok());
  EXPECT_TRUE(log->GetState("count/third")->has_value());
  EXPECT_GE(h.reloads, 1);
  proc.Stop();
}

TEST_F(ProcessorTest, MessagesOfAFailedBatchAreRetriedAndPoisonIsSetAsideOnTheRecord) {
  auto log = Open("svc", "svc");
  Produce(30);
  Produce(1, "throw");  // src/0/11
  Produce(30);
  CountingHandler h(log.get());
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  WaitTotal(log.get(), 60);
  // The handler recorded the poison, with why, in the commit that passed over it.
  auto recorded = [&] { return log->GetState("poison/src/0/11")->value_or(""); };
  for (int i = 0; i < 3000 && recorded().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(recorded(), "INTERNAL: handler threw: boom");
  proc.Stop();
  EXPECT_EQ(h.poisoned, std::vector<std::string>{"src/0/11"});
  EXPECT_GE(h.reloads, 3);
  const uint32_t writer = PartitionForKey("k0", kParts);  // Produce(1, ...) keys its event "k0".
  auto pos = log->GetPosition("svc<src#" + std::to_string(writer), 0);
  ASSERT_TRUE(pos.ok() && pos->has_value());
  EXPECT_GE((*pos)->seq, 11u) << "the position passes over the poison";
}

TEST_F(ProcessorTest, PoisonWhoseRecordingThrowsIsStillPassedOver) {
  auto log = Open("svc", "svc");
  Produce(30);
  Produce(1, "throw");
  Produce(30);
  CountingHandler h(log.get());
  h.poison_throws = true;
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  WaitTotal(log.get(), 60);
  proc.Stop();
  EXPECT_EQ(h.reloads, 4) << "three failures of OnMessage and one of OnPoison, then no more";
  EXPECT_FALSE(log->GetState("poison/src/0/11")->has_value());
}

// Counts like CountingHandler, but for the message with payload "refused" also appends an event
// whose aggregate key is not UTF-8, which EventLog::Commit refuses with the whole batch. Nothing
// throws: only the log's answer tells that input apart.
class RefusedEffectsHandler : public CountingHandler {
 public:
  RefusedEffectsHandler(eventlog::EventLog* log, int messages) : CountingHandler(log), messages_(messages) {}
  void OnMessage(uint32_t p, const bus::Message& m, eventlog::WriteSet& ws) override {
    CountingHandler::OnMessage(p, m, ws);
    if (m.envelope.payload() != "refused") return;
    eventlog::NewEvent e;
    e.partition = p;
    e.aggregate_key = "k\xff\xfe";
    e.type = "t";
    e.causation.set_request_id("r");
    ws.Append(std::move(e));
  }
  uint32_t Route(const bus::Message& m, uint32_t partitions) override {
    if (++routed_ == messages_) all_routed.set_value();
    return Handler::Route(m, partitions);
  }
  std::promise<void> all_routed;  // Set once the consumer routed `messages` messages.

 private:
  const int messages_;
  std::atomic<int> routed_ = 0;
};

TEST_F(ProcessorTest, TheInputWhoseEffectsTheLogRefusesIsBlamedAndTheRestApplyOnce) {
  auto log = Open("svc", "svc");
  Produce(30);
  Produce(1, "refused");  // src/0/11, key "k0".
  Produce(30);
  RefusedEffectsHandler h(log.get(), 61);
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  // Holds the writer of "k0" until every message is routed, so that the refused one is first
  // applied in a batch with others (messages of "k0" follow it) and has to be found in it.
  const uint32_t writer = PartitionForKey("k0", kParts);
  auto routed = h.all_routed.get_future();
  ASSERT_TRUE(proc.SubmitTo(writer, [&](uint32_t, eventlog::WriteSet&) -> Reply {
    EXPECT_EQ(routed.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return nullptr;
  }, nullptr).ok());
  ASSERT_TRUE(proc.Start().ok());
  auto recorded = [&] { return log->GetState("poison/src/0/11")->value_or(""); };
  for (int i = 0; i < 3000 && (recorded().empty() || Total(log.get()) < 60); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (recorded().empty()) {
    // The writer retries the refused batch forever and Stop() would never return: end here.
    ADD_FAILURE() << "a batch the log refuses must not be retried forever";
    std::filesystem::remove_all(dir_.path());
    std::_Exit(1);
  }
  proc.Stop();
  // Every other message is applied exactly once, the refused one not at all, and it is on the
  // record with the log's reason.
  EXPECT_EQ(Total(log.get()), 60);
  EXPECT_EQ(h.poisoned, std::vector<std::string>{"src/0/11"});
  EXPECT_EQ(recorded(),
            "INVALID_ARGUMENT: event field aggregate_key is not valid UTF-8; text fields must be, bytes belong "
            "in the payload");
  for (uint32_t p = 0; p < kParts; ++p) EXPECT_EQ(log->Head(p), 0u) << "no refused event was stored";
  auto pos = log->GetPosition("svc<src#" + std::to_string(writer), 0);
  ASSERT_TRUE(pos.ok() && pos->has_value());
  EXPECT_GE((*pos)->seq, 11u) << "the position passes over the refused message";
  // Refused: at least one batch with others, then the message alone three times. The search
  // halves the batch each time, so it takes a handful of refusals, not one per input.
  EXPECT_GE(h.reloads, 4);
  EXPECT_LE(h.reloads, 20);
}

// A log that refuses every commit (here: read-only) leaves no input to blame once the inputs are
// set aside: that stops the process, as a broken store does, instead of spinning.
TEST_F(ProcessorTest, ALogThatRefusesEvenPositionsStopsTheProcess) {
  Open("svc", "svc").reset();  // Created, then opened read-only below.
  eventlog::Options ro;
  ro.path = dir_.Sub("svc");
  ro.read_only = true;
  ro.partitions = 0;
  auto log = std::move(eventlog::EventLog::Open(ro)).value();
  Produce(3);
  CountingHandler h(log.get());
  ProcessorOptions o{"svc", {"src"}};
  FatalCatcher fatal(o);
  Processor proc(o, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  auto got = fatal.get_future();
  if (got.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    ADD_FAILURE() << "a log that refuses every commit must stop the process, not be retried";
    std::filesystem::remove_all(dir_.path());
    std::_Exit(1);
  }
  EXPECT_EQ(got.get().code(), StatusCode::kFailedPrecondition);
  proc.Stop();
  EXPECT_EQ(fatal.calls, 1);
}

TEST_F(ProcessorTest, ACommandWhoseEffectsTheLogRefusesIsAnsweredWithTheRefusal) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  Processor proc({"svc", {}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  std::atomic<int> runs{0};
  std::promise<Status> answer;
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t p, eventlog::WriteSet& ws) -> Reply {
    runs++;
    ws.Append(CommandEvent(p, "K1", eventlog::kMaxPayloadBytes + 1));
    return [&](const Status& s, auto) { answer.set_value(s); };
  }, [](const Status& s) { ADD_FAILURE() << "on_failure despite a Reply: " << s.ToString(); }).ok());
  auto got = answer.get_future();
  ASSERT_EQ(got.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Status s = got.get();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("exceeds"), std::string::npos) << s.ToString();
  // The partition goes on: the next command commits.
  std::promise<Status> next;
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/next", "1");
    return [&](const Status& s, auto) { next.set_value(s); };
  }, nullptr).ok());
  EXPECT_TRUE(next.get_future().get().ok());
  proc.Stop();
  EXPECT_EQ(runs, 1) << "a refused command is answered, not run again";
  EXPECT_EQ(log->Head(0), 0u);
}

// The writer builds batch k+1 while batch k commits. If the log refuses k, k+1 was built on k's
// effects: it is undone with it. Its messages are applied again, once; its commands, which ran,
// are answered (their callers retry), and nothing of it is stored.
TEST_F(ProcessorTest, ABatchBuiltWhileTheOneBeforeItCommitsIsUndoneWithItWhenThatOneIsRefused) {
  class Routed : public CountingHandler {
   public:
    using CountingHandler::CountingHandler;
    uint32_t Route(const bus::Message& m, uint32_t partitions) override {
      const uint32_t p = Handler::Route(m, partitions);
      if (p == writer && ++routed_ == expected) all_routed.set_value();
      return p;
    }
    uint32_t writer = 0;
    int expected = 0;
    std::promise<void> all_routed;

   private:
    std::atomic<int> routed_ = 0;
  };
  auto log = Open("svc", "svc");
  Routed h(log.get());
  h.writer = PartitionForKey("k0", kParts);
  for (int i = 0; i < 10; ++i) h.expected += PartitionForKey("k" + std::to_string(i % 5), kParts) == h.writer;
  ProcessorOptions o{"svc", {"src"}};
  o.overlap_backlog = 1;  // Any input queued during a commit is built meanwhile.
  Processor proc(o, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  const uint32_t w = h.writer;
  // Batch 1 commits. Its command holds the writer until batch 2's is queued behind it.
  std::latch first_ran(1), release_first(1);
  ASSERT_TRUE(proc.SubmitTo(w, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    first_ran.count_down();
    release_first.wait();
    ws.PutState("first", "1");
    return nullptr;
  }, nullptr).ok());
  first_ran.wait();
  // Batch 2: one event, which the log refuses (too large). Its command holds the writer until
  // batch 3's inputs are queued, so that they are there when batch 2 has been handed over.
  std::latch refused_ran(1), release(1);
  std::promise<Status> refused;
  ASSERT_TRUE(proc.SubmitTo(w, [&](uint32_t p, eventlog::WriteSet& ws) -> Reply {
    refused_ran.count_down();
    release.wait();
    ws.Append(CommandEvent(p, "big", eventlog::kMaxPayloadBytes + 1));
    return [&](const Status& s, auto) { refused.set_value(s); };
  }, nullptr).ok());
  release_first.count_down();
  refused_ran.wait();
  // Batch 3: consumed messages, then a command with an event and a state write.
  auto routed = h.all_routed.get_future();
  Produce(10);
  ASSERT_EQ(routed.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  std::atomic<int> third_runs{0};
  std::atomic<uint64_t> third_head{UINT64_MAX};
  std::promise<Status> third;
  ASSERT_TRUE(proc.SubmitTo(w, [&](uint32_t p, eventlog::WriteSet& ws) -> Reply {
    third_runs++;
    third_head = ws.head();
    ws.Append(CommandEvent(p, "third"));
    ws.PutState("third", "1");
    return [&](const Status& s, auto) { third.set_value(s); };
  }, nullptr).ok());
  release.count_down();

  auto refusal = refused.get_future();
  ASSERT_EQ(refusal.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(refusal.get().code(), StatusCode::kInvalidArgument);
  auto undone = third.get_future();
  ASSERT_EQ(undone.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Status s = undone.get();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("the batch before it failed"), std::string::npos) << s.ToString();
  EXPECT_EQ(third_head.load(), 1u) << "batch 3 was built with batch 2's event counted in the head";
  WaitTotal(log.get(), 10);
  proc.Stop();
  EXPECT_EQ(Total(log.get()), 10) << "each message applied once";
  EXPECT_EQ(third_runs.load(), 1) << "a command that ran is answered, not run again";
  EXPECT_FALSE(log->GetState("third")->has_value());
  EXPECT_TRUE(log->GetState("first")->has_value());
  EXPECT_EQ(log->Head(w), 0u) << "neither batch's event is stored";
  EXPECT_GE(h.reloads.load(), 1);
}

// A batch is built while the one before it commits only if overlap is on and at least
// overlap_backlog inputs are queued; else each batch is committed and answered before the next
// is taken.
TEST_F(ProcessorTest, ABatchIsBuiltDuringTheLastOnesCommitOnlyWhenABacklogIsWaiting) {
  struct Case {
    bool overlap;
    size_t backlog;
    bool built_during_commit;
  };
  for (Case c : {Case{false, 1, false}, Case{true, 1, true}, Case{true, 2, false}}) {
    SCOPED_TRACE("overlap " + std::to_string(c.overlap) + ", backlog " + std::to_string(c.backlog));
    auto log = Open("svc" + std::to_string(c.overlap) + std::to_string(c.backlog), "svc");
    CountingHandler h(log.get());
    ProcessorOptions o{"svc", {}};
    o.overlap_commits = c.overlap;
    o.overlap_backlog = c.backlog;
    Processor proc(o, log.get(), bus_.get(), &h);
    ASSERT_TRUE(proc.Start().ok());
    std::latch first_ran(1), release(1);
    std::promise<void> first_answered, second_started;
    auto answered = first_answered.get_future();
    auto started = second_started.get_future();
    ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
      first_ran.count_down();
      release.wait();  // Until the second command is queued.
      ws.PutState("first", "1");
      return [&, c](const Status&, auto) {
        // Where the second batch is built during this commit, it starts while this Reply waits
        // for it; where not, it cannot, and the wait runs out.
        started.wait_for(c.built_during_commit ? std::chrono::seconds(30) : std::chrono::milliseconds(200));
        first_answered.set_value();
      };
    }, nullptr).ok());
    first_ran.wait();  // The second command goes into the next batch, the only input queued.
    std::atomic<bool> second_ran_before_first_answer{false};
    std::promise<Status> second;
    ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
      second_ran_before_first_answer = answered.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
      second_started.set_value();
      ws.PutState("second", "1");
      return [&](const Status& s, auto) { second.set_value(s); };
    }, nullptr).ok());
    release.count_down();
    auto second_done = second.get_future();
    ASSERT_EQ(second_done.wait_for(std::chrono::seconds(60)), std::future_status::ready);
    EXPECT_TRUE(second_done.get().ok());
    proc.Stop();
    EXPECT_EQ(second_ran_before_first_answer.load(), c.built_during_commit);
    EXPECT_TRUE(log->GetState("second")->has_value());
  }
}

TEST_F(ProcessorTest, AStoreThatFailsWritesStopsTheProcessInsteadOfRetrying) {
  auto log = Open("svc", "svc");
  Produce(30);  // Before the disk fills: only the consumer's own log fails below.
  CountingHandler h(log.get());
  ProcessorOptions o{"svc", {"src"}};
  FatalCatcher fatal(o);
  Processor proc(o, log.get(), bus_.get(), &h);
  const uint64_t wal_bytes = PadWal(log.get(), "svc");
  ASSERT_GT(wal_bytes, 0u);
  // Queued before the start, so it is in a batch that fails, whichever fails first.
  std::promise<Status> answer;
  ASSERT_TRUE(proc.SubmitTo(1, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/cmd", "1");
    return [&](const Status& s, auto) { answer.set_value(s); };
  }, [&](const Status& s) { answer.set_value(s); }).ok());
  {
    // The WAL can grow by nothing: the first commit of the consumed messages fails with an I/O
    // error, as on a full or failing disk, and RocksDB refuses writes from then on.
    FileSizeLimit disk_full(wal_bytes);
    ASSERT_TRUE(proc.Start().ok());
    if (fatal.get_future().wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      // The writers retry forever and Stop() would never return: end here, not at the timeout.
      ADD_FAILURE() << "a broken store must stop the process, not be retried";
      std::filesystem::remove_all(dir_.path());
      std::_Exit(1);
    }
  }
  auto got = answer.get_future();
  ASSERT_EQ(got.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(got.get().code(), StatusCode::kUnavailable);
  EXPECT_EQ(proc.SubmitTo(0, [](uint32_t, eventlog::WriteSet&) -> Reply { return nullptr; }, nullptr).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(h.reloads, 0) << "state was reloaded from a broken store to retry";
  proc.Stop();
  EXPECT_EQ(fatal.calls, 1);
  // The restarted process finds the store as of its last good write, and consumes again.
  log.reset();
  log = Open("svc", "svc");
  EXPECT_EQ(Total(log.get()), 0);
  CountingHandler again(log.get());
  Processor restarted({"svc", {"src"}}, log.get(), bus_.get(), &again);
  ASSERT_TRUE(restarted.Start().ok());
  WaitTotal(log.get(), 30);
  restarted.Stop();
}

// An idle writer whose commit the store fails (I/O error) stops the process as a batch's would,
// rather than reloading its partition's state from that store every idle turn (it did: for the
// ledger, a fold of the partition every 200 ms, and no stop until some input came).
TEST_F(ProcessorTest, AStoreThatFailsAnIdleCommitStopsTheProcess) {
  class Ticking : public CountingHandler {
   public:
    using CountingHandler::CountingHandler;
    void OnIdle(uint32_t p, eventlog::WriteSet& ws) override { ws.PutState("idle/" + std::to_string(p), "due"); }
  };
  auto log = Open("svc", "svc");
  Ticking h(log.get());
  ProcessorOptions o{"svc", {}};
  FatalCatcher fatal(o);
  Processor proc(o, log.get(), bus_.get(), &h);
  const uint64_t wal_bytes = PadWal(log.get(), "svc");
  ASSERT_GT(wal_bytes, 0u);
  {
    FileSizeLimit disk_full(wal_bytes);
    ASSERT_TRUE(proc.Start().ok());
    ASSERT_EQ(fatal.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready)
        << "a broken store must stop the process, not be retried";
  }
  EXPECT_EQ(h.reloads, 0) << "state was reloaded from a broken store to retry";
  EXPECT_EQ(proc.SubmitTo(0, [](uint32_t, eventlog::WriteSet&) -> Reply { return nullptr; }, nullptr).code(),
            StatusCode::kUnavailable);
  proc.Stop();
  EXPECT_EQ(fatal.calls, 1);
}

// The store fails the commit of batch k on the committer while batch k+1 is built: both are
// answered UNAVAILABLE (each command once, by its Reply), the process is asked to stop once, and
// nothing of either is stored or reloaded.
TEST_F(ProcessorTest, AStoreThatFailsWhileTheNextBatchIsBuiltAnswersBothBatchesAndStops) {
  auto log = Open("svc", "svc");
  CountingHandler h(log.get());
  ProcessorOptions o{"svc", {}};
  o.overlap_backlog = 1;
  FatalCatcher fatal(o);
  Processor proc(o, log.get(), bus_.get(), &h);
  const uint64_t wal_bytes = PadWal(log.get(), "svc");
  ASSERT_GT(wal_bytes, 0u);
  ASSERT_TRUE(proc.Start().ok());
  auto unexpected = [](const Status& s) { ADD_FAILURE() << "on_failure despite a Reply: " << s.ToString(); };
  std::latch first_ran(1), release(1);
  std::promise<Status> first, second;
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    first_ran.count_down();
    release.wait();  // Until the second command is queued: batch 1 goes to the committer.
    ws.PutState("count/first", "1");
    return [&](const Status& s, auto) { first.set_value(s); };
  }, unexpected).ok());
  first_ran.wait();
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/second", "1");
    return [&](const Status& s, auto) { second.set_value(s); };
  }, unexpected).ok());
  {
    FileSizeLimit disk_full(wal_bytes);
    release.count_down();
    if (fatal.get_future().wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "a broken store must stop the process";
      std::filesystem::remove_all(dir_.path());
      std::_Exit(1);
    }
  }
  auto got_first = first.get_future();
  auto got_second = second.get_future();
  ASSERT_EQ(got_first.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ASSERT_EQ(got_second.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  Status s1 = got_first.get(), s2 = got_second.get();
  EXPECT_EQ(s1.code(), StatusCode::kUnavailable);
  // Not "not recorded": a store that wrote its WAL and failed only to sync it recovers the batch
  // when it is opened again.
  EXPECT_NE(s1.message().find("could not make this durable and is stopping; it may or may not have been recorded"),
            std::string::npos)
      << s1.ToString();
  EXPECT_EQ(s2.code(), StatusCode::kUnavailable);
  EXPECT_NE(s2.message().find("stopping after a store failure"), std::string::npos) << s2.ToString();
  proc.Stop();
  EXPECT_EQ(fatal.calls, 1);
  EXPECT_EQ(h.reloads, 0) << "state was reloaded from a broken store";
  log.reset();
  log = Open("svc", "svc");
  EXPECT_FALSE(log->GetState("count/first")->has_value());
  EXPECT_FALSE(log->GetState("count/second")->has_value());
}

TEST_F(ProcessorTest, EachWriterCommitsWhatItOwesWhenStopped) {
  class Deferring : public CountingHandler {
   public:
    using CountingHandler::CountingHandler;
    void BeforeStop(uint32_t p, eventlog::WriteSet& ws) override {
      if (p != 1) ws.PutState("stopped/" + std::to_string(p), "yes");  // Partition 1 owes nothing.
    }
  };
  auto sink = Open("sink", "sink");
  Deferring handler(sink.get());
  Processor proc({"sink", {"src"}}, sink.get(), bus_.get(), &handler);
  ASSERT_TRUE(proc.Start().ok());
  EXPECT_FALSE(sink->GetState("stopped/0")->has_value());
  const uint64_t commits = sink->CommitCount();
  proc.Stop();
  EXPECT_EQ(sink->CommitCount(), commits + 2);  // An empty WriteSet is not committed.
  EXPECT_EQ(**sink->GetState("stopped/0"), "yes");
  EXPECT_FALSE(sink->GetState("stopped/1")->has_value());
  EXPECT_EQ(**sink->GetState("stopped/2"), "yes");
}

TEST_F(ProcessorTest, AnIdleWriterCommitsWhatItsHandlerFindsDue) {
  class Ticking : public CountingHandler {
   public:
    using CountingHandler::CountingHandler;
    void OnIdle(uint32_t p, eventlog::WriteSet& ws) override {
      if (p == 0 && idle_turns++ == 2) ws.PutState("due", "written");  // Due on the third turn.
    }
    std::atomic<int> idle_turns{0};
  };
  auto sink = Open("sink", "sink");
  Ticking handler(sink.get());
  Processor proc({"sink", {"src"}}, sink.get(), bus_.get(), &handler);
  ASSERT_TRUE(proc.Start().ok());
  bool written = false;
  for (int i = 0; i < 500 && !written; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    auto v = sink->GetState("due");
    written = v.ok() && v->has_value();
  }
  EXPECT_TRUE(written);
  EXPECT_GE(handler.idle_turns.load(), 3);
  proc.Stop();
}

TEST(FailStopDeathTest, LogsWhyAndAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // RocksDB's thread pool outlives other tests.
  EXPECT_DEATH(FailStop(Unavailable("commit to event log: IO error: disk on fire")), "disk on fire");
}

// BeforeCommit runs once per committed batch, after its inputs and inside its commit, and never
// for a batch that is undone.
TEST_F(ProcessorTest, BeforeCommitRunsOncePerCommittedBatchInsideItsCommit) {
  class BatchHandler : public CountingHandler {
   public:
    using CountingHandler::CountingHandler;
    void BeforeCommit(uint32_t p, eventlog::WriteSet& ws) override {
      calls++;
      ws.PutState("before/" + std::to_string(p), std::to_string(calls.load()));
    }
    std::atomic<int> calls = 0;
  };
  auto log = Open("svc", "svc");
  BatchHandler h(log.get());
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  Produce(30);
  WaitTotal(log.get(), 30);
  Produce(1, "throw");  // Fails three batches, then is set aside.
  for (int i = 0; i < 3000 && h.PoisonedCount() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  proc.Stop();
  ASSERT_EQ(h.poisoned.size(), 1u);
  EXPECT_EQ(h.reloads.load(), 3);
  // Every batch writes state (counts, positions), so each committed batch is one commit.
  EXPECT_EQ(static_cast<uint64_t>(h.calls.load()), log->stats().commits);
  int stored = 0;
  ASSERT_TRUE(log->ScanState("before/", [&](std::string_view, std::string_view) {
    stored++;
    return true;
  }).ok());
  EXPECT_GT(stored, 0);
}

}  // namespace
}  // namespace wattledger::runtime
