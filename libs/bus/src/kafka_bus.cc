// The Kafka bus. Producer side: one relay thread per published log copies events to the topic
// (topic partition = log partition, key = aggregate key, value = the envelope) with librdkafka's
// idempotent, gapless producer, and persists in the log how far the broker has confirmed. After a
// crash or a fatal producer error the relay resumes from that persisted position; the re-sent
// events are duplicates that every consumer skips by (partition, seq).
//
// Consumer side: partitions are assigned by hand (no group rebalancing) at the offsets the
// subscriber stored in its own RocksDB together with its effects; auto.offset.reset=error, so a
// position that the topic no longer holds is an error, never a silent skip.
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "wattledger/base/log.h"
#include "wattledger/bus/bus.h"
#include "wattledger/metrics/metrics.h"

namespace wattledger::bus {
namespace {

constexpr size_t kRelayReadChunk = 512;

std::string RelayConsumerKey(const std::string& topic) { return "relay/" + topic; }

Status KafkaError(rd_kafka_resp_err_t err, const std::string& what) {
  StatusCode code = StatusCode::kUnavailable;
  if (err == RD_KAFKA_RESP_ERR__INVALID_ARG || err == RD_KAFKA_RESP_ERR_INVALID_CONFIG) {
    code = StatusCode::kInvalidArgument;
  } else if (err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE || err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
    code = StatusCode::kOutOfRange;
  } else if (err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    code = StatusCode::kNotFound;
  }
  return Status(code, what + ": " + rd_kafka_err2str(err));
}

Result<rd_kafka_conf_t*> MakeConf(const KafkaOptions& options, const std::string& client_id,
                                  const std::vector<std::pair<std::string, std::string>>& base) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char errstr[512];
  auto set = [&](const std::string& k, const std::string& v) -> Status {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      return InvalidArgument("kafka property " + k + "=" + v + ": " + errstr);
    }
    return Status::Ok();
  };
  std::vector<std::pair<std::string, std::string>> all = {{"bootstrap.servers", options.brokers},
                                                          {"client.id", client_id}};
  all.insert(all.end(), base.begin(), base.end());
  all.insert(all.end(), options.properties.begin(), options.properties.end());
  for (const auto& [k, v] : all) {
    Status s = set(k, v);
    if (!s.ok()) {
      rd_kafka_conf_destroy(conf);
      return s;
    }
  }
  return conf;
}

// Partition count of a topic, or an error naming the topic when it does not exist.
Result<uint32_t> TopicPartitions(rd_kafka_t* rk, const std::string& topic, int timeout_ms) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, "metadata for topic " + topic);
  uint32_t n = 0;
  rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  for (int i = 0; i < md->topic_cnt; ++i) {
    if (topic == md->topics[i].topic) {
      topic_err = md->topics[i].err;
      n = static_cast<uint32_t>(md->topics[i].partition_cnt);
    }
  }
  rd_kafka_metadata_destroy(md);
  if (topic_err != RD_KAFKA_RESP_ERR_NO_ERROR || n == 0) {
    return KafkaError(topic_err, "topic " + topic + " (create it with as many partitions as the log)");
  }
  return n;
}

class Relay {
 public:
  Relay(const KafkaOptions& options, std::string topic, eventlog::EventLog* log)
      : options_(options), topic_(std::move(topic)), log_(log) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Relay() { Stop(); }

  void Stop() {
    if (stopping_.exchange(true)) return;
    if (thread_.joinable()) thread_.join();
  }

  RelayStats stats() const {
    std::lock_guard lock(mu_);
    RelayStats s = stats_;
    s.backlog = 0;
    for (uint32_t p = 0; p < log_->partitions(); ++p) {
      uint64_t head = log_->Head(p);
      uint64_t done = p < confirmed_.size() ? confirmed_[p] : 0;
      s.backlog += static_cast<int64_t>(head - std::min(head, done));
    }
    return s;
  }

