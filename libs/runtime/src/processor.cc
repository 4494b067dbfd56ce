#include "wattledger/runtime/processor.h"

#include <algorithm>
#include <exception>

#include "wattledger/base/check.h"
#include "wattledger/base/log.h"
#include "wattledger/base/thread_name.h"
#include "wattledger/metrics/metrics.h"

namespace wattledger::runtime {

namespace {

// Whether a failed commit means the store itself is broken rather than this WriteSet refused.
// EventLog::Commit refuses a bad WriteSet before writing anything (INVALID_ARGUMENT; a read-only
// log FAILED_PRECONDITION); what RocksDB reports comes through FromRocks: an I/O error is
// UNAVAILABLE, corruption DATA_LOSS, anything else INTERNAL.
bool StoreBroken(const Status& commit) {
  switch (commit.code()) {
    case StatusCode::kUnavailable:
    case StatusCode::kDataLoss:
    case StatusCode::kInternal:
      return true;
    default:
      return false;
  }
}

Status StoppedByStore(const std::string& service) {
  return Unavailable(service + " is stopping after a store failure; retry after its restart");
}

}  // namespace

void FailStop(const Status& why) {
  WL_CHECK_MSG(why.ok(), "stopping so that a restart recovers the event log from its WAL: " + why.ToString());
  std::abort();  // Reached only if called with OK; a stop was asked for all the same.
}

uint32_t PartitionForKey(std::string_view key, uint32_t partitions) {
  // FNV-1a: stable across processes and versions, unlike std::hash.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<uint32_t>(h % partitions);
}

uint32_t Handler::Route(const bus::Message& message, uint32_t partitions) {
  return PartitionForKey(message.envelope.aggregate_key(), partitions);
}

Processor::Processor(ProcessorOptions options, eventlog::EventLog* log, bus::Bus* bus, Handler* handler)
    : options_(std::move(options)), log_(log), bus_(bus), handler_(handler) {
  for (uint32_t p = 0; p < log_->partitions(); ++p) {
    parts_.push_back(std::make_unique<Partition>());
    parts_.back()->suspect_batch = options_.max_batch;
  }
}

Processor::~Processor() { Stop(); }

std::string Processor::PositionKey(const std::string& topic, uint32_t partition) const {
  return options_.name + "<" + topic + "#" + std::to_string(partition);
}

Status Processor::LoadApplied(uint32_t p) {
  auto& part = *parts_[p];
  part.applied.clear();
  for (size_t i = 0; i < options_.topics.size(); ++i) {
    const auto& topic = options_.topics[i];
    const uint32_t source_parts = consumers_.empty() ? 0 : consumers_[i]->partitions();
    auto& vec = part.applied[topic];
    vec.assign(source_parts, {});
    for (uint32_t sp = 0; sp < source_parts; ++sp) {
      WL_ASSIGN_OR_RETURN(auto pos, log_->GetPosition(PositionKey(topic, p), sp));
      if (pos) vec[sp] = *pos;
    }
  }
  return Status::Ok();
}

Status Processor::Start() {
  WL_CHECK(!started_);
  started_ = true;
  for (const auto& topic : options_.topics) {
    // A consumer starts from the lowest position any writer partition applied; each writer skips
    // what it already has.
    auto start = [this, topic](uint32_t sp) {
      eventlog::Position lowest{UINT64_MAX, -1};
      for (uint32_t p = 0; p < log_->partitions(); ++p) {
        auto pos = log_->GetPosition(PositionKey(topic, p), sp);
        eventlog::Position got = pos.ok() && pos->has_value() ? **pos : eventlog::Position{};
        if (got.seq < lowest.seq) lowest = got;
      }
      return lowest.seq == UINT64_MAX ? eventlog::Position{} : lowest;
    };
    WL_ASSIGN_OR_RETURN(auto consumer, bus_->Subscribe(topic, options_.name, start));
    consumers_.push_back(std::move(consumer));
  }
  for (uint32_t p = 0; p < parts_.size(); ++p) {
    WL_RETURN_IF_ERROR(LoadApplied(p));
    parts_[p]->committer = std::thread([this, p] { CommitterLoop(p); });
    parts_[p]->thread = std::thread([this, p] { WriterLoop(p); });
  }
  for (size_t i = 0; i < consumers_.size(); ++i) {
    consumer_threads_.emplace_back([this, i] { ConsumerLoop(options_.topics[i], consumers_[i].get()); });
  }
  return Status::Ok();
}

Status Processor::SubmitTo(uint32_t partition, Command command, Failed on_failure, const void* hint) {
  if (partition >= parts_.size()) return InvalidArgument("partition out of range");
  auto& part = *parts_[partition];
  bool was_empty = false;
  {
    std::lock_guard lock(part.mu);
    // Under the lock: a writer that saw its queue empty with stop_writing_ set (under it too)
    // has returned, and a command queued after that would never be answered.
    if (stop_writing_) return Unavailable(options_.name + " is shutting down; retry against another instance");
    // Checked under the lock: AbandonQueue empties the queue under it after the flag is set.
    if (store_broken_) return StoppedByStore(options_.name);
    if (part.queue.size() >= options_.queue_capacity) {
      return ResourceExhausted(options_.name + " partition " + std::to_string(partition) + " has " +
                               std::to_string(part.queue.size()) + " inputs queued; retry with backoff");
    }
    was_empty = part.queue.empty();
    part.queue.push_back(Input{std::move(command), nullptr, nullptr, 0, std::move(on_failure), Status::Ok(), hint});
  }
  // The writer sleeps only on an empty queue (and checks it under the lock first), so only the
  // first input needs to wake it: a wake-up per input is a futex call per request.
  if (was_empty) part.not_empty.notify_one();
  return Status::Ok();
}

namespace {
// A handler hook that must not throw: the handler's state and the store would no longer match.
template <typename Fn>
void MustNotThrow(const char* hook, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    WL_CHECK_MSG(false, std::string(hook) + " threw: " + e.what());
  } catch (...) {
    WL_CHECK_MSG(false, std::string(hook) + " threw a non-standard exception");
  }
}
}  // namespace

