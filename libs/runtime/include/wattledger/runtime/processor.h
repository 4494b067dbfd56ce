// Processor: the partitioned single writer. Each partition of the service's EventLog is owned by
// one writer thread with a bounded input queue. The thread drains its queue in batches; for each
// batch it lets the Handler turn every input (consumed bus message or RPC command) into events and
// state changes, records the consumed positions, and commits all of it with ONE EventLog::Commit
// (one synced write). Only then are RPC replies released. That is what makes processing
// exactly-once in effect: an input's effects and the record that it was applied are one write.
//
// When a backlog waits, the commit runs on the partition's committer thread, so that the writer
// builds the next batch while the last one is written and synced (ProcessorOptions::
// overlap_commits, overlap_backlog); else the writer commits itself. At most one batch is in
// flight: the writer commits batch k+1 only after batch k is durable, and if k fails, k+1 (built
// on k's effects) is undone with it before anything of it is answered. The committer answers a
// batch's replies once its commit is durable, in batch order, while the writer may already be
// changing handler state for the next batch: a Reply must not read the handler's partition
// state (take what the answer needs when the command runs).
//
// Consumed messages are routed to a partition by Handler::Route. Each partition remembers, per
// source partition, the last seq it applied and skips anything at or below it; a consumer
// restarts from the lowest position over all writer partitions, so nothing is lost or repeated.
//
// Thread safety: Submit/Stop may be called from any thread. Handler methods for partition p are
// only ever called on p's writer thread, so handler state that is partitioned needs no locks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "wattledger/base/status.h"
#include "wattledger/bus/bus.h"
#include "wattledger/eventlog/event_log.h"