 private:
  static void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    static_cast<Relay*>(opaque)->Delivered(m);
  }

  void Delivered(const rd_kafka_message_t* m) {
    std::lock_guard lock(mu_);
    in_flight_--;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (!restart_) {
        log::Warn("kafka relay delivery failed; restarting producer from the persisted position",
                  {{"topic", topic_}, {"error", rd_kafka_err2str(m->err)}});
      }
      restart_ = true;
      return;
    }
    const uint32_t p = static_cast<uint32_t>(m->partition);
    const uint64_t seq = reinterpret_cast<uintptr_t>(m->_private);
    if (p >= confirmed_.size()) return;
    if (seq == confirmed_[p] + 1) {
      confirmed_[p] = seq;
      auto& pending = out_of_order_[p];
      while (!pending.empty() && *pending.begin() == confirmed_[p] + 1) {
        confirmed_[p] = *pending.begin();
        pending.erase(pending.begin());
      }
    } else if (seq > confirmed_[p]) {
      out_of_order_[p].insert(seq);
    }
    stats_.relayed++;
  }

  Status CreateProducer() {
    WL_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                        MakeConf(options_, options_.client_id + "-relay-" + topic_,
                                 {{"enable.idempotence", "true"},
                                  {"enable.gapless.guarantee", "true"},
                                  // One request in flight per broker: with several, a batch
                                  // rejected as not persisted is "implicitly acked" by librdkafka
                                  // when a later batch succeeds, trusting the broker to have
                                  // refused the later one (librdkafka's mock cluster does not).
                                  // The relay would then confirm events the topic never got.
                                  // Linger and large batches keep the cost low.
                                  {"max.in.flight.requests.per.connection", "1"},
                                  {"acks", "all"},
                                  {"linger.ms", "5"},
                                  {"message.timeout.ms", "30000"}}));
    rd_kafka_conf_set_dr_msg_cb(conf, &Relay::OnDelivery);
    rd_kafka_conf_set_opaque(conf, this);
    char errstr[512];
    producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (producer_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      return Unavailable(std::string("create kafka producer: ") + errstr);
    }
    auto parts = TopicPartitions(producer_, topic_, 5000);
    if (!parts.ok()) return parts.status();
    if (*parts < log_->partitions()) {
      return FailedPrecondition("topic " + topic_ + " has " + std::to_string(*parts) +
                                " partitions but the log has " + std::to_string(log_->partitions()) +
                                "; recreate the topic with at least as many");
    }
    // Resume from what the broker confirmed before; anything after it is sent (again).
    std::lock_guard lock(mu_);
    confirmed_.assign(log_->partitions(), 0);
    out_of_order_.assign(log_->partitions(), {});
    next_.assign(log_->partitions(), 1);
    for (uint32_t p = 0; p < log_->partitions(); ++p) {
      auto pos = log_->GetPosition(RelayConsumerKey(topic_), p);
      if (!pos.ok()) return pos.status();
      confirmed_[p] = pos->has_value() ? (*pos)->seq : 0;
      next_[p] = confirmed_[p] + 1;
    }
    persisted_ = confirmed_;
    restart_ = false;
    return Status::Ok();
  }

  void DestroyProducer() {
    if (producer_ == nullptr) return;
    rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(producer_, 1000);
    rd_kafka_destroy(producer_);
    producer_ = nullptr;
    std::lock_guard lock(mu_);
    in_flight_ = 0;
    stats_.restarts++;
  }

  // Sends what the log has beyond next_, up to the in-flight bound. Returns events queued.
  size_t ProduceMore() {
    size_t queued = 0;
    for (uint32_t p = 0; p < log_->partitions(); ++p) {
      {
        std::lock_guard lock(mu_);
        if (in_flight_ >= options_.relay_max_in_flight) break;
      }
      if (log_->Head(p) < next_[p]) continue;
      auto events = log_->Read(p, next_[p], kRelayReadChunk);
      if (!events.ok()) {
        log::Error("kafka relay cannot read the log", {{"topic", topic_}, {"error", events.status().ToString()}});
        return queued;
      }
      for (const auto& e : *events) {
        std::string value = e.SerializeAsString();
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer_, RD_KAFKA_V_TOPIC(topic_.c_str()), RD_KAFKA_V_PARTITION(static_cast<int32_t>(p)),
            RD_KAFKA_V_KEY(e.aggregate_key().data(), e.aggregate_key().size()),
            RD_KAFKA_V_VALUE(value.data(), value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<uintptr_t>(e.seq()))), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) break;
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          std::lock_guard lock(mu_);
          restart_ = true;
          break;
        }
        std::lock_guard lock(mu_);
        in_flight_++;
        next_[p] = e.seq() + 1;
        queued++;
      }
    }
    return queued;
  }

  void PersistPosition(bool force) {
    auto now = std::chrono::steady_clock::now();
    if (!force && now - last_persist_ < options_.relay_position_interval) return;
    eventlog::WriteSet ws;
    std::vector<uint64_t> confirmed;
    {
      std::lock_guard lock(mu_);
      confirmed = confirmed_;
    }
    for (uint32_t p = 0; p < confirmed.size(); ++p) {
      if (confirmed[p] != persisted_[p]) ws.SetPosition(RelayConsumerKey(topic_), p, {confirmed[p], -1});
    }
    last_persist_ = now;
    if (ws.empty()) return;
    auto done = log_->Commit(std::move(ws));
    if (!done.ok()) {
      log::Error("kafka relay cannot persist its position", {{"topic", topic_}, {"error", done.status().ToString()}});
      return;
    }
    persisted_ = std::move(confirmed);
  }

  void Run() {
    auto& backlog = metrics::KernelMetrics().relay_backlog.Add({{"topic", topic_}});
    auto last_gauge = std::chrono::steady_clock::now();
    while (!stopping_) {
      if (auto now = std::chrono::steady_clock::now(); now - last_gauge > std::chrono::milliseconds(500)) {
        backlog.Set(static_cast<double>(stats().backlog));
        last_gauge = now;
      }
      if (producer_ == nullptr) {
        Status s = CreateProducer();
        if (!s.ok()) {
          log::Warn("kafka relay not ready; retrying", {{"topic", topic_}, {"error", s.ToString()}});
          if (producer_) {
            rd_kafka_destroy(producer_);
            producer_ = nullptr;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(500));
          continue;
        }
      }
      const uint64_t commits = log_->CommitCount();
      size_t queued = ProduceMore();
      rd_kafka_poll(producer_, queued > 0 ? 0 : 10);
      PersistPosition(false);
      char errstr[512];
      rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(producer_, errstr, sizeof errstr);
      bool restart;
      {
        std::lock_guard lock(mu_);
        restart = restart_;
      }
      if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR || restart) {
        // librdkafka 2.0.2 can raise a false fatal idempotence error after a disconnect; the
        // cure is the same as for a real one: a new producer resuming from the confirmed position.
        if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
          log::Warn("kafka relay producer fatal error; rebuilding", {{"topic", topic_}, {"error", errstr}});
        }
        PersistPosition(true);
        DestroyProducer();
        continue;
      }
      bool idle;
      {
        std::lock_guard lock(mu_);
        idle = in_flight_ == 0;
      }
      if (queued == 0 && idle) log_->WaitForCommit(commits, std::chrono::milliseconds(50));
    }
    if (producer_) {
      rd_kafka_flush(producer_, 5000);
      rd_kafka_poll(producer_, 0);
      PersistPosition(true);
      rd_kafka_destroy(producer_);
      producer_ = nullptr;
    }
  }

  const KafkaOptions options_;
  const std::string topic_;
  eventlog::EventLog* log_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  rd_kafka_t* producer_ = nullptr;  // Owned by the relay thread.
  std::vector<uint64_t> next_;      // Relay thread only.
  std::vector<uint64_t> persisted_;  // Relay thread only.
  std::chrono::steady_clock::time_point last_persist_{};

  mutable std::mutex mu_;  // Guards the fields below; delivery callbacks run on the relay thread
                           // inside rd_kafka_poll, stats() on any thread.
  std::vector<uint64_t> confirmed_;
  std::vector<std::set<uint64_t>> out_of_order_;
  int in_flight_ = 0;
  bool restart_ = false;
  RelayStats stats_;
};