Result<bool> Processor::CommitHook(uint32_t p, const char* hook,
                                   void (Handler::*write)(uint32_t, eventlog::WriteSet&)) {
  eventlog::WriteSet ws;
  ws.ExpectHead(p, log_->Head(p));  // No batch is in flight when a hook runs.
  MustNotThrow(hook, [&] { (handler_->*write)(p, ws); });
  if (ws.empty()) return false;
  WL_RETURN_IF_ERROR(log_->Commit(std::move(ws)).status());
  return true;
}

void Processor::IdleWriter(uint32_t p) {
  auto committed = CommitHook(p, "OnIdle", &Handler::OnIdle);
  if (committed.ok()) return;
  if (StoreBroken(committed.status())) {
    // Fail-stop, as for a batch (Land): reloading from a store that fails writes, every idle
    // turn, would only repeat the failure. The writer loop sees store_broken_ and answers what
    // is queued.
    log::Error("event log failed an idle commit; stopping the process",
               {{"service", options_.name}, {"partition", std::to_string(p)}, {"error", committed.status().ToString()}});
    if (!store_broken_.exchange(true)) options_.on_fatal(committed.status());
    return;
  }
  log::Error("an idle commit failed; reloading partition state from the store",
             {{"service", options_.name}, {"partition", std::to_string(p)}, {"error", committed.status().ToString()}});
  // What OnIdle took for written is not (the log refused what it wrote): the handler works it
  // out again from the store.
  Status reload = handler_->Reload(p);
  WL_CHECK_MSG(reload.ok(), reload.ToString());
}

