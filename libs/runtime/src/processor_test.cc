#include "wattledger/runtime/processor.h"

#include <gtest/gtest.h>

#include <future>
#include <latch>
#include <stdexcept>

#include "wattledger/testing/temp_dir.h"

namespace wattledger::runtime {
namespace {

constexpr uint32_t kParts = 3;

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

  Status Reload(uint32_t p) override {
    reloads++;
    counts_[p].clear();
    return log_->ScanState("count/", [&](std::string_view k, std::string_view v) {
      std::string key(k.substr(6));
      if (PartitionForKey(key, kParts) == p) counts_[p][key] = std::stoll(std::string(v));
      return true;
    });
  }

  int reloads = 0;

 private:
  eventlog::EventLog* log_;
  std::vector<std::map<std::string, int64_t>> counts_;
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
    eventlog::NewEvent e;
    e.partition = p;
    e.type = "cmd";
    e.causation.set_request_id("K1");
    ws.Append(e);
    ws.Append(e);
    ws.ReturnEnvelopes();
    return [&](const Status& s, std::span<const eventlog::Envelope> events) {
      // The reply runs only after the write is in the store.
      EXPECT_EQ(log->Head(events.empty() ? 0 : events[0].partition()), events.empty() ? 0u : events.back().seq());
      done.set_value({s, {events.begin(), events.end()}});
    };
  }).ok());
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
    eventlog::NewEvent e;
    e.partition = p;
    e.type = "cmd";
    e.causation.set_request_id("K2");
    ws.Append(e);
    return [&](const Status& s, std::span<const eventlog::Envelope> events) { done.set_value({s, events.size()}); };
  }).ok());
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
  ASSERT_TRUE(proc.SubmitTo(0, blocker).ok());
  entered.wait();
  ASSERT_TRUE(proc.SubmitTo(0, noop).ok());
  ASSERT_TRUE(proc.SubmitTo(0, noop).ok());
  Status full = proc.SubmitTo(0, noop);
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("retry with backoff"), std::string::npos);
  EXPECT_TRUE(proc.SubmitTo(1, noop).ok()) << "other partitions are not affected";
  release.count_down();
  proc.Stop();
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
  }).ok());
  entered.wait();
  // These three land in one batch: the first's effects are discarded with the failed batch, the
  // second throws, the third has not run and must run in a later batch.
  std::promise<Status> first, third;
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/first", "1");
    return [&](const Status& s, auto) { first.set_value(s); };
  }).ok());
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet&) -> Reply { throw std::runtime_error("bad"); }).ok());
  ASSERT_TRUE(proc.SubmitTo(0, [&](uint32_t, eventlog::WriteSet& ws) -> Reply {
    ws.PutState("count/third", "1");
    return [&](const Status& s, auto) { third.set_value(s); };
  }).ok());
  release.count_down();
  Status s1 = first.get_future().get();
  EXPECT_EQ(s1.code(), StatusCode::kInternal);
  EXPECT_FALSE(log->GetState("count/first")->has_value());
  EXPECT_TRUE(third.get_future().get().ok());
  EXPECT_TRUE(log->GetState("count/third")->has_value());
  EXPECT_GE(h.reloads, 1);
  proc.Stop();
}

TEST_F(ProcessorTest, MessagesOfAFailedBatchAreRetriedAndPoisonIsSetAside) {
  auto log = Open("svc", "svc");
  Produce(30);
  Produce(1, "throw");
  Produce(30);
  CountingHandler h(log.get());
  Processor proc({"svc", {"src"}}, log.get(), bus_.get(), &h);
  ASSERT_TRUE(proc.Start().ok());
  WaitTotal(log.get(), 60);
  proc.Stop();
  EXPECT_GE(h.reloads, 3);
}

}  // namespace
}  // namespace wattledger::runtime