namespace wattledger::runtime {

// Called after the commit with its status and the events this command appended (in order). The
// events are there only if a command of the batch called ws.ReturnEnvelopes(): a command whose
// reply reads them must ask, the others (most) pay nothing for them. If the log refused the
// batch for what an input of it wrote (INVALID_ARGUMENT, e.g. a text field that is not UTF-8),
// the status is that refusal: the command is not run again, since it may have answered already.
// A durable commit's Replies run on the partition's committer thread, while the writer may be
// running the next batch's commands; others (a batch that wrote nothing, or failed) on the
// writer. A Reply must assume neither and must not read the handler's partition state.
using Reply = std::function<void(const Status& commit, std::span<const eventlog::Envelope> events)>;
// Runs on the writer thread: validates, updates in-memory state, adds to ws, returns its Reply.
// A command that answered its caller itself (say, a malformed request) returns nullptr.
using Command = std::function<Reply(uint32_t partition, eventlog::WriteSet& ws)>;
// Answers a command that never returned a Reply: its handler threw (INTERNAL, "handler threw:
// ..."; run after the failed batch was undone, like the Replies of the batch's other commands),
// or it never ran because the store broke (UNAVAILABLE). Runs on a writer thread.
using Failed = std::function<void(const Status& why)>;

class Handler {
 public:
  virtual ~Handler() = default;
  // Which writer partition a consumed message belongs to.
  virtual uint32_t Route(const bus::Message& message, uint32_t partitions);
  // Applies one new consumed message. Bad input must be answered with a rejected event (or
  // skipped with a log line), never a crash.
  virtual void OnMessage(uint32_t partition, const bus::Message& message, eventlog::WriteSet& ws) = 0;
  // `message` was blamed for kMaxMessageFailures failed batches (`why` is the last failure): its
  // handler threw, or the log refused what it wrote when it was committed alone. It is set
  // aside instead of applied, so that it cannot block its partition. Put that on the record in ws
  // (a rejected event, say) so that operators find it in the log: ws commits with the position
  // that passes over the message. If this throws too, the message is passed over unrecorded.
  virtual void OnPoison(uint32_t partition, const bus::Message& message, const Status& why,
                        eventlog::WriteSet& ws) {}
  // Once per batch, before its first input runs: where a handler reads what its inputs share,
  // such as the time (the ledger decides a batch's commands at one time, as they commit
  // together, and reads the clock once per batch instead of once per command). Must not throw.
  virtual void BeforeBatch(uint32_t partition) {}
  // Once per batch, after every input ran and before the commit: where a handler writes what it
  // writes once per batch rather than once per input (the ledger: some of the account views it
  // owes). Not called for a batch whose handler threw (a batch the log then refuses, or one
  // undone with the batch before it, is undone after it: Reload). Must not throw: the process
  // stops if it does, since the handler's state and the batch would no longer match.
  virtual void BeforeCommit(uint32_t partition, eventlog::WriteSet& ws) {}
  // About every 200 ms while the partition's queue stays empty: where a handler writes what has
  // come due with time rather than with input. ws is committed if not empty; if the store fails
  // that commit (an I/O error, corruption) the process stops as for a batch (on_fatal), and if the
  // log refuses what ws holds the partition is reloaded (Reload). Must not throw.
  virtual void OnIdle(uint32_t partition, eventlog::WriteSet& ws) {}
  // Once per partition when the processor stops, after the last batch (no input comes after it):
  // where a handler that defers writes (the ledger's account views) writes what it still owes. ws
  // is committed if not empty; a failure is logged, since nothing is left to answer. Must not
  // throw, like BeforeCommit. Not called once the store broke.
  virtual void BeforeStop(uint32_t partition, eventlog::WriteSet& ws) {}
  // A commit of `partition` failed, so in-memory state may be ahead of the store: rebuild it.
  virtual Status Reload(uint32_t partition) = 0;
  // The command queued with `hint` (SubmitTo) runs `ahead` commands from now (2, then 1): where
  // a handler starts loading what that command will read (a software prefetch), so that its
  // cache misses overlap the work before it instead of stalling its own. Two calls, so that a
  // lookup that reads one place to find the next (a slot, then the element) can start the first
  // at 2 and the second at 1. A hint only: it must not change what any command does, nor throw.
  virtual void Prefetch(uint32_t partition, const void* hint, int ahead) {}
};

// The default ProcessorOptions::on_fatal: logs `why` as a failed check and aborts the process.
[[noreturn]] void FailStop(const Status& why);

struct ProcessorOptions {
  std::string name;                 // Service name: metrics label and position keys.
  std::vector<std::string> topics;  // Topics to consume.
  size_t queue_capacity = 16'384;   // Per partition; RPCs beyond it get RESOURCE_EXHAUSTED.
  size_t max_batch = 2'048;         // Inputs per commit at most.
  // Called once, on a writer thread, after the event log failed a commit because the store itself
  // is broken (an I/O error or corruption), or refused one that held nothing any input could be
  // blamed for (only a consumed position: a read-only log), and the batch's commands were
  // answered UNAVAILABLE.
  // RocksDB refuses every write after a failed WAL write, so retrying in place could only spin;
  // a new process recovers the store from its WAL at open. Hence the default aborts and the
  // orchestrator restarts the process. A test may pass one that returns: the processor then
  // writes nothing more, answers queued commands UNAVAILABLE and refuses new ones.
  std::function<void(const Status& why)> on_fatal = FailStop;
  // Build the next batch while the last one is committed (see above), when at least
  // `overlap_backlog` inputs are queued: a backlog that long is what building early lets the
  // partition work off. A shorter queue waits for the commit and goes into one batch with what
  // comes meanwhile: each input then waits for one commit fewer (paced top-ups at 80,000/s had a
  // p50 of 3-5 ms overlapping every batch, 2-4 ms not overlapping any). Off: each batch is
  // committed before the next is taken (ledger_bench --no-overlap compares the two).
  bool overlap_commits = true;
  size_t overlap_backlog = 256;
};

uint32_t PartitionForKey(std::string_view key, uint32_t partitions);

class Processor {
 public:
  Processor(ProcessorOptions options, eventlog::EventLog* log, bus::Bus* bus, Handler* handler);
  ~Processor();