void Processor::FinishWriter(uint32_t p) {
  auto committed = CommitHook(p, "BeforeStop", &Handler::BeforeStop);
  if (!committed.ok()) {
    stop_commit_failed_ = true;
    log::Error("the last commit at stop failed", {{"service", options_.name},
                                                   {"partition", std::to_string(p)},
                                                   {"error", committed.status().ToString()}});
  }
}

void Processor::ConsumerLoop(const std::string& topic, bus::Consumer* consumer) {
  NameThisThread(options_.name + "<" + topic);
  auto& lag = metrics::KernelMetrics().consumer_lag.Add({{"topic", topic}, {"consumer", options_.name}});
  auto& errors = metrics::KernelMetrics().internal_errors.Add({{"where", options_.name + "/consume/" + topic}});
  while (!stop_consuming_) {
    auto batch = consumer->Poll(options_.max_batch, std::chrono::milliseconds(100));
    lag.Set(static_cast<double>(consumer->stats().lag));
    if (!batch.ok()) {
      errors.Increment();
      log::Error("consume failed", {{"service", options_.name}, {"topic", topic}, {"error", batch.status().ToString()}});
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      continue;
    }
    std::map<uint32_t, eventlog::Position> routed;  // Last message per source partition.
    for (auto& m : *batch) {
      const uint32_t p = handler_->Route(m, log_->partitions()) % log_->partitions();
      routed[m.envelope.partition()] = {m.envelope.seq(), m.offset};
      if (!Enqueue(p, Input{nullptr, std::make_shared<bus::Message>(std::move(m)), nullptr, 0, nullptr})) return;
    }
    for (const auto& [sp, pos] : routed) {
      auto wm = std::make_shared<Watermark>(Watermark{topic, sp, pos});
      for (uint32_t p = 0; p < log_->partitions(); ++p) {
        if (!Enqueue(p, Input{nullptr, nullptr, wm, 0, nullptr})) return;
      }
    }
  }
}

bool Processor::Enqueue(uint32_t p, Input in) {
  auto& part = *parts_[p];
  std::unique_lock lock(part.mu);
  part.not_full.wait(lock, [&] { return part.queue.size() < options_.queue_capacity || stop_consuming_; });
  if (stop_consuming_) return false;
  const bool was_empty = part.queue.empty();
  part.queue.push_back(std::move(in));
  lock.unlock();
  if (was_empty) part.not_empty.notify_one();  // As in SubmitTo.
  return true;
}

namespace {
thread_local bool on_writer_thread = false;
}  // namespace

bool Processor::OnWriterThread() { return on_writer_thread; }

