// LedgerService: the ledger as a hosted service. It owns the ledger's EventLog, a runtime
// Processor (one writer thread per log partition), one domain Ledger per partition, and the gRPC
// API. Accounts are partitioned by account id; a transaction id is the event id of the first
// event it appended ("ledger/<partition>/<seq>"), so a reversal finds its partition from it.
//
// State: the domain Ledger of each partition lives in memory and is rebuilt at start by folding
// that partition's events (the log is the truth). Every query is answered from it, on the
// partition's writer, once the batch the query ran in is durable: a reader sees every
// acknowledged write and nothing that could still be undone.
//
// Views: the log's state column family holds a view of every account ("acct/<id>": the
// v1.Account, tagged with the seq of the partition's event it is as of) and of each partition's
// system accounts ("sys/<partition>/<name>", as of the seq in "view/<partition>"). A view is
// correct as of its own tag; views are not all of one moment. A posting writes no view: the
// writer remembers the accounts it owes views of, oldest first, and each batch writes a few of
// them (one per view_postings_per_write postings of the batch, and those owed longer than
// view_max_age, at most view_max_per_batch of these; an idle partition writes the latter on its
// idle turn), so that a busy account's view is written once for many postings and no batch
// writes thousands at once. A new account's view is written with the
// batch that opens it, so that the views list every account (ListAccounts pages through them).
// Stop writes everything owed. "view/<partition>" also records the low-water mark: every change
// up to it is in the views, so a restart owes the views of what moved after it.
// `wattledger ledger replay --verify` folds the log and materialises each view at its own tag.
//
// Meters: a meter belongs to at most one account across all partitions. The domain checks this
// within a partition; MeterClaims checks it across partitions. A claim is taken when a decision
// is made (refused if another account holds it) and given up only once the decision that
// releases it is durable, so that no failed commit can leave a meter with two owners.
//
// Thread safety: gRPC handlers run on gRPC's threads and hand work to the partition writers;
// domain state is only touched by its partition's writer thread. Statements are walked through
// the log on the service's one statement reader thread (LogReader), which reads no domain state.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/ledger/adapters/checkpoint.h"
#include "services/ledger/adapters/key_claims.h"
#include "services/ledger/domain/ledger.h"
#include "wattledger/base/pointer_map.h"
#include "wattledger/ledger/v1/ledger.grpc.pb.h"
#include "wattledger/runtime/processor.h"
#include "wattledger/server/server.h"