class KafkaConsumer final : public Consumer {
 public:
  static Result<std::unique_ptr<Consumer>> Create(const KafkaOptions& options, const std::string& topic,
                                                  const std::string& name, const StartPositionFn& start) {
    std::unique_ptr<KafkaConsumer> c(new KafkaConsumer(topic));
    WL_ASSIGN_OR_RETURN(rd_kafka_conf_t * conf,
                        MakeConf(options, options.client_id + "-" + name,
                                 {{"group.id", name},
                                  {"enable.auto.commit", "false"},
                                  {"enable.auto.offset.store", "false"},
                                  {"auto.offset.reset", "error"},
                                  {"enable.partition.eof", "false"}}));
    char errstr[512];
    c->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (c->rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      return Unavailable(std::string("create kafka consumer: ") + errstr);
    }
    rd_kafka_poll_set_consumer(c->rk_);
    WL_ASSIGN_OR_RETURN(c->partitions_, TopicPartitions(c->rk_, topic, 10'000));
    c->tracker_.Reset(c->partitions_, start);
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(static_cast<int>(c->partitions_));
    for (uint32_t p = 0; p < c->partitions_; ++p) {
      int64_t offset = c->tracker_.start_offsets()[p];
      rd_kafka_topic_partition_list_add(list, topic.c_str(), static_cast<int32_t>(p))->offset =
          offset >= 0 ? offset + 1 : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk_, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaError(err, "assign partitions of " + topic);
    c->next_offset_.assign(c->partitions_, 0);
    return std::unique_ptr<Consumer>(std::move(c));
  }

  ~KafkaConsumer() override {
    if (rk_) {
      rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    }
  }

  uint32_t partitions() const override { return partitions_; }

  Result<std::vector<Message>> Poll(size_t max, std::chrono::milliseconds timeout) override {
    std::vector<Message> out;
    int wait_ms = static_cast<int>(timeout.count());
    while (out.size() < max) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, wait_ms);
      wait_ms = 0;
      if (m == nullptr) break;
      Status s = Accept(m, &out);
      rd_kafka_message_destroy(m);
      if (!s.ok()) {
        if (!out.empty()) break;  // Deliver what was good; the error repeats on the next poll.
        return s;
      }
    }
    return out;
  }

  ConsumerStats stats() const override {
    std::lock_guard lock(mu_);
    ConsumerStats s = stats_;
    s.lag = 0;
    for (uint32_t p = 0; p < partitions_; ++p) {
      int64_t lo = 0, hi = 0;
      if (rd_kafka_get_watermark_offsets(rk_, topic_.c_str(), static_cast<int32_t>(p), &lo, &hi) ==
              RD_KAFKA_RESP_ERR_NO_ERROR && hi > next_offset_[p]) {
        s.lag += hi - std::max(next_offset_[p], lo);
      }
    }
    return s;
  }

 private:
  explicit KafkaConsumer(std::string topic) : topic_(std::move(topic)) {}

  Status Accept(rd_kafka_message_t* m, std::vector<Message>* out) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        return KafkaError(m->err, "topic " + topic_ + " no longer holds the stored position of partition " +
                                      std::to_string(m->partition) + "; restore from the producer's log");
      }
      log::Warn("kafka consumer error", {{"topic", topic_}, {"error", rd_kafka_message_errstr(m)}});
      return Status::Ok();
    }
    const uint32_t p = static_cast<uint32_t>(m->partition);
    std::lock_guard lock(mu_);
    if (p >= partitions_) return Status::Ok();
    next_offset_[p] = m->offset + 1;
    eventlog::Envelope env;
    Status valid = env.ParseFromArray(m->payload, static_cast<int>(m->len))
                       ? ValidateEnvelope(env, p, partitions_)
                       : InvalidArgument("message does not parse as an Envelope");
    if (!valid.ok()) {
      stats_.invalid_skipped++;
      log::Error("kafka consumer refused a message", {{"topic", topic_},
                                                      {"partition", std::to_string(p)},
                                                      {"offset", std::to_string(m->offset)},
                                                      {"error", valid.ToString()}});
      return Status::Ok();
    }
    switch (tracker_.Check(p, env.seq())) {
      case SequenceTracker::Verdict::kDuplicate:
        stats_.duplicates_skipped++;
        return Status::Ok();
      case SequenceTracker::Verdict::kGap:
        // A seq is missing before this one. Offsets never change, so waiting on this message
        // cannot help; the relay re-sends from its confirmed position, so the missing events (and
        // this one again) arrive at later offsets. Pass over it, loudly.
        stats_.gaps_skipped++;
        if (stats_.gaps_skipped % 1000 == 1) {
          log::Error("kafka consumer saw a gap; waiting for the relay to re-send",
                     {{"topic", topic_}, {"partition", std::to_string(p)},
                      {"expected_seq", std::to_string(tracker_.last(p) + 1)},
                      {"got_seq", std::to_string(env.seq())}, {"offset", std::to_string(m->offset)}});
        }
        return Status::Ok();
      case SequenceTracker::Verdict::kDeliver:
        break;
    }
    tracker_.Delivered(p, env.seq());
    stats_.delivered++;
    out->push_back(Message{topic_, std::move(env), m->offset});
    return Status::Ok();
  }

  const std::string topic_;
  rd_kafka_t* rk_ = nullptr;
  uint32_t partitions_ = 0;
  mutable std::mutex mu_;
  SequenceTracker tracker_;
  std::vector<int64_t> next_offset_;
  ConsumerStats stats_;
};