  // Subscribes to the topics and starts the writer and consumer threads.
  Status Start();
  // Queues a command for the partition that owns `key`. Never blocks: a full queue answers
  // RESOURCE_EXHAUSTED so that callers back off. Once queued, a command is answered once: by its
  // Reply after the commit, by itself (returning no Reply), or by `on_failure` if it threw or
  // never ran.
  // `on_failure` may be null only when nobody waits for the answer.
  Status Submit(std::string_view key, Command command, Failed on_failure) {
    return SubmitTo(PartitionForKey(key, log_->partitions()), std::move(command), std::move(on_failure));
  }
  // `hint`, if not null, is handed to Handler::Prefetch while the two inputs before the command
  // run; it must stay valid as long as the command (say, point into what the command owns).
  Status SubmitTo(uint32_t partition, Command command, Failed on_failure, const void* hint = nullptr);
  // Stops consuming, lets the writers finish what is queued, and joins every thread.
  void Stop();
  // Whether a commit failed for good (the process is fail-stopping: the handler's state may then
  // hold what the store does not), or a writer's last commit at Stop (Handler::BeforeStop) failed.
  bool store_broken() const { return store_broken_; }
  bool stop_commit_failed() const { return stop_commit_failed_; }

  uint32_t partitions() const { return log_->partitions(); }
  // True on a writer or committer thread (any processor's): code there (a Reply, say) must not
  // wait for a writer's answer.
  static bool OnWriterThread();
  eventlog::EventLog* log() const { return log_; }

 private:
  // "Every message of (topic, source partition) up to `position` has been routed": sent to
  // every writer after each poll. A writer that reaches it (queues are FIFO) has processed all
  // such messages routed to it, so it may store the position even if none was its own. Without
  // it a writer that never gets messages of a source partition would hold the restart position
  // of every consumer at the beginning of the topic.
  struct Watermark {
    std::string topic;
    uint32_t source_partition = 0;
    eventlog::Position position;
  };
  struct Input {
    Command command;                        // Set for commands,
    std::shared_ptr<bus::Message> message;  // or for consumed messages,
    std::shared_ptr<Watermark> watermark;   // or for watermarks.
    int failures = 0;                       // Failed batches this input was blamed for.
    Failed on_failure;                      // Commands: their answer if they throw.
    Status last_failure = Status::Ok();     // Why the last batch it made fail failed.
    const void* hint = nullptr;             // Commands: for Handler::Prefetch.
  };
  // A message blamed for this many failed batches is set aside so it cannot block the partition.
  static constexpr int kMaxMessageFailures = 3;
  // topic -> source partition -> last applied position.
  using Applied = std::map<std::string, std::vector<eventlog::Position>>;
  // A command's Reply and the range of the batch's events it appended.
  struct Pending {
    Reply reply;
    size_t begin, end;
  };
  // A batch being committed, by the committer thread or by the writer itself (RunFlight): what
  // its commit writes and what answers it.
  struct Flight {
    std::vector<Input> batch;
    std::vector<Pending> replies;
    Applied applied;          // The positions as of this batch.
    eventlog::WriteSet ws;    // Moved into the commit by the committer.
    uint64_t head_after = 0;  // The partition's head once it is committed.
    size_t taken_suspects = 0;
    bool started = false;  // Under flight_mu: its commit began (or the writer runs it itself).
    bool done = false;     // Under flight_mu, once `commit` is set.
    Status commit;         // The commit's status, once done.
  };
  // What became of a batch in flight once the writer took it back (Land).
  enum class Landed { kNone, kCommitted, kUndone, kStopped };
  struct LandedBatch {
    Landed what = Landed::kNone;
    size_t requeued = 0;  // kUndone: its inputs put back at the front of the queue.
    Status why;           // kUndone: the refusal.
  };
  struct Partition {
    std::mutex mu;
    std::condition_variable not_empty, not_full;
    std::deque<Input> queue;
    // The committed positions. Writer thread only.
    Applied applied;
    std::thread thread;
    // The batch in flight (null: none) and the committer thread that takes it when it is handed
    // over.
    std::mutex flight_mu;
    std::condition_variable flight_cv;
    std::unique_ptr<Flight> flight;
    bool committer_stop = false;
    std::thread committer;
    // After a refused batch: how many inputs at the front of the queue are suspects, and how
    // many of them to take per batch (see Land). Writer thread only.
    size_t suspects = 0;
    size_t suspect_batch = 0;
  };

