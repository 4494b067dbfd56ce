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
// Views: the log's state column family holds a materialised view of every account and system
// account ("acct/<id>", "sys/<partition>/<name>"), as of the event recorded in
// "view/<partition>". It is written as a checkpoint, not per commit: the accounts a partition's
// batches moved are remembered and their views written together, by the batch that opens an
// account (so that the view lists every account: ListAccounts pages through it), once
// view_flush_accounts accounts are waiting, once view_flush_interval has passed, and on Stop.
// A posting therefore costs no view write of its own. `wattledger ledger replay --verify` folds
// each partition up to its "view/<partition>" event and compares the digests.
//
// Meters: a meter belongs to at most one account across all partitions. The domain checks this
// within a partition; MeterClaims checks it across partitions. A claim is taken when a decision
// is made (refused if another account holds it) and given up only once the decision that
// releases it is durable, so that no failed commit can leave a meter with two owners.
//
// Thread safety: gRPC handlers run on gRPC's threads and hand work to the partition writers;
// domain state is only touched by its partition's writer thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "services/ledger/domain/ledger.h"
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
  // When a partition writes the views of the accounts it moved (see the file comment): once this
  // many are waiting (bounds the batch that writes them), or this long after the last write.
  size_t view_flush_accounts = 4'096;
  std::chrono::milliseconds view_flush_interval{1'000};
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

// Builds the state-CF view of a ledger partition's accounts; the same code serves the live
// checkpoints and replay, so equal ledgers give equal digests.
void MaterializeAccount(const Account& account, eventlog::WriteSet& ws);
void MaterializeAccount(const v1::Account& account, eventlog::WriteSet& ws);
// The system accounts of a partition that has any transaction (none for one without).
void MaterializeSystem(uint32_t partition, const Ledger& ledger, eventlog::WriteSet& ws);
// "The views of `partition` are as of its event `seq`."
void MaterializeViewHead(uint32_t partition, uint64_t seq, eventlog::WriteSet& ws);
// The state key of that record, and its value in `log`: nullopt if the partition never wrote one
// (its views, if any, are then as of its head: logs written before views were checkpoints).
std::string ViewHeadKey(uint32_t partition);
Result<std::optional<uint64_t>> ViewHead(const eventlog::EventLog& log, uint32_t partition);
Result<uint64_t> ParseViewHead(uint32_t partition, std::string_view value);

// Folds the events of one log partition with from_seq <= seq <= to_seq into `ledger` (in order,
// a decision at a time), which must hold the state before from_seq. If `touched` is given, the
// accounts the folded events moved are added to it. A fold to the end (to_seq UINT64_MAX) ends
// with the ledger's whole-state invariant check.
Status Rebuild(const eventlog::EventLog& log, uint32_t partition, Ledger* ledger, uint64_t from_seq = 1,
               uint64_t to_seq = UINT64_MAX, std::unordered_set<std::string>* touched = nullptr);

// What ReplayViews found.
struct ReplayReport {
  std::string live_digest;      // Of `live`'s state column family,
  std::string replayed_digest;  // and of what the fold wrote: equal when the views are right.
  std::vector<uint64_t> view_heads;  // Per partition, the event the views were compared at.
  uint64_t accounts = 0;             // Accounts materialised.
};

// Audit replay: folds each partition of `live` up to its view head, materialises that into the
// empty `fresh` (same partitions), and folds the rest of the partition, which checks that every
// later event fits the state too. The view heads are read from the snapshot the live digest is
// taken of, and the events up to them never change, so a writer that goes on meanwhile changes
// nothing that is compared. An event that does not fit is DATA_LOSS naming it.
Result<ReplayReport> ReplayViews(const eventlog::EventLog& live, eventlog::EventLog* fresh);

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
  // Writes the views of the accounts moved since the last checkpoint, when one is due.
  void BeforeCommit(uint32_t partition, eventlog::WriteSet& ws) override;
  // Hands the checkpoint BeforeCommit staged, now that its batch is durable, to the view writer.
  void AfterCommit(uint32_t partition) override;
  // Writes every view still owed: a clean stop leaves the views as of the log's head.
  void BeforeStop(uint32_t partition, eventlog::WriteSet& ws) override;
  Status Reload(uint32_t partition) override;

  // The answer to a mutation, called exactly once: on a writer thread after the commit, or on the
  // caller's thread when the request was refused before it was queued. `response` is set (and
  // may be moved from) only when the status is OK. It must not query the ledger (a query waits for a
  // writer, and this runs on one): such a query is answered FAILED_PRECONDITION.
  using MutationDone = std::function<void(grpc::Status status, v1::MutationResponse* response)>;

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

  // The writers, for tests that need to place work between a service's commands.
  runtime::Processor* processor() const { return processor_.get(); }

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
  using Build = std::function<Result<Command>(std::string txn_id, int64_t time_us)>;

  // Runs a domain command on `partition`'s writer: decides, records the events (or the
  // rejection), updates the in-memory ledger and the materialised view.
  Outcome Execute(uint32_t partition, const Command& command, eventlog::WriteSet& ws,
                  const eventlog::Causation& causation, const std::string& actor);
  void MutateAsync(uint32_t partition, std::string request_id, Build build, MutationDone done);
  // Starts a mutation with `start` and waits for its answer, at most options_.rpc_deadline.
  grpc::Status AwaitMutation(const std::function<void(MutationDone)>& start, v1::MutationResponse* response);
  // Runs `fn` on the partition's writer thread (a read that needs the in-memory ledger), waits,
  // and moves its result into *out. `fn` fills a result owned by the call's shared state, never
  // *out itself, so a late answer after a deadline writes nothing the RPC has given up.
  template <typename Resp>
  grpc::Status OnWriter(uint32_t partition, std::function<grpc::Status(const Ledger&, Resp*)> fn, Resp* out);
  // OnWriter on several partitions at once (each answers after its own batch): (*out)[i] is the
  // result of partitions[i]. The first error wins.
  template <typename Resp>
  grpc::Status OnWriters(const std::vector<uint32_t>& partitions,
                         std::function<grpc::Status(uint32_t, const Ledger&, Resp*)> fn, std::vector<Resp>* out);
  // The views partition p owes, as of its event `seq` (the end of the current batch): the
  // accounts it moved since its last checkpoint and its system accounts. Clears what it owes.
  // Writer p only.
  struct Checkpoint {
    uint32_t partition = 0;
    uint64_t seq = 0;
    std::vector<v1::Account> accounts;
    std::vector<std::pair<std::string, int64_t>> system;  // Empty while it has no transaction.
  };
  Checkpoint TakeCheckpoint(uint32_t partition, uint64_t seq);
  static void WriteCheckpoint(const Checkpoint& checkpoint, eventlog::WriteSet& ws);
  // Waits until the view writer has committed every checkpoint of partition p handed to it: a
  // partition's checkpoints land in order, whoever writes them.
  void WaitViewsLanded(uint32_t partition);
  void ViewWriterLoop();
  void StopViewWriter();
  std::string NextTxnId(uint32_t partition, const eventlog::WriteSet& ws) const;
  Result<uint32_t> PartitionOfTxn(const std::string& txn_id) const;

  std::unique_ptr<eventlog::EventLog> log_;
  LedgerOptions options_;
  std::vector<std::unique_ptr<Ledger>> ledgers_;  // One per partition, owned by its writer.
  // What each partition moved since its views were last written. Writer p only.
  struct Dirty {
    std::unordered_set<std::string> accounts;
    bool opened = false;  // An account was opened: its view must be written with this batch.
    std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();
  };
  std::vector<Dirty> dirty_;
  // A checkpoint BeforeCommit took, until AfterCommit hands it over (or Reload drops it with its
  // failed batch). Writer p only.
  std::vector<std::optional<Checkpoint>> staged_;
  // The view writer: one thread that commits the partitions' checkpoints in the order they were
  // handed over, so that a writer that took one does not wait for its serialisation and write.
  std::mutex views_mu_;
  std::condition_variable views_cv_;  // Work queued, stop asked, or a checkpoint landed.
  std::deque<Checkpoint> views_queue_;
  std::vector<size_t> views_in_flight_;  // Per partition: handed over, not yet committed.
  bool views_stop_ = false;
  std::thread views_thread_;
  MeterClaims claims_;
  std::unique_ptr<runtime::Processor> processor_;
  std::unique_ptr<grpc::Service> grpc_;  // What Register() gives gRPC.
};

}  // namespace wattledger::ledger::adapters
