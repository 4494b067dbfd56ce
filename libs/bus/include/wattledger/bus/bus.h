// Bus: how one service's event log reaches the services that consume it. One interface, two
// implementations that the services cannot tell apart:
//   local: the embedded default; consumers in the same process tail the producer's EventLog.
//   kafka: an outbox relay publishes the log to a Kafka topic with an idempotent producer; the
//          consumer reads the topic from positions stored in the consumer's own RocksDB.
//
// Delivery contract (both): per source partition, messages arrive in seq order, without gaps,
// starting after the position the subscriber passed in; a seq is never delivered twice by one
// Consumer (re-sends of the relay are skipped). Across restarts delivery is at-least-once from
// the stored position, so a subscriber makes processing exactly-once by committing the position
// it applied in the same WriteSet as the effects (see runtime/).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "wattledger/base/status.h"
#include "wattledger/eventlog/event_log.h"

namespace wattledger::bus {

struct Message {
  std::string topic;
  eventlog::Envelope envelope;  // envelope.partition()/seq() are the source position.
  int64_t offset = -1;          // Kafka offset of this message; -1 on the local bus.
};

// Returns the position a subscriber has already applied for a source partition (seq 0 = none).
using StartPositionFn = std::function<eventlog::Position(uint32_t source_partition)>;

struct ConsumerStats {
  uint64_t delivered = 0;
  uint64_t duplicates_skipped = 0;
  uint64_t invalid_skipped = 0;
  uint64_t gaps_skipped = 0;  // Messages passed over because an earlier seq had not arrived.
  int64_t lag = 0;  // Messages known to exist but not yet delivered, summed over partitions.
};

// Consumer: reads one topic. Poll is called from one thread at a time.
class Consumer {
 public:
  virtual ~Consumer() = default;
  virtual uint32_t partitions() const = 0;
  // Waits up to `timeout` for messages and returns at most `max` of them.
  virtual Result<std::vector<Message>> Poll(size_t max, std::chrono::milliseconds timeout) = 0;
  virtual ConsumerStats stats() const = 0;
};

struct RelayStats {
  int64_t backlog = 0;  // Events in the log not yet confirmed on the bus.
  uint64_t relayed = 0;
  uint64_t restarts = 0;
};

class Bus {
 public:
  virtual ~Bus() = default;
  virtual std::string kind() const = 0;
  // Makes `log`'s events available as `topic` until Stop(). The log must outlive the bus.
  virtual Status Publish(const std::string& topic, eventlog::EventLog* log) = 0;
  // Reads `topic`, starting after the positions `start` returns. `name` identifies the
  // subscriber in logs and (on Kafka) its client id.
  virtual Result<std::unique_ptr<Consumer>> Subscribe(const std::string& topic,
                                                      const std::string& name,
                                                      StartPositionFn start) = 0;
  virtual RelayStats relay_stats(const std::string& topic) const = 0;
  // Stops relays; consumers must be destroyed before the bus.
  virtual void Stop() = 0;
};

// Delivery bookkeeping shared by both implementations: per source partition the last
// delivered seq; decides whether a message is new, a duplicate, or leaves a gap.
class SequenceTracker {
 public:
  enum class Verdict { kDeliver, kDuplicate, kGap };
  void Reset(uint32_t partitions, const StartPositionFn& start);
  Verdict Check(uint32_t partition, uint64_t seq) const;
  void Delivered(uint32_t partition, uint64_t seq) { last_[partition] = seq; }
  uint64_t last(uint32_t partition) const { return last_[partition]; }
  const std::vector<int64_t>& start_offsets() const { return start_offsets_; }

 private:
  std::vector<uint64_t> last_;
  std::vector<int64_t> start_offsets_;
};

// Checks an envelope that arrived from outside the process: it must parse, name the partition
// it came from, and its hash must match its content. Bad input is refused, never applied.
Status ValidateEnvelope(const eventlog::Envelope& envelope, uint32_t partition, uint32_t partitions);

std::unique_ptr<Bus> NewLocalBus();

struct KafkaOptions {
  std::string brokers;
  std::string client_id = "wattledger";
  // Extra librdkafka properties (key=value), applied last.
  std::vector<std::pair<std::string, std::string>> properties;
  int relay_max_in_flight = 10'000;
  std::chrono::milliseconds relay_position_interval{100};
};
Result<std::unique_ptr<Bus>> NewKafkaBus(const KafkaOptions& options);

}  // namespace wattledger::bus