void Processor::WriterLoop(uint32_t p) {
  on_writer_thread = true;
  NameThisThread(options_.name + "/w" + std::to_string(p));
  auto& part = *parts_[p];
  auto& depth = metrics::KernelMetrics().queue_depth.Add({{"service", options_.name}, {"partition", std::to_string(p)}});
  auto& errors = metrics::KernelMetrics().internal_errors.Add({{"where", options_.name + "/writer"}});
  // The batch in flight (owned by part.flight), or null. Only this thread launches and lands
  // batches, so it reads the flight's positions and head here while the committer writes it.
  const Flight* last = nullptr;
  // Takes the batch in flight back; false once the store broke (everything is answered then).
  auto land = [&](LandedBatch* landed) {
    *landed = Land(p);
    last = nullptr;
    return landed->what != Landed::kStopped;
  };
  while (true) {
    LandedBatch landed;
    if (store_broken_) {  // Another writer's commit failed for good.
      if (land(&landed)) AbandonQueue(p, StoppedByStore(options_.name));
      return;
    }
    auto flight = std::make_unique<Flight>();
    std::vector<Input>& batch = flight->batch;
    size_t taken_suspects = 0;  // While suspects are left, a batch holds only suspects.
    {
      std::unique_lock lock(part.mu);
      if (last != nullptr && (part.queue.empty() || part.queue.size() < options_.overlap_backlog)) {
        // No backlog to work off during the commit: land it first, then take everything queued
        // by then. (An idle or stopping writer starts from a landed batch too.)
        lock.unlock();
        if (!land(&landed)) return;
        continue;
      }
      part.not_empty.wait_for(lock, std::chrono::milliseconds(200),
                              [&] { return !part.queue.empty() || stop_writing_; });
      if (part.queue.empty()) {
        // Read with the queue, under its lock: a SubmitTo after this sees the flag (it checks it
        // under the lock too), so nothing is queued once this writer decided to finish.
        const bool stopping = stop_writing_;
        lock.unlock();
        if (!stopping) {
          IdleWriter(p);
          continue;
        }
        FinishWriter(p);
        break;
      }
      const size_t limit = part.suspects > 0 ? std::min(part.suspects, part.suspect_batch) : options_.max_batch;
      while (!part.queue.empty() && batch.size() < limit) {
        batch.push_back(std::move(part.queue.front()));
        part.queue.pop_front();
      }
      if (part.suspects > 0) taken_suspects = batch.size();
      depth.Set(static_cast<double>(part.queue.size()));
    }
    part.not_full.notify_all();

    eventlog::WriteSet& ws = flight->ws;
    ws.ExpectHead(p, last != nullptr ? last->head_after : log_->Head(p));
    // The positions as of the batch before this one, committed or in flight.
    flight->applied = last != nullptr ? last->applied : part.applied;
    auto& applied = flight->applied;
    auto& replies = flight->replies;
    Status failure;
    size_t processed = 0;  // Inputs whose handler ran (fully or until it threw).
    size_t thrower = SIZE_MAX;  // The input whose handler threw, if one did.
    MustNotThrow("BeforeBatch", [&] { handler_->BeforeBatch(p); });
    for (; processed < batch.size() && failure.ok(); ++processed) {
      auto& in = batch[processed];
      for (int ahead : {2, 1}) {
        if (processed + ahead < batch.size() && batch[processed + ahead].hint != nullptr) {
          MustNotThrow("Prefetch", [&] { handler_->Prefetch(p, batch[processed + ahead].hint, ahead); });
        }
      }
      try {
        if (in.command) {
          size_t begin = ws.event_count();
          Reply reply = in.command(p, ws);
          replies.push_back({std::move(reply), begin, ws.event_count()});
          continue;
        }
        if (in.watermark) {
          const Watermark& wm = *in.watermark;
          auto& positions = applied[wm.topic];
          if (wm.source_partition >= positions.size()) positions.resize(wm.source_partition + 1);
          if (wm.position.seq > positions[wm.source_partition].seq) {
            positions[wm.source_partition] = wm.position;
            ws.SetPosition(PositionKey(wm.topic, p), wm.source_partition, wm.position);
          }
          continue;
        }
        const auto& m = *in.message;
        auto& positions = applied[m.topic];
        const uint32_t sp = m.envelope.partition();
        if (sp >= positions.size()) positions.resize(sp + 1);
        if (m.envelope.seq() <= positions[sp].seq) continue;  // Applied before a restart.
        if (in.failures >= kMaxMessageFailures) {
          // Poison: it failed every batch it was in. Pass over it, loudly, so the partition can go
          // on; the handler records that in the same commit as the position (unless that threw
          // too: the bound), and the event stays in its source log for an operator to replay.
          metrics::KernelMetrics().rejected_inputs.Add({{"where", options_.name + "/poison"}}).Increment();
          log::Error("message set aside after repeated failures",
                     {{"service", options_.name}, {"event_id", m.envelope.event_id()},
                      {"error", in.last_failure.ToString()}});
          if (in.failures == kMaxMessageFailures) handler_->OnPoison(p, m, in.last_failure, ws);
        } else {
          handler_->OnMessage(p, m, ws);
        }
        positions[sp] = {m.envelope.seq(), m.offset};
        ws.SetPosition(PositionKey(m.topic, p), sp, positions[sp]);
      } catch (const std::exception& e) {
        failure = Internal(std::string("handler threw: ") + e.what());
        thrower = processed;
      } catch (...) {
        failure = Internal("handler threw a non-standard exception");
        thrower = processed;
      }
    }
    if (failure.ok()) MustNotThrow("BeforeCommit", [&] { handler_->BeforeCommit(p, ws); });
    // A command that threw returned no Reply: its caller gets the failure through on_failure.
    Failed thrown;
    if (thrower != SIZE_MAX && batch[thrower].command) thrown = std::move(batch[thrower].on_failure);

    // Once the store broke, nothing more is written: this batch is answered (its commands that
    // ran by their Replies, the others through on_failure) and dropped, as the queue is.
    auto abandon_batch = [&] {
      const Status why = StoppedByStore(options_.name);
      Answer(replies, why, {});
      for (size_t i = processed; i < batch.size(); ++i) {
        if (batch[i].command && batch[i].on_failure) batch[i].on_failure(why);
      }
      if (thrown) thrown(why);
    };
    // The batch before this one must be durable before this one commits or answers anything,
    // and if it failed this one goes with it: it was built on that batch's effects.
    if (!land(&landed)) {
      abandon_batch();
      return;
    }
    if (landed.what == Landed::kUndone) {
      // Behind the failed batch's inputs, in order. A command that ran here is answered: it may
      // have answered its caller already, so it never runs twice (its caller retries). Nobody is
      // blamed: this batch ran on effects that were undone; an input that throws for itself
      // throws again.
      Requeue(p, batch, processed, /*blamed=*/SIZE_MAX, failure, landed.requeued);
      Answer(replies,
             Unavailable("not recorded: the batch before it failed (" + landed.why.message() +
                         ") and this one was undone with it; retry"),
             {});
      if (thrown) thrown(failure);
      continue;
    }
    if (!failure.ok()) {
      errors.Increment();
      log::Error("batch failed; reloading partition state from the store",
                 {{"service", options_.name}, {"partition", std::to_string(p)}, {"error", failure.ToString()}});
      Status reload = handler_->Reload(p);
      // If the store cannot be read back, continuing would risk a wrong balance.
      WL_CHECK_MSG(reload.ok(), reload.ToString());
      // Nothing of this batch is stored. Messages must be applied later (the consumer will not
      // deliver them again), and commands that never ran must still run; both go back to the
      // front of the queue in their order. Commands that ran are answered with the failure.
      Requeue(p, batch, processed, thrower, failure, 0);
      Answer(replies, failure, {});
      if (thrown) thrown(failure);
      continue;
    }
    if (ws.empty()) {
      // Nothing to write (queries, say): answered now, the batch before it being durable.
      Committed(p, std::move(applied), taken_suspects);
      Answer(replies, Status::Ok(), {});
      continue;
    }
    if (store_broken_) {  // Another writer's commit failed for good while this batch was built.
      abandon_batch();
      AbandonQueue(p, StoppedByStore(options_.name));
      return;
    }
    flight->head_after = ws.head_after();
    flight->taken_suspects = taken_suspects;
    // The committer thread commits only where the writer has a backlog to build from meanwhile.
    // Else the writer would wait for the commit anyway: it commits itself, which spares two
    // thread wake-ups per batch. While suspects are left each batch is landed before the next
    // is taken, so that the one refused is known before anything else runs.
    bool overlap = options_.overlap_commits && part.suspects == 0;
    if (overlap) {
      std::lock_guard lock(part.mu);
      overlap = !part.queue.empty() && part.queue.size() >= options_.overlap_backlog;
    }
    Flight* f = flight.get();
    last = f;
    Launch(p, std::move(flight), /*by_committer=*/overlap);
    if (!overlap) {
      RunFlight(p, f, /*by_committer=*/false);
      if (!land(&landed)) return;
    }
  }
}

