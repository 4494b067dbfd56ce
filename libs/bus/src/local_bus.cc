// The embedded bus: consumers tail the producer's EventLog in the same process. Nothing is
// copied to an outbox; the log is the topic.
#include <map>
#include <mutex>
#include <thread>

#include "wattledger/base/log.h"
#include "wattledger/bus/bus.h"

namespace wattledger::bus {
namespace {

constexpr size_t kReadChunk = 1024;

class LocalConsumer final : public Consumer {
 public:
  LocalConsumer(std::string topic, const eventlog::EventLog* log, const StartPositionFn& start)
      : topic_(std::move(topic)), log_(log) {
    tracker_.Reset(log_->partitions(), start);
  }

  uint32_t partitions() const override { return log_->partitions(); }

  Result<std::vector<Message>> Poll(size_t max, std::chrono::milliseconds timeout) override {
    std::vector<Message> out;
    const uint64_t commits = log_->CommitCount();
    WL_RETURN_IF_ERROR(Drain(max, &out));
    if (out.empty() && log_->WaitForCommit(commits, timeout)) {
      WL_RETURN_IF_ERROR(Drain(max, &out));
    }
    return out;
  }

  ConsumerStats stats() const override {
    std::lock_guard lock(mu_);
    ConsumerStats s = stats_;
    s.lag = 0;
    for (uint32_t p = 0; p < log_->partitions(); ++p) {
      s.lag += static_cast<int64_t>(log_->Head(p) - std::min(log_->Head(p), tracker_.last(p)));
    }
    return s;
  }

 private:
  Status Drain(size_t max, std::vector<Message>* out) {
    // Round-robin over partitions so one busy partition cannot starve the others.
    const uint32_t n = log_->partitions();
    for (uint32_t i = 0; i < n && out->size() < max; ++i) {
      const uint32_t p = (next_partition_ + i) % n;
      const size_t want = std::min(kReadChunk, max - out->size());
      WL_ASSIGN_OR_RETURN(auto events, log_->Read(p, tracker_.last(p) + 1, want));
      std::lock_guard lock(mu_);
      for (auto& e : events) {
        // The log itself guarantees order and no gaps (Read checks), so every event is new.
        tracker_.Delivered(p, e.seq());
        stats_.delivered++;
        out->push_back(Message{topic_, std::move(e), -1});
      }
    }
    next_partition_ = (next_partition_ + 1) % n;
    return Status::Ok();
  }

  const std::string topic_;
  const eventlog::EventLog* log_;
  mutable std::mutex mu_;  // Guards stats_ and tracker_ against stats() from other threads.
  SequenceTracker tracker_;
  ConsumerStats stats_;
  uint32_t next_partition_ = 0;
};

// A subscription to a topic that nothing in this process publishes. Every publisher of a process
// publishes before anything subscribes, so such a topic will never have data here.
class EmptyConsumer final : public Consumer {
 public:
  uint32_t partitions() const override { return 0; }
  Result<std::vector<Message>> Poll(size_t, std::chrono::milliseconds timeout) override {
    std::this_thread::sleep_for(timeout);
    return std::vector<Message>();
  }
  ConsumerStats stats() const override { return {}; }
};

class LocalBus final : public Bus {
 public:
  std::string kind() const override { return "local"; }

  Status Publish(const std::string& topic, eventlog::EventLog* log) override {
    std::lock_guard lock(mu_);
    if (topics_.count(topic)) return AlreadyExists("topic " + topic + " is already published");
    topics_[topic] = log;
    return Status::Ok();
  }

  Result<std::unique_ptr<Consumer>> Subscribe(const std::string& topic, const std::string& name,
                                              StartPositionFn start) override {
    std::lock_guard lock(mu_);
    auto it = topics_.find(topic);
    if (it == topics_.end()) {
      log::Warn("topic has no publisher in this process; nothing will be consumed from it",
                {{"topic", topic}, {"subscriber", name}});
      return std::unique_ptr<Consumer>(new EmptyConsumer());
    }
    return std::unique_ptr<Consumer>(new LocalConsumer(topic, it->second, start));
  }

  RelayStats relay_stats(const std::string& topic) const override { return {}; }

  void Stop() override {}

 private:
  mutable std::mutex mu_;
  std::map<std::string, eventlog::EventLog*> topics_;
};

}  // namespace

std::unique_ptr<Bus> NewLocalBus() { return std::make_unique<LocalBus>(); }

}  // namespace wattledger::bus