namespace wattledger::ledger::adapters {

inline constexpr char kLedgerTopic[] = "ledger";
inline constexpr char kBillingTopic[] = "billing";

struct LedgerOptions {
  LedgerConfig config;
  // Topics to consume. The ledger consumes billing's usage charges.
  std::vector<std::string> topics = {kBillingTopic};
  Clock* clock = SystemClock::Default();
  // How long an RPC waits for its partition's writer before answering DEADLINE_EXCEEDED.
  std::chrono::milliseconds rpc_deadline{30'000};
  // How fast a partition writes the views it owes (see the file comment): one per this many
  // postings (accepted commands other than opens), and those owed for longer than view_max_age,
  // at most view_max_per_batch of these in one batch.
  size_t view_postings_per_write = 16;
  std::chrono::milliseconds view_max_age{10'000};
  size_t view_max_per_batch = 1'024;
  // Each writer builds its next batch while the last one is committed (runtime::ProcessorOptions).
  bool overlap_commits = true;
  // How many accounts a filtered ListAccounts page looks at, at most (or page_size, if more),
  // for its matches: a page answers in bounded time however rare the matches.
  size_t list_accounts_examined = 10'000;
  // Where each partition's checkpoint is written at a clean stop and read at start (see
  // checkpoint.h); empty: none, every start folds the whole log.
  std::string checkpoint_dir;
  // The build the checkpoints must be of; tests set another to stand for an upgrade.
  std::string checkpoint_build = BuildId();
};

// How a partition's state was rebuilt at its last Reload.
struct PartitionStart {
  uint64_t checkpoint_seq = 0;  // The checkpoint's seq, when one was loaded.
  bool from_checkpoint = false;
  std::string checkpoint_unused;  // Why none was loaded ("" if one was, or none is kept).
  uint64_t folded = 0;            // Events folded from the log.
};

// Which account owns each meter, over every partition. Thread-safe.
class MeterClaims {
 public:
  // Claims `meter` for `account` (owned by `partition`); false if another account holds it.
  bool Claim(const std::string& meter, const std::string& account, uint32_t partition);
  void Release(const std::string& meter, const std::string& account);
  // Replaces the claims of one partition with `owners` (meter -> account).
  void ResetPartition(uint32_t partition, const std::map<std::string, std::string, std::less<>>& owners);
  std::string OwnerOf(const std::string& meter) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::pair<std::string, uint32_t>> owner_;
};

// Claims `key` for `owner` (its partition and the seq of the txn that would use it) on behalf of
// `request` (DescribeKeyedRequest of its event, which a refusal spells out): nullopt if the
// request may go ahead. Otherwise the refusal: ALREADY_EXISTS `idempotency_key_reused` when
// another partition recorded a request with the key (its seq at most that partition's
// `head_of`, and still its claim after the head was read), else UNAVAILABLE
// `idempotency_key_in_flight` (its request may still be undone: retry).
std::optional<Rejection> ClaimKey(KeyClaims& claims, std::string_view key, KeyClaims::Owner owner,
                                  std::string_view request, const std::function<uint64_t(uint32_t)>& head_of);

// The state-CF views; the same code serves the live writers and replay, so equal states give
// equal digests. An account's view is tagged with the seq it is as of.
void MaterializeAccount(const Account& account, uint64_t seq, eventlog::WriteSet& ws);
// What MaterializeAccount stored: the tag and the account. A value without a tag (written before
// views were tagged) gets `untagged`.
Status ParseAccountView(std::string_view value, uint64_t untagged, uint64_t* seq, v1::Account* account);
// The system balances as the views last written hold them; a name missing is unknown.
using SystemViews = std::map<std::string, int64_t, std::less<>>;
// The system accounts of a partition that has any transaction (none for one without); with
// `written`, only those whose balance differs from it, and it is updated to match.
void MaterializeSystem(uint32_t partition, const Ledger& ledger, eventlog::WriteSet& ws,
                       SystemViews* written = nullptr);
// The "view/<partition>" record.
struct ViewMark {
  uint64_t low = 0;  // Every change of the partition up to this seq is in its views.
  uint64_t seq = 0;  // Its system accounts' views are as of this seq.
  // Stored as one number (low = seq), with untagged views all of that moment: the form before
  // views were tagged. Start rewrites such a partition's views as it does one without a mark.
  bool untagged = false;
};
void MaterializeViewMark(uint32_t partition, const ViewMark& mark, eventlog::WriteSet& ws);
std::string ViewMarkKey(uint32_t partition);
// The record of `partition` in `log`: nullopt if it never wrote one (a log written before views
// had marks, or one never written to: its views, if any, are untagged and as of its head).
Result<std::optional<ViewMark>> ReadViewMark(const eventlog::EventLog& log, uint32_t partition);
Result<ViewMark> ParseViewMark(const eventlog::EventLog& log, uint32_t partition, std::string_view value);

// Folds the events of one log partition with from_seq <= seq <= to_seq into `ledger` (in order,
// a decision at a time), which must hold the state before from_seq. `on_event`, if given, is
// called with the account and seq of each event folded, once the decision it belongs to is
// applied (so the account exists), and not for a decision that fails to apply. An event that
// makes a statement entry must be the event its txn id names (the id of a txn is that of its
// first event). A fold to the end (to_seq UINT64_MAX) ends with the ledger's whole-state
// invariant check.
Status Rebuild(const eventlog::EventLog& log, uint32_t partition, Ledger* ledger, uint64_t from_seq = 1,
               uint64_t to_seq = UINT64_MAX,
               const std::function<void(const std::string& account, uint64_t seq)>& on_event = nullptr);

// What ReplayViews found.
struct ReplayReport {
  std::string live_digest;      // Of `live`'s state column family,
  std::string replayed_digest;  // and of what the fold wrote: equal when the views are right.
  std::vector<uint64_t> view_heads;  // Per partition, the seq its system accounts were compared at,
  std::vector<uint64_t> view_lows;   // and the seq up to which every change is in its views.
  uint64_t accounts = 0;             // Account views compared.
};

// Audit replay: folds each partition of `live` into the empty `fresh` (same partitions) and
// materialises every view at the seq it is tagged with in `live` (an account without a view in
// `live` gets one as of the end, which then differs); the fold goes on to the partition's end, so
// every later event must fit the state too. An account that changed after its view's tag and
// before the mark's low (a view the writer forgot), an event that does not fit, or a tag beyond
// the log is DATA_LOSS. `live` must not be written meanwhile: the CLI opens it read-only, which
// sees the store as it was when opened, next to a running ledger.
Result<ReplayReport> ReplayViews(const eventlog::EventLog& live, eventlog::EventLog* fresh);

// What an audit makes of a partition's checkpoint (VerifyCheckpoint).
struct CheckpointCheck {
  uint32_t partition = 0;
  bool present = false;   // A checkpoint file is there.
  bool checked = false;   // It was read and compared.
  bool equal = false;     // Its state equals the fold of the log up to its seq.
  uint64_t seq = 0;
  std::string note;       // Why it was not checked, or where it differs.
};
// Reads partition p's checkpoint in `dir` (if any) and compares it with a fold of `log` from its
// first event up to the checkpoint's seq. One this build may not read is reported, not checked
// (the service would not use it either); a damaged one is checked and not equal.
CheckpointCheck VerifyCheckpoint(const eventlog::EventLog& log, const std::string& dir, uint32_t partition);

// The statement of `account_id` over [from_us, to_us), read from `log`: its entries are walked
// back from the one at `last_entry_seq` (the account's latest; 0 for none) through each entry's
// link to the one before it (EntryLink), and rebuilt from their events. Times need not grow with
// the log (a charge carries its usage's time), so the walk goes on until an entry whose link says
// that it and every entry before it are earlier than the period (StatementWalkEnds): it reads the
// entries since the period began, and those whose times run ahead of their place. It never stops
// at a link that does not say (written before links did). `entries_read`, if given, is how many
// entries were read.
Result<Statement> ReadStatement(const eventlog::EventLog& log, const std::string& account_id, uint64_t last_entry_seq,
                                int64_t from_us, int64_t to_us, size_t* entries_read = nullptr);

// One thread that runs what is posted to it, in order: reads of the log too long for a writer or
// a committer, whose commits and answers would wait for them.
class LogReader {
 public:
  // At most `capacity` pieces of work wait at once.
  explicit LogReader(size_t capacity = 256);
  ~LogReader();
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;
  // Queues `work`, or (and `work` never runs) UNAVAILABLE once Stop began and RESOURCE_EXHAUSTED
  // while `capacity` wait.
  Status Post(std::function<void()> work);
  // Runs what was queued, then ends the thread. Idempotent.
  void Stop();
  // Whether the calling thread is a LogReader's.
  static bool OnReaderThread();

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  const size_t capacity_;
  bool stopping_ = false;
  std::thread thread_;
};

class LedgerService final : public server::Service, public runtime::Handler, public v1::LedgerService::Service {
 public:
  LedgerService(std::unique_ptr<eventlog::EventLog> log, LedgerOptions options);
  ~LedgerService() override;

  // server::Service
  std::string name() const override { return "ledger"; }
  eventlog::EventLog* log() override { return log_.get(); }
  // Serves gRPC through the callback API (see LedgerGrpc), so that an RPC in flight holds no thread.
  void Register(grpc::ServerBuilder& builder) override;
  Status Publish(bus::Bus* bus) override;
  Status Start(bus::Bus* bus) override;
  void Stop() override;

  // runtime::Handler
  // Usage goes to the partition of its payload's account_id, not of the envelope's key.
  uint32_t Route(const bus::Message& message, uint32_t partitions) override;
  void OnMessage(uint32_t partition, const bus::Message& message, eventlog::WriteSet& ws) override;
  // Records the usage event as CommandRejected, rule "poison_input".
  void OnPoison(uint32_t partition, const bus::Message& message, const Status& why, eventlog::WriteSet& ws) override;
  // Reads the clocks for the batch: its commands are decided at the time it starts.
  void BeforeBatch(uint32_t partition) override;
  // Writes the views of new accounts and a few of those owed, oldest first.
  void BeforeCommit(uint32_t partition, eventlog::WriteSet& ws) override;
  // Writes the views owed longer than view_max_age, when no batch comes to do it.
  void OnIdle(uint32_t partition, eventlog::WriteSet& ws) override;
  // Writes every view still owed: a clean stop leaves every view up to date.
  void BeforeStop(uint32_t partition, eventlog::WriteSet& ws) override;
  Status Reload(uint32_t partition) override;
  // Starts loading what the queued mutation `hint` (its Command) will look up first: its account
  // and key (Ledger::Prefetch).
  void Prefetch(uint32_t partition, const void* hint, int ahead) override;

  // The answer to a mutation or a query, called exactly once: on a partition's committer thread
  // after the commit (on its writer when the batch wrote nothing or failed), or on the caller's thread when the request was refused before it was queued (a
  // query over several partitions that one of them refused: on another one's writer, or there).
  // `response` is set (and may be moved from) only when the status is OK. It may start other
  // *Async calls, but not wait on the ledger: the synchronous methods and queries made on a
  // writer thread are answered FAILED_PRECONDITION (they would wait for their own writer).
  template <typename Resp>
  using Done = std::function<void(grpc::Status status, Resp* response)>;
  using MutationDone = Done<v1::MutationResponse>;

  // Mutations without a waiting thread: as many may be in flight as the partitions' queues hold
  // (a full queue answers RESOURCE_EXHAUSTED). The synchronous methods below wait on these.
  void OpenAccountAsync(const v1::OpenAccountRequest& req, MutationDone done);
  void AttachMeterAsync(const v1::MeterRequest& req, MutationDone done);
  void DetachMeterAsync(const v1::MeterRequest& req, MutationDone done);
  void SetLimitsAsync(const v1::SetLimitsRequest& req, MutationDone done);
  void SuspendAsync(const v1::SuspendRequest& req, MutationDone done);
  void ResumeAsync(const v1::ResumeRequest& req, MutationDone done);
  void TransferOwnershipAsync(const v1::TransferRequest& req, MutationDone done);
  void CloseAccountAsync(const v1::CloseAccountRequest& req, MutationDone done);
  void TopUpAsync(const v1::TopUpRequest& req, MutationDone done);
  void RefundAsync(const v1::RefundRequest& req, MutationDone done);
  void ReverseAsync(const v1::ReverseRequest& req, MutationDone done);
  void AdjustAsync(const v1::AdjustRequest& req, MutationDone done);

  // Queries without a waiting thread, answered by the writers of the partitions they read (after
  // their batch is durable), like the mutations. The synchronous methods below wait on these.
  void GetAccountAsync(const v1::GetAccountRequest& req, Done<v1::Account> done);
  void ListAccountsAsync(const v1::ListAccountsRequest& req, Done<v1::ListAccountsResponse> done);
  // Answered on the statement reader's thread (LogReader), after the account's writer named its
  // latest entry.
  void GetStatementAsync(const v1::GetStatementRequest& req, Done<v1::GetStatementResponse> done);
  void GetTransactionAsync(const v1::GetTransactionRequest& req, Done<v1::Transaction> done);
  void GetTotalsAsync(const v1::LedgerTotalsRequest& req, Done<v1::LedgerTotalsResponse> done);

  // The writers, for tests that need to place work between a service's commands.
  runtime::Processor* processor() const { return processor_.get(); }
  // How each partition was rebuilt at its last Reload; while the service is not running.
  const std::vector<PartitionStart>& starts() const { return starts_; }
  // Ledger::CanonicalDump of a partition's ledger; while the service is not running.
  std::string CanonicalDump(uint32_t partition) const { return ledgers_[partition]->CanonicalDump(); }

  // gRPC API (also called in-process by the fleet simulator with a null context).
  grpc::Status OpenAccount(grpc::ServerContext*, const v1::OpenAccountRequest*, v1::MutationResponse*) override;
  grpc::Status AttachMeter(grpc::ServerContext*, const v1::MeterRequest*, v1::MutationResponse*) override;
  grpc::Status DetachMeter(grpc::ServerContext*, const v1::MeterRequest*, v1::MutationResponse*) override;
  grpc::Status SetLimits(grpc::ServerContext*, const v1::SetLimitsRequest*, v1::MutationResponse*) override;
  grpc::Status Suspend(grpc::ServerContext*, const v1::SuspendRequest*, v1::MutationResponse*) override;
  grpc::Status Resume(grpc::ServerContext*, const v1::ResumeRequest*, v1::MutationResponse*) override;
  grpc::Status TransferOwnership(grpc::ServerContext*, const v1::TransferRequest*, v1::MutationResponse*) override;
  grpc::Status CloseAccount(grpc::ServerContext*, const v1::CloseAccountRequest*, v1::MutationResponse*) override;
  grpc::Status TopUp(grpc::ServerContext*, const v1::TopUpRequest*, v1::MutationResponse*) override;
  grpc::Status Refund(grpc::ServerContext*, const v1::RefundRequest*, v1::MutationResponse*) override;
  grpc::Status Reverse(grpc::ServerContext*, const v1::ReverseRequest*, v1::MutationResponse*) override;
  grpc::Status Adjust(grpc::ServerContext*, const v1::AdjustRequest*, v1::MutationResponse*) override;
  grpc::Status GetAccount(grpc::ServerContext*, const v1::GetAccountRequest*, v1::Account*) override;
  grpc::Status ListAccounts(grpc::ServerContext*, const v1::ListAccountsRequest*, v1::ListAccountsResponse*) override;
  grpc::Status GetStatement(grpc::ServerContext*, const v1::GetStatementRequest*, v1::GetStatementResponse*) override;
  grpc::Status GetTransaction(grpc::ServerContext*, const v1::GetTransactionRequest*, v1::Transaction*) override;
  grpc::Status GetTotals(grpc::ServerContext*, const v1::LedgerTotalsRequest*, v1::LedgerTotalsResponse*) override;

 private:
  struct Outcome;
  struct Mutation;

  // Runs a domain command on `partition`'s writer: decides, records the events (or the
  // rejection), updates the in-memory ledger and notes the views it now owes.
  Outcome Execute(uint32_t partition, const Command& command, eventlog::WriteSet& ws,
                  eventlog::Causation causation, const std::string& actor);
  // Queues `command` (converted and checked from its request) on `partition`'s writer, which
  // gives it its txn id and time, executes it and answers `done` once it is durable.
  void MutateAsync(uint32_t partition, std::string request_id, Command command, MutationDone done);
  // Starts a call with `start` and waits for its answer, at most options_.rpc_deadline (then
  // DEADLINE_EXCEEDED, saying "the ledger did not answer in time; <on_deadline>").
  template <typename Resp>
  grpc::Status Await(const std::function<void(Done<Resp>)>& start, Resp* out, const char* on_deadline);
  // Runs `fn` on each partition's writer (a read of the in-memory ledger) and calls `done` with
  // the results in the order of `partitions` once every writer answered, each after its batch
  // is durable; the first partition's error wins. `done` runs on a writer or committer thread,
  // or on the caller's if the call is refused at once (not started, or made from a writer thread, which
  // would wait for itself: FAILED_PRECONDITION).
  template <typename Resp>
  void OnWritersAsync(std::vector<uint32_t> partitions, std::function<grpc::Status(uint32_t, const Ledger&, Resp*)> fn,
                      std::function<void(grpc::Status, std::vector<Resp>*)> done);
  template <typename Resp>
  void OnWriterAsync(uint32_t partition, std::function<grpc::Status(const Ledger&, Resp*)> fn, Done<Resp> done);
  // Whether checkpoints are written and read: a directory is set and the build has an ID.
  bool CheckpointsOn() const;
  // Writes the views partition p owes: with `all`, every one; else as the options say.
  void WriteOwedViews(uint32_t partition, eventlog::WriteSet& ws, bool all);
  std::string NextTxnId(uint32_t partition, const eventlog::WriteSet& ws) const;
  Result<uint32_t> PartitionOfTxn(const std::string& txn_id) const;
  // The partition a mutation runs on: its account's, or for a reversal the original txn's.
  template <typename Request>
  Result<uint32_t> PartitionOf(const Request& req) const;

  std::unique_ptr<eventlog::EventLog> log_;
  LedgerOptions options_;
  std::vector<std::unique_ptr<Ledger>> ledgers_;  // One per partition, owned by its writer.
  std::vector<PartitionStart> starts_;  // Per partition, written by its Reload.
  // The views each partition owes: accounts it moved after their views were last written, in the
  // order they became owed. Writer p only.
  // Accounts are held by address, which stays put while the partition's Ledger lives (see
  // Ledger::ApplyAll); Reload replaces a partition's Owed with its Ledger.
  struct Owed {
    struct Entry {
      const Account* account;
      uint64_t seq;  // The first event that moved it since its view was written.
      std::chrono::steady_clock::time_point since;
    };
    std::deque<Entry> queue;  // Oldest first; an entry whose account is no longer owed (or owed
                              // again, from a later seq) is skipped.
    PointerMap<Account, uint64_t> seq_of;  // Owed accounts: a posting looks its account up here.
    std::vector<const Account*> opened;  // Opened in this batch: their views are written with it.
    size_t postings = 0;              // Accepted in this batch.
    size_t credit = 0;                // Postings not yet paid for with a view write.
    // What this partition's system views hold once the batches that wrote them commit. A batch
    // that fails reloads the partition with a new Owed, so nothing is skipped on its word.
    SystemViews system_written;
    void Add(const Account* account, uint64_t seq, std::chrono::steady_clock::time_point now);
    // The oldest entry still owed, or null.
    const Entry* Front();
  };
  std::vector<Owed> owed_;
  // When each partition's current batch started (BeforeBatch): the time of its commands, and of
  // the views they leave owed. Writer p only. A command's time_us is its batch's: the batch
  // commits at one instant, and one clock read per batch spares two per command.
  struct BatchTime {
    int64_t wall_us = 0;
    std::chrono::steady_clock::time_point steady;
  };
  std::vector<BatchTime> batch_time_;
  MeterClaims claims_;
  KeyClaims key_claims_;
  std::unique_ptr<runtime::Processor> processor_;
  bool stopped_ = false;  // Stop ran (it runs once: the checkpoints are written then).
  std::unique_ptr<LogReader> reader_;  // Of statements; made by Start, stopped after the writers.
  std::unique_ptr<grpc::Service> grpc_;  // What Register() gives gRPC.
};

}  // namespace wattledger::ledger::adapters