void Processor::Committed(uint32_t p, Applied applied, size_t taken_suspects) {
  auto& part = *parts_[p];
  part.applied = std::move(applied);
  if (taken_suspects > 0) {
    part.suspects -= taken_suspects;
    part.suspect_batch =
        part.suspects > 0 ? std::min(part.suspect_batch * 2, options_.max_batch) : options_.max_batch;
  }
}

void Processor::Launch(uint32_t p, std::unique_ptr<Flight> f, bool by_committer) {
  auto& part = *parts_[p];
  f->started = !by_committer;  // Else the writer runs it (RunFlight) itself.
  {
    std::lock_guard lock(part.flight_mu);
    WL_CHECK(part.flight == nullptr);
    part.flight = std::move(f);
  }
  if (by_committer) part.flight_cv.notify_all();
}

void Processor::RunFlight(uint32_t p, Flight* f, bool by_committer) {
  auto& part = *parts_[p];
  auto result = log_->Commit(std::move(f->ws));
  // Durable: answered at once, before the writer hears of it.
  if (result.ok()) Answer(f->replies, Status::Ok(), result->envelopes);
  {
    std::lock_guard lock(part.flight_mu);
    f->commit = result.status();
    f->done = true;
  }
  // The writer may wait in Land for the committer; it does not wait for itself.
  if (by_committer) part.flight_cv.notify_all();
}