  Status LoadApplied(uint32_t p);
  void WriterLoop(uint32_t p);
  void CommitterLoop(uint32_t p);
  // Makes `f` p's batch in flight (none may be): for the committer thread to run, or, without
  // `by_committer`, for the writer to run itself with RunFlight.
  void Launch(uint32_t p, std::unique_ptr<Flight> f, bool by_committer);
  // Commits `f`, answers its replies if it is durable, and marks it done: on the committer
  // thread (`by_committer`) or on the writer.
  void RunFlight(uint32_t p, Flight* f, bool by_committer);
  // Waits for p's batch in flight, if any, and deals with its outcome: committed (its replies
  // were answered by the committer), refused (state reloaded, its inputs requeued at the front,
  // its commands answered), or the store broke (answered, on_fatal, queue abandoned).
  LandedBatch Land(uint32_t p);
  // A batch of p is durable (or wrote nothing): its positions are the committed ones.
  void Committed(uint32_t p, Applied applied, size_t taken_suspects);
  // After a failed batch: puts its messages, watermarks and the commands that never ran back
  // into p's queue at `at`, in order, counting a failure against `blamed` (SIZE_MAX: nobody).
  // Returns how many went back.
  size_t Requeue(uint32_t p, std::vector<Input>& batch, size_t processed, size_t blamed, const Status& failure,
                 size_t at);
  static void Answer(std::vector<Pending>& replies, const Status& status,
                     std::span<const eventlog::Envelope> committed);
  // The end of WriterLoop once it is told to stop and its queue is empty: Handler::BeforeStop.
  void FinishWriter(uint32_t p);
  // WriterLoop with an empty queue: Handler::OnIdle, committed without inputs.
  void IdleWriter(uint32_t p);
  // Lets the handler `write` (OnIdle, BeforeStop) into a WriteSet and commits it if not empty:
  // true if something was committed.
  Result<bool> CommitHook(uint32_t p, const char* hook, void (Handler::*write)(uint32_t, eventlog::WriteSet&));
  // Once the store is broken: answers partition p's queued commands `why` and drops its other
  // inputs (consumed messages come again from the stored positions after the restart).
  void AbandonQueue(uint32_t p, const Status& why);
  void ConsumerLoop(const std::string& topic, bus::Consumer* consumer);
  // Queues `in` on partition p, waiting for room (consumers are back-pressured, never dropped).
  bool Enqueue(uint32_t p, Input in);
  std::string PositionKey(const std::string& topic, uint32_t partition) const;

  const ProcessorOptions options_;
  eventlog::EventLog* log_;
  bus::Bus* bus_;
  Handler* handler_;
  std::vector<std::unique_ptr<Partition>> parts_;
  std::vector<std::unique_ptr<bus::Consumer>> consumers_;
  std::vector<std::thread> consumer_threads_;
  std::atomic<bool> stop_consuming_{false};
  std::atomic<bool> stop_writing_{false};
  std::atomic<bool> store_broken_{false};  // A commit failed for good: nothing is written again.
  std::atomic<bool> stop_commit_failed_{false};  // A writer's BeforeStop commit failed.
  bool started_ = false;
};

}  // namespace wattledger::runtime