class KafkaBus final : public Bus {
 public:
  explicit KafkaBus(KafkaOptions options) : options_(std::move(options)) {}
  ~KafkaBus() override { Stop(); }

  std::string kind() const override { return "kafka"; }

  Status Publish(const std::string& topic, eventlog::EventLog* log) override {
    std::lock_guard lock(mu_);
    if (relays_.count(topic)) return AlreadyExists("topic " + topic + " is already published");
    relays_[topic] = std::make_unique<Relay>(options_, topic, log);
    return Status::Ok();
  }

  Result<std::unique_ptr<Consumer>> Subscribe(const std::string& topic, const std::string& name,
                                              StartPositionFn start) override {
    return KafkaConsumer::Create(options_, topic, name, start);
  }

  RelayStats relay_stats(const std::string& topic) const override {
    std::lock_guard lock(mu_);
    auto it = relays_.find(topic);
    return it == relays_.end() ? RelayStats{} : it->second->stats();
  }

  void Stop() override {
    std::lock_guard lock(mu_);
    for (auto& [_, relay] : relays_) relay->Stop();
  }

 private:
  const KafkaOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Relay>> relays_;
};

}  // namespace

Result<std::unique_ptr<Bus>> NewKafkaBus(const KafkaOptions& options) {
  if (options.brokers.empty()) {
    return InvalidArgument("kafka brokers are empty; pass --kafka-brokers host:port[,host:port]");
  }
  return std::unique_ptr<Bus>(new KafkaBus(options));
}

}  // namespace wattledger::bus