void Processor::CommitterLoop(uint32_t p) {
  on_writer_thread = true;
  NameThisThread(options_.name + "/c" + std::to_string(p));
  auto& part = *parts_[p];
  while (true) {
    Flight* f = nullptr;
    {
      std::unique_lock lock(part.flight_mu);
      part.flight_cv.wait(lock, [&] { return (part.flight && !part.flight->started) || part.committer_stop; });
      if (!part.flight || part.flight->started) return;  // Stopped, with nothing left to commit.
      f = part.flight.get();
      f->started = true;
    }
    RunFlight(p, f, /*by_committer=*/true);  // While the writer builds the next batch.
  }
}

Processor::LandedBatch Processor::Land(uint32_t p) {
  auto& part = *parts_[p];
  std::unique_ptr<Flight> f;
  {
    std::unique_lock lock(part.flight_mu);
    if (!part.flight) return {};
    part.flight_cv.wait(lock, [&] { return part.flight->done; });
    f = std::move(part.flight);
  }
  if (f->commit.ok()) {
    Committed(p, std::move(f->applied), f->taken_suspects);
    return {Landed::kCommitted, 0, Status::Ok()};
  }
  const Status& failure = f->commit;
  auto& batch = f->batch;
  auto& errors = metrics::KernelMetrics().internal_errors.Add({{"where", options_.name + "/writer"}});
  errors.Increment();
  // A lone input that cannot be blamed any more (a watermark, or a message passed over
  // unrecorded) wrote nothing but its position: a log that refuses that refuses every commit (a
  // read-only log), which no retry and no input can change.
  const bool blameless = batch.size() == 1 && (batch[0].watermark != nullptr ||
                                               (batch[0].message && batch[0].failures > kMaxMessageFailures));
  if (StoreBroken(failure) || blameless) {
    // Fail-stop. Retrying cannot succeed and reloading state from a store that fails writes is
    // no better: answer this batch's commands, then stop. Whether the batch is stored is not
    // known: the store may have written its WAL and failed only to sync it, and then the restart
    // recovers it. So the answer says it may have been recorded, and a caller's retry with the
    // same idempotency key finds out. Its messages come again from the stored positions.
    log::Error("event log failed a commit; stopping the process",
               {{"service", options_.name}, {"partition", std::to_string(p)}, {"error", failure.ToString()}});
    const Status unavailable =
        Unavailable(options_.name + " could not make this durable and is stopping; it may or may not have been "
                    "recorded, which a retry after the restart tells (" + failure.message() + ")");
    Answer(f->replies, unavailable, {});
    if (!store_broken_.exchange(true)) options_.on_fatal(failure);
    AbandonQueue(p, unavailable);
    return {Landed::kStopped, 0, Status::Ok()};
  }
  // The log refused the batch for what an input wrote (INVALID_ARGUMENT): nothing tells which
  // input is at fault. Its messages and watermarks go back to the front of the queue as
  // `suspects`, taken at most `suspect_batch` at a time: halved after each refusal, doubled after
  // each commit. The input at fault ends up alone in a refused batch and is blamed for it, as one
  // that throws is, so that it becomes poison instead of blocking the partition; a batch that was
  // refused only for its size commits in smaller parts and nobody is blamed.
  log::Error("batch failed; reloading partition state from the store",
             {{"service", options_.name}, {"partition", std::to_string(p)}, {"error", failure.ToString()}});
  Status reload = handler_->Reload(p);
  WL_CHECK_MSG(reload.ok(), reload.ToString());
  const size_t requeued = Requeue(p, batch, batch.size(), batch.size() == 1 ? 0 : SIZE_MAX, failure, 0);
  if (f->taken_suspects == 0) part.suspects = requeued;  // Else the same ones are back in front.
  part.suspect_batch = std::max<size_t>(1, batch.size() / 2);
  // Commands that ran are answered with the refusal: they may have answered their callers
  // already, so they never run twice.
  Answer(f->replies, failure, {});
  return {Landed::kUndone, requeued, failure};
}

size_t Processor::Requeue(uint32_t p, std::vector<Input>& batch, size_t processed, size_t blamed,
                          const Status& failure, size_t at) {
  std::vector<Input> again;
  for (size_t i = 0; i < batch.size(); ++i) {
    auto& in = batch[i];
    if (in.message || in.watermark || i >= processed) {
      if (i == blamed) {
        in.failures++;
        in.last_failure = failure;
      }
      again.push_back(std::move(in));
    }
  }
  auto& part = *parts_[p];
  std::lock_guard lock(part.mu);
  // Only this writer takes from the queue, so what it put in front at `at` is still there.
  part.queue.insert(part.queue.begin() + static_cast<std::ptrdiff_t>(at), std::make_move_iterator(again.begin()),
                    std::make_move_iterator(again.end()));
  return again.size();
}

void Processor::Answer(std::vector<Pending>& replies, const Status& status,
                       std::span<const eventlog::Envelope> committed) {
  for (auto& r : replies) {
    if (!r.reply) continue;
    std::span<const eventlog::Envelope> events;
    // Empty unless a command asked for the envelopes (WriteSet::ReturnEnvelopes).
    if (status.ok() && r.end <= committed.size()) events = committed.subspan(r.begin, r.end - r.begin);
    r.reply(status, events);
  }
}

void Processor::AbandonQueue(uint32_t p, const Status& why) {
  auto& part = *parts_[p];
  std::deque<Input> left;
  {
    std::lock_guard lock(part.mu);
    left.swap(part.queue);
  }
  part.not_full.notify_all();
  for (auto& in : left) {
    if (in.command && in.on_failure) in.on_failure(why);
  }
}

void Processor::Stop() {
  if (!started_) return;
  stop_consuming_ = true;
  for (auto& part : parts_) part->not_full.notify_all();
  for (auto& t : consumer_threads_) {
    if (t.joinable()) t.join();
  }
  stop_writing_ = true;
  for (auto& part : parts_) {
    part->not_empty.notify_all();
    if (part->thread.joinable()) part->thread.join();
    // The writer landed its last batch before it returned: nothing is left to commit.
    {
      std::lock_guard lock(part->flight_mu);
      part->committer_stop = true;
    }
    part->flight_cv.notify_all();
    if (part->committer.joinable()) part->committer.join();
  }
  consumers_.clear();
  started_ = false;
}

}  // namespace wattledger::runtime
