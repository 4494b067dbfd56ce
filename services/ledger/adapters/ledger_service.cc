#include "services/ledger/adapters/ledger_service.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <future>
#include <unordered_map>

#include <google/protobuf/stubs/common.h>

#include "services/ledger/adapters/codec.h"
#include "wattledger/base/check.h"
#include "wattledger/base/log.h"
#include "wattledger/base/thread_name.h"
#include "wattledger/base/utf8.h"
#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/metrics/metrics.h"
#include "wattledger/money/money.h"

namespace wattledger::ledger::adapters {
namespace {

// The mutations, as (method, request, conversion to a Command, idempotency key of the request):
// each answers a MutationResponse, through the callback API and the synchronous one.
#define WL_LEDGER_MUTATIONS(X)                                        \
  X(OpenAccount, OpenAccountRequest, FromProto, NoKey)                \
  X(AttachMeter, MeterRequest, AttachFromProto, NoKey)                \
  X(DetachMeter, MeterRequest, DetachFromProto, NoKey)                \
  X(SetLimits, SetLimitsRequest, FromProto, NoKey)                    \
  X(Suspend, SuspendRequest, FromProto, NoKey)                        \
  X(Resume, ResumeRequest, FromProto, NoKey)                          \
  X(TransferOwnership, TransferRequest, FromProto, NoKey)             \
  X(CloseAccount, CloseAccountRequest, FromProto, NoKey)              \
  X(TopUp, TopUpRequest, FromProto, IdempotencyKey)                   \
  X(Refund, RefundRequest, FromProto, IdempotencyKey)                 \
  X(Reverse, ReverseRequest, FromProto, IdempotencyKey)               \
  X(Adjust, AdjustRequest, FromProto, IdempotencyKey)

// The queries, as (method, request, response): served by the callback API and the synchronous one.
#define WL_LEDGER_READS(X)                                 \
  X(GetAccount, GetAccountRequest, Account)                \
  X(ListAccounts, ListAccountsRequest, ListAccountsResponse) \
  X(GetStatement, GetStatementRequest, GetStatementResponse) \
  X(GetTransaction, GetTransactionRequest, Transaction)    \
  X(GetTotals, LedgerTotalsRequest, LedgerTotalsResponse)

constexpr char kAccountPrefix[] = "acct/";
constexpr char kSystemPrefix[] = "sys/";
constexpr char kViewHeadPrefix[] = "view/";

// Requests and usage events larger than this are refused before anything is decided or recorded.
constexpr size_t kMaxInputBytes = 16 << 10;

// A request with text that is not UTF-8 (see NonUtf8Field), or OK.
grpc::Status CheckUtf8(const google::protobuf::Message& req) {
  auto field = NonUtf8Field(req);
  if (!field) return grpc::Status::OK;
  return {grpc::StatusCode::INVALID_ARGUMENT,
          "field " + *field + " is not valid UTF-8; text must be UTF-8 (send binary ids hex-encoded)"};
}

grpc::Status TooLarge(size_t bytes) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "request of " + std::to_string(bytes) + " bytes exceeds the limit of " +
                          std::to_string(kMaxInputBytes) + "; shorten names, reasons or lists");
}

constexpr const char* kCommandNames[] = {"open_account", "attach_meter", "detach_meter", "set_limits",
                                        "suspend",      "resume",       "transfer",     "close_account",
                                        "top_up",       "refund",       "reverse",      "adjust",
                                        "charge"};
static_assert(std::size(kCommandNames) == std::variant_size_v<Command>);

// kRetry: refused UNAVAILABLE for now (a key another partition's request holds that may still be
// undone), to be sent again; not a "no" to the request, so not counted with the rejections.
enum CommandOutcome { kAccepted, kDuplicate, kRejected, kRetry, kError, kOutcomes };
constexpr const char* kOutcomeNames[] = {"accepted", "duplicate", "rejected", "retry", "error"};

struct LedgerMetrics {
  // Every (command, outcome) counter is made once: a label lookup per command is a hash of a
  // label map, which costs as much as deciding a charge.
  prometheus::Counter* commands[std::size(kCommandNames)][kOutcomes];
  prometheus::Counter& cuts;
  prometheus::Counter& restores;
  prometheus::Counter& views_written;
  // How long a statement's walk back through the log took (its count: statements read), and how
  // many entries it read.
  prometheus::Histogram& statement_seconds;
  prometheus::Histogram& statement_entries;
  prometheus::Counter& Command(const ledger::Command& c, CommandOutcome o) { return *commands[c.index()][o]; }
  static LedgerMetrics& Get() {
    static LedgerMetrics* m = [] {
      auto& r = metrics::Registry();
      auto& cmds = prometheus::BuildCounter().Name("wattledger_ledger_commands_total")
                       .Help("Ledger commands by kind and outcome (accepted, duplicate, rejected, retry: refused for now, "
                             "to be sent again)").Register(r);
      auto& supply = prometheus::BuildCounter().Name("wattledger_ledger_supply_events_total")
                         .Help("Supply cut-required and restore-allowed events emitted").Register(r);
      auto& views = prometheus::BuildCounter().Name("wattledger_ledger_views_written_total")
                        .Help("Account views written (a view is written once for many postings)").Register(r);
      auto& statements = prometheus::BuildHistogram().Name("wattledger_ledger_statement_seconds")
                             .Help("Time to read one statement back through the log (one event per entry read)")
                             .Register(r);
      auto& entries = prometheus::BuildHistogram().Name("wattledger_ledger_statement_entries_read")
                          .Help("Entries one statement read: those since its period began, and those whose times "
                                "run ahead of their place in the log (all of them in logs written before links said so)")
                          .Register(r);
      auto* lm = new LedgerMetrics{{}, supply.Add({{"kind", "cut_required"}}), supply.Add({{"kind", "restore_allowed"}}),
                                   views.Add({}),
                                   statements.Add({}, prometheus::Histogram::BucketBoundaries{
                                                          0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30}),
                                   entries.Add({}, prometheus::Histogram::BucketBoundaries{
                                                       10, 100, 1'000, 10'000, 100'000, 1'000'000})};
      for (size_t c = 0; c < std::size(kCommandNames); ++c) {
        for (int o = 0; o < kOutcomes; ++o) {
          lm->commands[c][o] = &cmds.Add({{"command", kCommandNames[c]}, {"outcome", kOutcomeNames[o]}});
        }
      }
      return lm;
    }();
    return *m;
  }
};

std::string CommandName(const Command& c) { return kCommandNames[c.index()]; }

std::string CommandAccount(const Command& c) {
  return std::visit(
      [](const auto& x) -> std::string {
        if constexpr (requires { x.account_id; }) return x.account_id;
        return "";
      },
      c);
}

// A command that moves money on an account it does not otherwise change: answered with the
// account's balance, not the whole account.
bool IsPosting(const Command& c) {
  return std::holds_alternative<TopUp>(c) || std::holds_alternative<Refund>(c) ||
         std::holds_alternative<Reverse>(c) || std::holds_alternative<Adjust>(c) ||
         std::holds_alternative<Charge>(c);
}

std::string CommandOperator(const Command& c) {
  return std::visit(
      [](const auto& x) -> std::string {
        if constexpr (requires { x.operator_id; }) return x.operator_id;
        return "billing";
      },
      c);
}

std::string CommandKey(const Command& c) {
  return std::visit(
      [](const auto& x) -> std::string {
        if constexpr (requires { x.idempotency_key; }) return x.idempotency_key;
        else if constexpr (requires { x.charge_id; }) return x.charge_id;
        return "";
      },
      c);
}

grpc::Status RejectionStatus(const Rejection& r) {
  return grpc::Status(static_cast<grpc::StatusCode>(r.code), r.rule + ": " + r.message);
}

const std::string& UsageType() {
  static const std::string kType = billing::v1::UsageCharged::descriptor()->full_name();
  return kType;
}

eventlog::Causation UsageCause(const bus::Message& m) {
  eventlog::Causation cause;
  cause.set_source_topic(m.topic);
  cause.set_source_partition(m.envelope.partition());
  cause.set_source_seq(m.envelope.seq());
  return cause;
}

// What a rejection copies from outside (ids from a usage payload, a failure's message) must be
// UTF-8 (IsUtf8): else the record could never be read, and EventLog::Commit refuses
// such an aggregate key with the whole batch. A payload that failed to parse for that reason
// still holds the bytes it read of the bad field.

// `id` if it may be recorded, else "": one that is too long or not UTF-8 is dropped rather than
// mended, since a mended id could name another account or charge.
std::string RecordableId(const std::string& id) { return id.size() <= 256 && IsUtf8(id) ? id : ""; }

// At most `max_bytes` of `text`, with '?' for each byte that belongs to no UTF-8 character (also
// those of a character the bound cuts): a reason stays readable, and bounded, whatever it says.
std::string RecordableText(std::string_view text, size_t max_bytes) {
  text = text.substr(0, max_bytes);
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const auto valid = static_cast<size_t>(google::protobuf::internal::UTF8SpnStructurallyValid(text));
    out.append(text.substr(0, valid));
    if (valid == text.size()) break;
    out.push_back('?');
    text.remove_prefix(valid + 1);
  }
  return out;
}

// Bad input from the bus: records that usage `m` was refused under `rule`, with what could be read
// of it, and changes nothing else. Ids and message are bounded so that the record stays small,
// and UTF-8 so that it can be stored and read back.
void RejectUsage(uint32_t p, const bus::Message& m, const billing::v1::UsageCharged& usage, std::string txn,
                 const std::string& rule, const Status& why, eventlog::WriteSet& ws) {
  const std::string account = RecordableId(usage.account_id());
  v1::CommandRejected r;
  r.set_txn_id(std::move(txn));
  r.set_account_id(account);
  r.set_command("charge");
  r.set_idempotency_key(RecordableId(usage.charge_id()));
  r.set_rule(rule);
  r.set_code(static_cast<int32_t>(why.code()));
  r.set_message(RecordableText(why.message(), 1024));
  eventlog::NewEvent ne;
  ne.partition = p;
  ne.aggregate_key = account;
  ne.type = std::string(kRejectedType);
  ne.payload = r.SerializeAsString();
  ne.actor = "billing";
  ne.causation = UsageCause(m);
  ws.Append(std::move(ne));
  log::Warn("usage charge refused", {{"event_id", m.envelope.event_id()}, {"rule", rule}, {"error", why.ToString()}});
}

}  // namespace

// ---- KeyClaims ----

std::optional<Rejection> ClaimKey(KeyClaims& claims, std::string_view key, KeyClaims::Owner owner,
                                  std::string_view request, const std::function<uint64_t(uint32_t)>& head_of) {
  const std::optional<KeyClaims::Owner> holder = claims.Claim(key, owner);
  if (!holder) return std::nullopt;
  std::string first;
  eventlog::SetEventId(&first, kLedgerTopic, holder->partition, holder->seq);
  // Recorded only if its seq is durable and the claim is still there after that was read: a
  // claim left by a failed batch is dropped before its partition writes past the failed point,
  // so one that was stale when found and whose seq a later batch then reached is gone by now.
  if (holder->seq <= head_of(holder->partition) && claims.Holder(key) == holder) {
    return Rejection{StatusCode::kAlreadyExists, "idempotency_key_reused",
                     "idempotency key " + std::string(key) + " was used for a different request (first: " + first +
                         ", on an account of another partition; now: " + std::string(request) +
                         "); the same key is the same request: give this one a key of its own"};
  }
  // Claimed by a request whose batch is not durable yet, and may still be undone: this one is
  // neither refused for good nor taken, but asked to come again.
  return Rejection{StatusCode::kUnavailable, "idempotency_key_in_flight",
                   "idempotency key " + std::string(key) + " is in use by a request on an account of another "
                       "partition that is not recorded yet (" + first + "); retry: if that request is recorded this "
                       "one is refused, and if not this one goes through"};
}

// ---- MeterClaims ----

bool MeterClaims::Claim(const std::string& meter, const std::string& account, uint32_t partition) {
  std::lock_guard lock(mu_);
  auto [it, inserted] = owner_.try_emplace(meter, account, partition);
  return inserted || it->second.first == account;
}

void MeterClaims::Release(const std::string& meter, const std::string& account) {
  std::lock_guard lock(mu_);
  auto it = owner_.find(meter);
  if (it != owner_.end() && it->second.first == account) owner_.erase(it);
}

void MeterClaims::ResetPartition(uint32_t partition, const std::map<std::string, std::string, std::less<>>& owners) {
  std::lock_guard lock(mu_);
  std::erase_if(owner_, [&](const auto& kv) { return kv.second.second == partition; });
  for (const auto& [meter, account] : owners) owner_[meter] = {account, partition};
}

std::string MeterClaims::OwnerOf(const std::string& meter) const {
  std::lock_guard lock(mu_);
  auto it = owner_.find(meter);
  return it == owner_.end() ? "" : it->second.first;
}

// ---- Materialised views and rebuild ----

namespace {
// An account view is this byte, the tag (seq, 8 bytes big-endian), then the v1.Account. A
// serialised protobuf message never starts with a zero byte (field number 0 does not exist),
// so a view written before views were tagged is told apart.
constexpr char kTaggedView = '\0';
constexpr size_t kTagBytes = 9;
}  // namespace

void MaterializeAccount(const Account& account, uint64_t seq, eventlog::WriteSet& ws) {
  std::string value(kTagBytes, kTaggedView);
  for (int i = 0; i < 8; ++i) value[1 + i] = static_cast<char>(seq >> (56 - 8 * i));
  // One message per writer thread, refilled: its strings and lists keep their capacity.
  thread_local v1::Account view;
  ToProto(account, &view);
  view.AppendToString(&value);
  ws.PutState(kAccountPrefix + account.id, std::move(value));
}

Status ParseAccountView(std::string_view value, uint64_t untagged, uint64_t* seq, v1::Account* account) {
  *seq = untagged;
  if (!value.empty() && value[0] == kTaggedView) {
    if (value.size() < kTagBytes) return DataLoss("stored account view is shorter than its tag");
    *seq = 0;
    for (size_t i = 1; i < kTagBytes; ++i) *seq = (*seq << 8) | static_cast<uint8_t>(value[i]);
    value.remove_prefix(kTagBytes);
  }
  if (!account->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return DataLoss("stored account view does not parse");
  }
  return Status::Ok();
}

std::string ViewMarkKey(uint32_t partition) { return kViewHeadPrefix + std::to_string(partition); }

void MaterializeSystem(uint32_t partition, const Ledger& ledger, eventlog::WriteSet& ws, SystemViews* written) {
  if (ledger.state().accounts.empty()) return;  // No account, so no posting: every balance is zero.
  for (const auto& [name, balance] : ledger.state().system_balances) {
    if (written != nullptr) {
      // A batch moves one or two of them: the others' views already say so.
      auto [it, added] = written->try_emplace(name, balance);
      if (!added && it->second == balance) continue;
      it->second = balance;
    }
    ws.PutState(std::string(kSystemPrefix) + std::to_string(partition) + "/" + name, std::to_string(balance));
  }
}

void MaterializeViewMark(uint32_t partition, const ViewMark& mark, eventlog::WriteSet& ws) {
  ws.PutState(ViewMarkKey(partition), mark.untagged ? std::to_string(mark.seq)
                                                    : std::to_string(mark.low) + " " + std::to_string(mark.seq));
}

Result<ViewMark> ParseViewMark(const eventlog::EventLog& log, uint32_t partition, std::string_view value) {
  auto bad = [&] {
    return DataLoss("stored " + ViewMarkKey(partition) + " '" + std::string(value) + "' is not '<low> <seq>'");
  };
  ViewMark mark;
  const char* end = value.data() + value.size();
  auto [after_low, ec] = std::from_chars(value.data(), end, mark.low);
  if (ec != std::errc()) return bad();
  if (after_low == end) {
    mark.seq = mark.low;  // One number: the views were all of one moment, untagged.
    mark.untagged = true;
  } else {
    if (*after_low != ' ') return bad();
    auto [after_seq, ec2] = std::from_chars(after_low + 1, end, mark.seq);
    if (ec2 != std::errc() || after_seq != end) return bad();
  }
  const uint64_t head = log.Head(partition);
  if (mark.low > head || mark.seq > head) {
    return DataLoss("stored " + ViewMarkKey(partition) + " names event " + std::to_string(std::max(mark.low, mark.seq)) +
                    " but the partition ends at " + std::to_string(head) +
                    ": the views are of events the log does not hold");
  }
  return mark;
}

Result<std::optional<ViewMark>> ReadViewMark(const eventlog::EventLog& log, uint32_t partition) {
  WL_ASSIGN_OR_RETURN(auto value, log.GetState(ViewMarkKey(partition)));
  if (!value) return std::optional<ViewMark>();
  WL_ASSIGN_OR_RETURN(ViewMark mark, ParseViewMark(log, partition, *value));
  return std::optional<ViewMark>(mark);
}

Status Rebuild(const eventlog::EventLog& log, uint32_t partition, Ledger* ledger, uint64_t from_seq, uint64_t to_seq,
               const std::function<void(const std::string& account, uint64_t seq)>& on_event) {
  if (to_seq < from_seq) return Status::Ok();
  const size_t max = to_seq == UINT64_MAX ? SIZE_MAX : static_cast<size_t>(to_seq - from_seq + 1);
  std::vector<Event> decision;
  std::vector<uint64_t> seqs;
  std::string txn, first_event_id;
  // The chain says the records are the ones written; whether they make sense is still checked:
  // an event that does not fit the state is an error naming it, never a crash at start-up.
  auto flush = [&]() -> Status {
    if (decision.empty()) return Status::Ok();
    Status s = ledger->TryApplyAll(decision);
    if (!s.ok()) return DataLoss("ledger event " + first_event_id + " (txn " + txn + "): " + s.message());
    if (on_event) {
      for (size_t i = 0; i < decision.size(); ++i) on_event(EventAccountId(decision[i]), seqs[i]);
    }
    decision.clear();
    seqs.clear();
    return Status::Ok();
  };
  Status bad;
  WL_RETURN_IF_ERROR(log.Scan(partition, from_seq, max, [&](const eventlog::Envelope& env) {
    if (!IsLedgerEventType(env.type())) return true;  // Rejections change no state.
    auto event = DecodeEvent(env.type(), env.payload());
    if (!event.ok()) {
      bad = DataLoss("ledger event " + env.event_id() + " does not decode: " + event.status().message());
      return false;
    }
    // A statement finds an entry at the seq its txn id names (EntryLink), in the partition it
    // names: the txn id of an entry is its event's id.
    if (MakesEntry(*event) && EventTxnId(*event) != env.event_id()) {
      bad = DataLoss("ledger event " + env.event_id() + " makes an entry of txn " + EventTxnId(*event) +
                     ", whose id names another event: a statement could not find it");
      return false;
    }
    if (EventTxnId(*event) != txn) {
      bad = flush();
      if (!bad.ok()) return false;
      txn = EventTxnId(*event);
      first_event_id = env.event_id();
    }
    decision.push_back(std::move(event).value());
    seqs.push_back(env.seq());
    return true;
  }));
  WL_RETURN_IF_ERROR(bad);
  WL_RETURN_IF_ERROR(flush());
  if (to_seq == UINT64_MAX) ledger->CheckInvariants();  // O(state): once, at the end of the log.
  return Status::Ok();
}

Result<ReplayReport> ReplayViews(const eventlog::EventLog& live, eventlog::EventLog* fresh) {
  const uint32_t partitions = live.partitions();
  if (fresh->partitions() != partitions) return InvalidArgument("replay needs a store of as many partitions as the log");
  ReplayReport report;
  // From the snapshot the digest is taken of: each partition's mark, and each view's tag (an
  // untagged view gets its partition's mark, which is known only once every key was seen).
  std::vector<std::optional<ViewMark>> marks(partitions);
  std::vector<std::vector<std::pair<std::string, std::string>>> views(partitions);  // (id, value)
  Status bad;
  WL_ASSIGN_OR_RETURN(report.live_digest, live.StateDigest([&](std::string_view key, std::string_view value) {
    if (!bad.ok()) return;
    if (key.starts_with(kAccountPrefix)) {
      std::string id(key.substr(sizeof(kAccountPrefix) - 1));
      const uint32_t p = runtime::PartitionForKey(id, partitions);
      views[p].emplace_back(std::move(id), std::string(value));
      return;
    }
    if (!key.starts_with(kViewHeadPrefix)) return;
    for (uint32_t p = 0; p < partitions; ++p) {
      if (key != ViewMarkKey(p)) continue;
      auto mark = ParseViewMark(live, p, value);
      if (mark.ok()) marks[p] = *mark;
      else bad = mark.status();
    }
  }));
  WL_RETURN_IF_ERROR(bad);
  for (uint32_t p = 0; p < partitions; ++p) {
    auto in_partition = [p](const Status& s) { return Status(s.code(), "partition " + std::to_string(p) + ": " + s.message()); };
    const uint64_t head = live.Head(p);
    // A partition without a mark has written no views since they were tagged: its views, if
    // any, are as of its head.
    const ViewMark mark = marks[p].value_or(ViewMark{head, head});
    std::map<uint64_t, std::vector<std::string>> at;  // Tag -> accounts whose view is of it.
    std::unordered_map<std::string_view, uint64_t> tag_of;
    std::set<std::string_view> untagged;
    for (const auto& [id, value] : views[p]) {
      if (value.empty() || value[0] != kTaggedView) untagged.insert(id);
      uint64_t tag = 0;
      v1::Account ignored;
      if (Status s = ParseAccountView(value, mark.seq, &tag, &ignored); !s.ok()) {
        return in_partition(Status(s.code(), s.message() + " (account " + id + ")"));
      }
      if (tag > head) {
        return in_partition(DataLoss("the view of account " + id + " is of event " + std::to_string(tag) +
                                     ", beyond the partition's end " + std::to_string(head)));
      }
      at[tag].push_back(id);
      tag_of[id] = tag;
    }
    at.try_emplace(mark.seq);  // The system accounts' moment,
    at.try_emplace(mark.low);  // and the one up to which every change must be in the views.
    Ledger ledger;
    eventlog::WriteSet ws;
    uint64_t folded = 0;
    std::unordered_map<std::string, uint64_t> last_change;  // Of each account, in what was folded.
    auto note = [&](const std::string& account, uint64_t seq) { last_change[account] = seq; };
    for (const auto& [tag, ids] : at) {
      if (Status s = Rebuild(live, p, &ledger, folded + 1, tag, note); !s.ok()) return in_partition(s);
      folded = tag;
      if (tag == mark.low) {
        // A view older than its account's last change up to here is one the writer forgot.
        for (const auto& [id, changed] : last_change) {
          auto view = tag_of.find(id);
          if (view != tag_of.end() && view->second < changed) {
            return in_partition(DataLoss("the view of account " + id + " is of event " + std::to_string(view->second) +
                                         ", but the account changed at event " + std::to_string(changed) +
                                         ", which the mark says every view includes (" + std::to_string(mark.low) + ")"));
          }
        }
      }
      for (const std::string& id : ids) {
        const Account* a = ledger.FindAccount(id);
        if (a == nullptr) {
          return in_partition(DataLoss("the view of account " + id + " is of event " + std::to_string(tag) +
                                       ", when the account did not exist yet"));
        }
        if (untagged.contains(id)) {
          ws.PutState(kAccountPrefix + id, ToProto(*a).SerializeAsString());  // As a log before tags has it.
        } else {
          MaterializeAccount(*a, tag, ws);
        }
        report.accounts++;
      }
      if (tag != mark.seq) continue;
      MaterializeSystem(p, ledger, ws);
      if (marks[p]) MaterializeViewMark(p, *marks[p], ws);  // Its low was checked above.
    }
    if (Status s = Rebuild(live, p, &ledger, folded + 1, UINT64_MAX); !s.ok()) return in_partition(s);
    // Every account must have a view: one without is written as of the end, which live lacks.
    std::set<std::string_view> seen;
    for (const auto& [id, value] : views[p]) seen.insert(id);
    for (const auto& [id, account] : ledger.state().accounts) {
      if (!seen.contains(id)) MaterializeAccount(account, head, ws);
    }
    WL_RETURN_IF_ERROR(fresh->Commit(std::move(ws)).status());
    report.view_heads.push_back(mark.seq);
    report.view_lows.push_back(mark.low);
  }
  WL_ASSIGN_OR_RETURN(report.replayed_digest, fresh->StateDigest());
  return report;
}

CheckpointCheck VerifyCheckpoint(const eventlog::EventLog& log, const std::string& dir, uint32_t partition) {
  CheckpointCheck check;
  check.partition = partition;
  auto read = ReadCheckpoint(dir, log, partition, LedgerConfig());
  if (!read.ok() && read.status().code() == StatusCode::kNotFound) return check;
  check.present = true;
  if (!read.ok()) {
    check.note = read.status().message();
    // Damaged is a finding; another build's (or log's) is one the service would not use either.
    check.checked = read.status().code() == StatusCode::kDataLoss;
    return check;
  }
  check.checked = true;
  check.seq = read->seq;
  Ledger folded;
  if (Status s = Rebuild(log, partition, &folded, 1, read->seq); !s.ok()) {
    check.note = "the log does not fold up to the checkpoint's event: " + s.ToString();
    return check;
  }
  check.equal = folded == *read->ledger && folded.CanonicalDump() == read->ledger->CanonicalDump();
  if (!check.equal) {
    check.note = "its state differs from the fold of the log up to event " + std::to_string(read->seq) +
                 " (digest " + read->ledger->Digest() + ", the fold's " + folded.Digest() + ")";
  }
  return check;
}

// ---- LedgerService ----

namespace {

// Runs fn(p) for every partition p < partitions, on a thread per core, and returns once all ran.
void EachPartitionSideBySide(uint32_t partitions, const std::function<void(uint32_t)>& fn) {
  std::atomic<uint32_t> next{0};
  std::vector<std::thread> threads;
  const uint32_t n = std::clamp<uint32_t>(std::thread::hardware_concurrency(), 1, std::max<uint32_t>(partitions, 1));
  for (uint32_t t = 0; t < n; ++t) {
    threads.emplace_back([&] {
      for (uint32_t p = next++; p < partitions; p = next++) fn(p);
    });
  }
  for (auto& t : threads) t.join();
}

}  // namespace

struct LedgerService::Outcome {
  Status error;  // The adapter could not even decide (bad request shape, internal).
  Decision decision;
  // (meter, account) claims the decision gives up. They are released only once it is durable:
  // released earlier, another partition could take the meter and commit while this commit
  // fails, and Reload would then restore this partition's claim (one meter, two owners).
  std::vector<std::pair<std::string, std::string>> released_claims = {};
  // The account as an accepted command left it, for the answer: the whole account after an
  // account command, its balance after a posting. Made on the writer right after the command,
  // while the account is still in the CPU's cache; handed to the answer as it is.
  std::unique_ptr<v1::Account> account = {};
  std::unique_ptr<v1::AccountBalance> balance = {};
};

LedgerService::LedgerService(std::unique_ptr<eventlog::EventLog> log, LedgerOptions options)
    : log_(std::move(log)), options_(std::move(options)) {
  for (uint32_t p = 0; p < log_->partitions(); ++p) ledgers_.push_back(std::make_unique<Ledger>(options_.config));
  owed_.resize(log_->partitions());
  starts_.resize(log_->partitions());
  batch_time_.resize(log_->partitions());
  WL_CHECK_MSG(options_.view_postings_per_write > 0, "view_postings_per_write must be at least 1");
}

LedgerService::~LedgerService() { Stop(); }

namespace {

// The ledger's gRPC face, on gRPC's callback API. A mutation is handed to the partition's writer
// with the RPC's reactor, and the reactor is finished once the answer is durable: no
// thread waits for a commit, so the number of requests in flight is bounded by the partition
// queues (RESOURCE_EXHAUSTED beyond), not by a thread pool. gRPC keeps the request and response
// alive until the reactor is finished, also when the client has given up (deadline or cancel).
// Reads are answered the same way: queued on the writers they need, and finished by the last
// partition to answer, once its batch is durable.
class LedgerGrpc final : public v1::LedgerService::CallbackService {
 public:
  explicit LedgerGrpc(LedgerService* ledger) : ledger_(ledger) {}

// Every method, mutation or query: handed to its *Async twin, finished by the answer.
#define WL_LEDGER_GRPC(Method, Request, Response)                                               \
  grpc::ServerUnaryReactor* Method(grpc::CallbackServerContext* ctx, const v1::Request* req,     \
                                   v1::Response* resp) override {                               \
    auto* reactor = ctx->DefaultReactor();                                                       \
    ledger_->Method##Async(*req, [reactor, resp](grpc::Status status, v1::Response* answer) {     \
      if (status.ok()) *resp = std::move(*answer);                                               \
      reactor->Finish(status);                                                                   \
    });                                                                                          \
    return reactor;                                                                              \
  }
#define WL_LEDGER_GRPC_MUTATION(Method, Request, Convert, Key) WL_LEDGER_GRPC(Method, Request, MutationResponse)
  WL_LEDGER_MUTATIONS(WL_LEDGER_GRPC_MUTATION)
  WL_LEDGER_READS(WL_LEDGER_GRPC)
#undef WL_LEDGER_GRPC_MUTATION
#undef WL_LEDGER_GRPC

 private:
  LedgerService* ledger_;
};

}  // namespace

void LedgerService::Register(grpc::ServerBuilder& builder) {
  grpc_ = std::make_unique<LedgerGrpc>(this);
  builder.RegisterService(grpc_.get());
}

Status LedgerService::Publish(bus::Bus* bus) { return bus->Publish(kLedgerTopic, log_.get()); }

bool LedgerService::CheckpointsOn() const {
  return !options_.checkpoint_dir.empty() && !options_.checkpoint_build.empty();
}

Status LedgerService::Start(bus::Bus* bus) {
  if (!options_.checkpoint_dir.empty() && options_.checkpoint_build.empty()) {
    // Any two builds without an ID would take each other's checkpoints for their own.
    log::Warn("this executable has no GNU build ID (link it with -Wl,--build-id): checkpoints are off, "
              "every start folds the whole log",
              {{"service", "ledger"}});
  }
  // The partitions rebuild side by side, a thread per core: they share only the claims, which
  // are thread-safe.
  {
    std::vector<Status> reloaded(log_->partitions());
    EachPartitionSideBySide(log_->partitions(), [&](uint32_t p) { reloaded[p] = Reload(p); });
    for (const Status& s : reloaded) WL_RETURN_IF_ERROR(s);
  }
  // A partition without a mark, or with an untagged one, has untagged views as of its head (a
  // log written before views were tagged) or none (a new log): its views are written again,
  // tagged, before anything moves, in parts; the mark comes last, so that a crash in between
  // starts this over. (Reload treated the partition as owing nothing: all is in the views.)
  for (uint32_t p = 0; p < log_->partitions(); ++p) {
    WL_ASSIGN_OR_RETURN(std::optional<ViewMark> mark, ReadViewMark(*log_, p));
    if (mark && !mark->untagged) continue;
    const uint64_t head = log_->Head(p);
    eventlog::WriteSet ws;
    size_t in_ws = 0;
    for (const auto& [id, account] : ledgers_[p]->state().accounts) {
      MaterializeAccount(account, head, ws);
      if (++in_ws == 10'000) {
        WL_RETURN_IF_ERROR(log_->Commit(std::move(ws)).status());
        ws = eventlog::WriteSet();
        in_ws = 0;
      }
    }
    MaterializeSystem(p, *ledgers_[p], ws);
    MaterializeViewMark(p, ViewMark{head, head}, ws);
    WL_RETURN_IF_ERROR(log_->Commit(std::move(ws)).status());
  }
  runtime::ProcessorOptions po;
  po.name = "ledger";
  po.topics = options_.topics;
  po.overlap_commits = options_.overlap_commits;
  reader_ = std::make_unique<LogReader>();
  processor_ = std::make_unique<runtime::Processor>(po, log_.get(), bus, this);
  return processor_->Start();
}

void LedgerService::Stop() {
  if (!processor_ || stopped_) return;
  stopped_ = true;
  processor_->Stop();            // Each writer's BeforeStop writes every view it owes.
  if (reader_) reader_->Stop();  // After the writers: their last answers may post to it.
  if (!CheckpointsOn()) return;
  if (processor_->store_broken() || processor_->stop_commit_failed()) {
    // After the first, the ledger may hold what the log does not; after the second, the views
    // lag the ledger, and a start could not use a checkpoint past them anyway.
    log::Warn("a commit failed: no checkpoint is written, the next start folds what came after the last one "
              "(the whole log, if there is none)",
              {{"service", "ledger"}});
    return;
  }
  // Every batch is durable and no writer runs: each ledger is the fold of its partition up to
  // its head.
  EachPartitionSideBySide(log_->partitions(), [&](uint32_t p) {
    const uint64_t head = log_->Head(p);
    if (starts_[p].from_checkpoint && starts_[p].checkpoint_seq == head) return;  // Unchanged.
    const auto began = std::chrono::steady_clock::now();
    auto written = WriteCheckpoint(options_.checkpoint_dir, *log_, p, head, *ledgers_[p], options_.checkpoint_build);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
    if (!written.ok()) {
      log::Error("cannot write the partition's checkpoint: the next start folds what came after the last one "
                 "(the whole partition, if there is none)",
                 {{"service", "ledger"}, {"partition", std::to_string(p)}, {"error", written.status().ToString()}});
      return;
    }
    log::Info("checkpoint written", {{"service", "ledger"},
                                     {"partition", std::to_string(p)},
                                     {"seq", std::to_string(head)},
                                     {"bytes", std::to_string(*written)},
                                     {"ms", std::to_string(ms.count())}});
  });
}

namespace {
thread_local bool on_reader_thread = false;
}  // namespace

LogReader::LogReader(size_t capacity) : capacity_(capacity), thread_([this] { Loop(); }) {}

bool LogReader::OnReaderThread() { return on_reader_thread; }

LogReader::~LogReader() { Stop(); }

Status LogReader::Post(std::function<void()> work) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Unavailable("the ledger is stopping; retry");
    if (queue_.size() >= capacity_) {
      return ResourceExhausted(std::to_string(queue_.size()) + " statements are waiting to be read; retry later");
    }
    queue_.push_back(std::move(work));
  }
  wake_.notify_one();
  return Status::Ok();
}

void LogReader::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void LogReader::Loop() {
  on_reader_thread = true;
  NameThisThread("ledger/stmt");
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // Stopping, with everything run.
    std::function<void()> work = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
}

// ---- Views ----

void LedgerService::Owed::Add(const Account* account, uint64_t seq, std::chrono::steady_clock::time_point now) {
  if (seq_of.try_emplace(account, seq)) queue.push_back({account, seq, now});
}

const LedgerService::Owed::Entry* LedgerService::Owed::Front() {
  while (!queue.empty()) {
    const uint64_t* owed_from = seq_of.find(queue.front().account);
    if (owed_from != nullptr && *owed_from == queue.front().seq) return &queue.front();
    queue.pop_front();  // Written since, or owed again from a later seq (a later entry).
  }
  return nullptr;
}

void LedgerService::BeforeBatch(uint32_t p) {
  batch_time_[p] = {options_.clock->NowMicros(), std::chrono::steady_clock::now()};
}

void LedgerService::BeforeCommit(uint32_t p, eventlog::WriteSet& ws) {
  WriteOwedViews(p, ws, /*all=*/false);
}

void LedgerService::BeforeStop(uint32_t p, eventlog::WriteSet& ws) { WriteOwedViews(p, ws, /*all=*/true); }

void LedgerService::OnIdle(uint32_t p, eventlog::WriteSet& ws) {
  // No posting pays for a view here: only those owed too long are written.
  WriteOwedViews(p, ws, /*all=*/false);
}

void LedgerService::WriteOwedViews(uint32_t p, eventlog::WriteSet& ws, bool all) {
  Owed& owed = owed_[p];
  const Ledger& ledger = *ledgers_[p];
  // Only this partition's writer appends to it: the batch's last event will have this seq.
  const uint64_t seq = ws.head() + ws.event_count();
  size_t written = 0;
  auto write = [&](const Account* a) {
    MaterializeAccount(*a, seq, ws);
    owed.seq_of.erase(a);
    written++;
  };
  // A new account is listed (its view exists) from the batch that opened it.
  for (const Account* a : owed.opened) {
    if (owed.seq_of.contains(a)) write(a);
  }
  // One view per view_postings_per_write postings, and those owed too long: a batch of charges
  // on one account writes its view once, and no batch writes thousands.
  owed.credit += owed.postings;
  const size_t share = owed.credit / options_.view_postings_per_write;
  owed.credit %= options_.view_postings_per_write;
  const auto now = std::chrono::steady_clock::now();
  size_t regular = 0;
  while (const Owed::Entry* oldest = owed.Front()) {
    const bool overdue = now - oldest->since >= options_.view_max_age && written < options_.view_max_per_batch;
    if (!all && regular >= share && !overdue) break;
    regular++;
    const Account* a = oldest->account;
    owed.queue.pop_front();
    write(a);
  }
  owed.opened.clear();
  owed.postings = 0;
  if (written == 0 && !all) return;
  // Every change before the oldest owed one is in the views now.
  const Owed::Entry* oldest = owed.Front();
  MaterializeSystem(p, ledger, ws, &owed.system_written);
  MaterializeViewMark(p, ViewMark{oldest != nullptr ? oldest->seq - 1 : seq, seq}, ws);
  auto& metrics = LedgerMetrics::Get();
  metrics.views_written.Increment(static_cast<double>(written));
}

Status LedgerService::Reload(uint32_t partition) {
  // Every change up to the mark's low is in the views; what the log holds after it is owed.
  WL_ASSIGN_OR_RETURN(std::optional<ViewMark> mark, ReadViewMark(*log_, partition));
  const uint64_t low = mark ? mark->low : log_->Head(partition);
  const uint64_t head = log_->Head(partition);
  const auto began = std::chrono::steady_clock::now();
  PartitionStart start;
  std::unique_ptr<Ledger> fresh;
  if (CheckpointsOn()) {
    auto checkpoint = ReadCheckpoint(options_.checkpoint_dir, *log_, partition, options_.config, options_.checkpoint_build);
    if (checkpoint.ok() && checkpoint->seq > low) {
      // What the views owe from before its seq would not be known: fold it all.
      start.checkpoint_unused = "checkpoint at event " + std::to_string(checkpoint->seq) +
                                " is past the events every view includes (" + std::to_string(low) + ")";
    } else if (checkpoint.ok()) {
      start.from_checkpoint = true;
      start.checkpoint_seq = checkpoint->seq;
      fresh = std::move(checkpoint->ledger);
    } else if (checkpoint.status().code() != StatusCode::kNotFound) {
      start.checkpoint_unused = checkpoint.status().message();
    }
    if (!start.checkpoint_unused.empty()) {
      log::Warn("not starting from the checkpoint: folding the whole partition",
                {{"service", "ledger"}, {"partition", std::to_string(partition)}, {"why", start.checkpoint_unused}});
    }
  }
  if (fresh == nullptr) fresh = std::make_unique<Ledger>(options_.config);
  start.folded = head - start.checkpoint_seq;
  Owed owed;
  const auto now = std::chrono::steady_clock::now();
  WL_RETURN_IF_ERROR(Rebuild(*log_, partition, fresh.get(), start.checkpoint_seq + 1, low));
  // Called once each event's decision is applied, so its account exists.
  Status missing;
  WL_RETURN_IF_ERROR(Rebuild(*log_, partition, fresh.get(), low + 1, UINT64_MAX,
                             [&](const std::string& account, uint64_t seq) {
                               if (const Account* a = fresh->FindAccount(account)) {
                                 owed.Add(a, seq, now);
                               } else if (missing.ok()) {
                                 missing = Internal("event " + std::to_string(seq) + " of partition " +
                                                    std::to_string(partition) + " names account " + account +
                                                    ", which the folded ledger does not hold; the fold "
                                                    "applied that event, so this is a bug: keep the data "
                                                    "dir and report it with what `wattledger ledger replay "
                                                    "--verify --data-dir DIR` says of it");
                               }
                             }));
  WL_RETURN_IF_ERROR(missing);
  claims_.ResetPartition(partition, fresh->state().meter_owner);
  // The keys the log holds, and none of a batch that failed.
  key_claims_.ResetPartition(partition, log_->Head(partition), [&](const auto& claim) {
    fresh->state().idempotency_keys.ForEach(
        [&](const KeyTable::Entry& e) { claim(e.key, EntrySeqOf(e.txn_id)); });
  });
  owed_[partition] = std::move(owed);  // What an undone batch moved is as stored again.
  ledgers_[partition] = std::move(fresh);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began);
  log::Info("partition state rebuilt", {{"service", "ledger"},
                                        {"partition", std::to_string(partition)},
                                        {"checkpoint_seq", start.from_checkpoint ? std::to_string(start.checkpoint_seq) : "none"},
                                        {"events_folded", std::to_string(start.folded)},
                                        {"ms", std::to_string(ms.count())}});
  starts_[partition] = std::move(start);
  return Status::Ok();
}

std::string LedgerService::NextTxnId(uint32_t partition, const eventlog::WriteSet& ws) const {
  // Only this partition's writer appends to it, so the next seq is known before the commit (the
  // processor sets the head the commit will find, with its commit in flight counted).
  std::string id;
  eventlog::SetEventId(&id, kLedgerTopic, partition, ws.head() + ws.event_count() + 1);
  return id;
}

Result<uint32_t> LedgerService::PartitionOfTxn(const std::string& txn_id) const {
  // ledger/<partition>/<seq>, both numbers in decimal as the ledger writes them: no sign, no
  // leading zero (so "ledger/01/5" is not read as ledger/1/5, which it does not name), seq >= 1.
  auto bad = InvalidArgument("transaction id '" + txn_id + "' is not of the form ledger/<partition>/<seq>; "
                             "copy it from the txn_id of the original call or from `wlctl statement`");
  const std::string prefix = std::string(kLedgerTopic) + "/";
  if (!txn_id.starts_with(prefix)) return bad;
  const std::string_view rest = std::string_view(txn_id).substr(prefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return bad;
  auto decimal = [](std::string_view digits, size_t max_digits) {
    return !digits.empty() && digits.size() <= max_digits &&
           digits.find_first_not_of("0123456789") == std::string_view::npos &&
           (digits.size() == 1 || digits[0] != '0');
  };
  const std::string_view partition_text = rest.substr(0, slash), seq_text = rest.substr(slash + 1);
  if (!decimal(partition_text, 4) || !decimal(seq_text, 19) || seq_text == "0") return bad;
  const uint32_t partition = static_cast<uint32_t>(std::stoul(std::string(partition_text)));
  if (partition >= log_->partitions()) return NotFound("transaction " + txn_id + " does not exist");
  return partition;
}

LedgerService::Outcome LedgerService::Execute(uint32_t p, const Command& command, eventlog::WriteSet& ws,
                                              eventlog::Causation causation, const std::string& actor) {
  Ledger& ledger = *ledgers_[p];
  const uint64_t first_seq = ws.head() + ws.event_count() + 1;  // Of this command's first event.
  auto decided = ledger.Decide(command);
  auto& metrics = LedgerMetrics::Get();
  if (!decided.ok()) {
    metrics.Command(command, kError).Increment();
    return {decided.status(), {}};
  }
  Decision d = std::move(decided).value();

  // The domain sees one partition; a meter may be claimed by an account of another one, and an
  // idempotency key may have been used by one. (No command both takes a key and claims meters;
  // a key claim is only refused, and meters claimed before it released, all the same.)
  if (d.accepted()) {
    std::vector<std::pair<std::string, std::string>> claimed;  // (meter, account) claimed here.
    for (size_t i = 0; i < d.events.size() && !d.rejection; ++i) {
      const Event& e = d.events[i];
      std::vector<std::string> wanted;
      if (auto* o = std::get_if<AccountOpened>(&e)) wanted = o->meters;
      if (auto* a = std::get_if<MeterAttached>(&e)) wanted = {a->meter_id};
      for (const auto& m : wanted) {
        if (claims_.Claim(m, EventAccountId(e), p)) {
          claimed.emplace_back(m, EventAccountId(e));
          continue;
        }
        d.rejection = Rejection{StatusCode::kFailedPrecondition, "meter_owned",
                                "meter " + m + " already belongs to account " + claims_.OwnerOf(m) +
                                    "; detach it there first"};
        break;
      }
    }
    for (size_t i = 0; i < d.events.size() && !d.rejection; ++i) {
      const std::string_view key = EventIdempotencyKey(d.events[i]);
      if (key.empty()) continue;
      d.rejection = ClaimKey(key_claims_, key, {p, first_seq}, DescribeKeyedRequest(d.events[i]),
                             [this](uint32_t partition) { return log_->Head(partition); });
    }
    if (d.rejection) {
      d.events.clear();
      for (const auto& [m, a] : claimed) claims_.Release(m, a);
    }
  }

  // The causation is copied into each event but the last, which takes it.
  auto new_event = [&](std::string account, std::string type, std::string payload, bool last) {
    eventlog::NewEvent ne;
    ne.partition = p;
    ne.aggregate_key = std::move(account);
    ne.type = std::move(type);
    ne.payload = std::move(payload);
    ne.actor = actor;
    if (last) {
      ne.causation = std::move(causation);
    } else {
      ne.causation = causation;
    }
    ws.Append(std::move(ne));
  };

  if (d.duplicate) {
    metrics.Command(command, kDuplicate).Increment();
    return {Status::Ok(), std::move(d)};
  }
  if (d.rejection) {
    metrics.Command(command, d.rejection->code == StatusCode::kUnavailable ? kRetry : kRejected).Increment();
    v1::CommandRejected r;
    r.set_txn_id(d.txn_id);
    r.set_operator_id(CommandOperator(command));
    r.set_account_id(CommandAccount(command));
    r.set_command(CommandName(command));
    r.set_idempotency_key(CommandKey(command));
    r.set_rule(d.rejection->rule);
    r.set_code(static_cast<int32_t>(d.rejection->code));
    r.set_message(d.rejection->message);
    new_event(r.account_id(), std::string(kRejectedType), r.SerializeAsString(), /*last=*/true);
    return {Status::Ok(), std::move(d)};
  }

  metrics.Command(command, kAccepted).Increment();
  std::vector<const Account*> touched;
  ledger.ApplyAll(d.events, &touched);
  std::vector<std::pair<std::string, std::string>> released;
  for (const auto& e : d.events) {
    Encoded enc = EncodeEvent(e);
    new_event(EventAccountId(e), std::move(enc.type), std::move(enc.payload), &e == &d.events.back());
    if (auto* c = std::get_if<AccountClosed>(&e)) {
      for (const auto& m : c->released_meters) released.emplace_back(m, c->account_id);
    }
    if (auto* dm = std::get_if<MeterDetached>(&e)) released.emplace_back(dm->meter_id, dm->account_id);
    if (auto* cut = std::get_if<SupplyCutRequired>(&e)) {
      metrics.cuts.Increment();
      log::Info("supply cut required", {{"account", cut->account_id},
                                         {"balance", money::FormatYuan(cut->balance_minor)},
                                         {"cutoff_line", money::FormatYuan(cut->cutoff_line_minor)}});
    }
    if (auto* r = std::get_if<SupplyRestoreAllowed>(&e)) {
      metrics.restores.Increment();
      log::Info("supply restore allowed", {{"account", r->account_id}, {"balance", money::FormatYuan(r->balance_minor)}});
    }
    if (auto* l = std::get_if<LevelChanged>(&e)) {
      log::Info("level changed", {{"account", l->account_id},
                                   {"from", std::string(LevelName(l->from))},
                                   {"to", std::string(LevelName(l->to))},
                                   {"balance", money::FormatYuan(l->balance_minor)}});
    }
  }
  // The views of what moved are owed from this command's first event on (BeforeCommit writes
  // some with each batch); that of a new account is written with this batch.
  Owed& owed = owed_[p];
  for (const Account* a : touched) owed.Add(a, first_seq, batch_time_[p].steady);
  // A new account's view is written with its batch: that pays for it.
  if (const auto* open = std::get_if<ledger::OpenAccount>(&command)) {
    for (const Account* a : touched) {
      if (a->id == open->account_id) owed.opened.push_back(a);
    }
  } else {
    owed.postings++;
  }
  return {Status::Ok(), std::move(d), std::move(released)};
}

uint32_t LedgerService::Route(const bus::Message& m, uint32_t partitions) {
  // Usage is charged where its account lives, whatever key billing published it under.
  if (m.envelope.type() == UsageType() && m.envelope.payload().size() <= kMaxInputBytes) {
    if (auto account = UsageAccountIdOf(m.envelope.payload())) return runtime::PartitionForKey(*account, partitions);
  }
  // Unreadable usage names no account; any partition records its rejection.
  return Handler::Route(m, partitions);
}

void LedgerService::OnMessage(uint32_t p, const bus::Message& m, eventlog::WriteSet& ws) {
  if (m.envelope.type() != UsageType()) return;  // Other billing events are not the ledger's.
  billing::v1::UsageCharged usage;
  const std::string txn = NextTxnId(p, ws);
  Result<Charge> charge =
      m.envelope.payload().size() > kMaxInputBytes
          ? Result<Charge>(InvalidArgument("usage payload of " + std::to_string(m.envelope.payload().size()) +
                                           " bytes exceeds " + std::to_string(kMaxInputBytes)))
      : usage.ParseFromString(m.envelope.payload())
          ? ChargeFromUsage(&usage, txn, m.envelope.occurred_at_us())
          : Result<Charge>(InvalidArgument("payload does not parse as UsageCharged"));
  if (!charge.ok()) {
    metrics::KernelMetrics().rejected_inputs.Add({{"where", "ledger/billing"}}).Increment();
    RejectUsage(p, m, usage, txn, "invalid_usage", charge.status(), ws);
    return;
  }
  Outcome out = Execute(p, *charge, ws, UsageCause(m), "billing");
  // Decide only fails when this adapter broke its contract (txn id reuse): never silently.
  WL_CHECK_MSG(out.error.ok(), out.error.ToString());
  // A message has no reply to release claims after its commit; a charge never gives one up.
  WL_CHECK(out.released_claims.empty());
}

void LedgerService::OnPoison(uint32_t p, const bus::Message& m, const Status& why, eventlog::WriteSet& ws) {
  // The runtime set the message aside after it failed every batch it was in: put that on the
  // record, as for usage that does not parse, so that operators find it in the log.
  billing::v1::UsageCharged usage;
  if (m.envelope.payload().size() > kMaxInputBytes || !usage.ParseFromString(m.envelope.payload())) {
    usage.Clear();  // Name no account rather than a half-parsed one.
  }
  RejectUsage(p, m, usage, NextTxnId(p, ws), "poison_input", why, ws);
}

// A queued mutation: what its command closure, its Reply and its failure path share. Its command
// is also the writer's prefetch hint (Prefetch), so it lives here rather than in the closure.
struct LedgerService::Mutation {
  std::string request_id;
  Command command;
  MutationDone done;  // Exactly one of the command, its Reply and its failure path answers.
};

void LedgerService::Prefetch(uint32_t p, const void* hint, int ahead) {
  // MutateAsync's hints are the commands of its Mutations.
  ledgers_[p]->Prefetch(*static_cast<const Command*>(hint), ahead);
}

void LedgerService::MutateAsync(uint32_t p, std::string request_id, Command command, MutationDone done) {
  auto call = std::make_shared<Mutation>(Mutation{std::move(request_id), std::move(command), std::move(done)});
  const void* hint = &call->command;
  Status submitted = processor_->SubmitTo(p, [this, p, call](uint32_t, eventlog::WriteSet& ws) -> runtime::Reply {
    Command& command = call->command;
    std::string txn = NextTxnId(p, ws);
    eventlog::Causation cause;
    // The command runs once: what the call holds is its own to move.
    if (call->request_id.empty()) {
      cause.set_request_id(txn);
    } else {
      cause.set_request_id(std::move(call->request_id));
    }
    const int64_t now = batch_time_[p].wall_us;
    std::visit(
        [&](auto& c) {
          c.txn_id = std::move(txn);
          c.time_us = now;
        },
        command);
    auto out = std::make_shared<Outcome>(Execute(p, command, ws, std::move(cause), CommandOperator(command)));
    if (!out->error.ok()) {
      call->done(server::ToGrpc(out->error), nullptr);
      return nullptr;
    }
    // The answer's account is taken now: the reply runs once the batch is durable, on the
    // committer thread, while this writer may already be changing the ledger for the next batch.
    // An accepted command's account as it left it, a duplicate's as it is now. A reversal's
    // request names only the original transaction: its events, or the original, name the account.
    const bool changed = out->decision.accepted() && !out->decision.events.empty();
    if (changed || out->decision.duplicate) {
      std::string id = CommandAccount(command);
      if (id.empty() && changed) id = EventAccountId(out->decision.events.front());
      if (id.empty() && out->decision.duplicate) {
        if (auto t = ledgers_[p]->FindTxn(out->decision.txn_id)) id = t->account_id;
      }
      const Account* a = ledgers_[p]->FindAccount(id);
      WL_CHECK_MSG(a != nullptr || !changed, "accepted command on unknown account " + id);
      if (a != nullptr && IsPosting(command)) {
        out->balance = std::make_unique<v1::AccountBalance>();
        ToProto(*a, out->balance.get());
      } else if (a != nullptr) {
        out->account = std::make_unique<v1::Account>();
        ToProto(*a, out->account.get());
      }
    }
    return [this, call, out](const Status& commit, std::span<const eventlog::Envelope>) {
      if (!commit.ok()) {
        // Reload has restored this partition's claims from the store, the released ones too.
        // The log refused what the batch wrote (requests are checked before they are queued, so
        // this is not expected): the fault may be another request's of the same batch.
        call->done(commit.code() == StatusCode::kInvalidArgument
                      ? grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                     "not recorded, the event log refused the batch this request was in: " +
                                         commit.message() + "; if the request is well-formed, retry it with the "
                                         "same idempotency key")
                      : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                     commit.message() + "; retry with the same idempotency key, which is applied "
                                     "at most once"),
                  nullptr);
        return;
      }
      // Durable now: other accounts may take the meters. Before the answer, so that a caller who
      // attaches a meter after detaching it finds it free.
      for (const auto& [meter, owner] : out->released_claims) claims_.Release(meter, owner);
      if (out->decision.rejection) {
        call->done(RejectionStatus(*out->decision.rejection), nullptr);
        return;
      }
      v1::MutationResponse response;
      response.set_txn_id(out->decision.txn_id);
      response.set_duplicate(out->decision.duplicate);
      if (out->account) response.set_allocated_account(out->account.release());
      if (out->balance) response.set_allocated_balance(out->balance.release());
      call->done(grpc::Status::OK, &response);
    };
  }, [call](const Status& why) {
    // The command threw (INTERNAL, its batch undone) or never ran because the store broke
    // (UNAVAILABLE): nothing of it is recorded. Answered now rather than at the deadline.
    call->done(server::ToGrpc(why), nullptr);
  }, hint);
  if (!submitted.ok()) call->done(server::ToGrpc(submitted), nullptr);
}

template <typename Resp>
grpc::Status LedgerService::Await(const std::function<void(Done<Resp>)>& start, Resp* out, const char* on_deadline) {
  // Owned jointly by this call and the answering thread, which never touches *out: gRPC frees it
  // once this function returned (possibly on the deadline, before the answer came).
  if (runtime::Processor::OnWriterThread() || LogReader::OnReaderThread()) {
    // The answer comes from a writer (and a statement's from the reader): waiting for it on one
    // could wait for itself.
    return {grpc::StatusCode::FAILED_PRECONDITION,
            "a synchronous ledger call cannot be made from a writer or reader thread; use the *Async methods"};
  }
  struct Call {
    std::promise<grpc::Status> done;
    Resp result;
  };
  auto call = std::make_shared<Call>();
  auto future = call->done.get_future();
  start([call](grpc::Status status, Resp* r) {
    if (r != nullptr) call->result = std::move(*r);
    call->done.set_value(std::move(status));
  });
  if (future.wait_for(options_.rpc_deadline) != std::future_status::ready) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, std::string("the ledger did not answer in time; ") + on_deadline);
  }
  grpc::Status status = future.get();
  if (status.ok()) *out = std::move(call->result);
  return status;
}

template <typename Resp>
void LedgerService::OnWritersAsync(std::vector<uint32_t> partitions,
                                   std::function<grpc::Status(uint32_t, const Ledger&, Resp*)> fn,
                                   std::function<void(grpc::Status, std::vector<Resp>*)> done) {
  if (!processor_) return done({grpc::StatusCode::UNAVAILABLE, "the ledger is not started"}, nullptr);
  if (runtime::Processor::OnWriterThread()) {
    // A writer (say, in a MutationDone) that waited for a writer's answer could wait for itself.
    return done({grpc::StatusCode::FAILED_PRECONDITION, "a ledger query cannot be made from a writer thread"}, nullptr);
  }
  if (partitions.empty()) {
    std::vector<Resp> none;
    return done(grpc::Status::OK, &none);
  }
  // Shared by the partitions' answers; the last one to arrive calls `done` (on its committer
  // thread, or its writer when its batch wrote nothing).
  struct Call {
    std::mutex mu;
    size_t pending = 0;
    std::vector<grpc::Status> statuses;
    std::vector<Resp> results;
    std::function<void(grpc::Status, std::vector<Resp>*)> done;
  };
  auto call = std::make_shared<Call>();
  call->pending = partitions.size();
  call->statuses.resize(partitions.size());
  call->results.resize(partitions.size());
  call->done = std::move(done);
  auto finish = [call](size_t i, grpc::Status status) {
    {
      std::lock_guard lock(call->mu);
      call->statuses[i] = std::move(status);
      if (--call->pending > 0) return;
    }
    for (const grpc::Status& s : call->statuses) {
      if (!s.ok()) return call->done(s, nullptr);  // The first partition's error wins.
    }
    call->done(grpc::Status::OK, &call->results);
  };
  for (size_t i = 0; i < partitions.size(); ++i) {
    const uint32_t p = partitions[i];
    Status submitted = processor_->SubmitTo(p, [=, this](uint32_t, eventlog::WriteSet&) -> runtime::Reply {
      grpc::Status status = fn(p, *ledgers_[p], &call->results[i]);
      // What was read may include effects of this batch: answer only once they are durable.
      return [finish, i, status](const Status& commit, std::span<const eventlog::Envelope>) {
        finish(i, commit.ok() ? status
                              : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                             "the ledger could not commit; retry: " + commit.message()));
      };
    }, [finish, i](const Status& why) { finish(i, server::ToGrpc(why)); });
    if (!submitted.ok()) finish(i, server::ToGrpc(submitted));
  }
}

template <typename Resp>
void LedgerService::OnWriterAsync(uint32_t p, std::function<grpc::Status(const Ledger&, Resp*)> fn, Done<Resp> done) {
  OnWritersAsync<Resp>(
      {p}, [fn = std::move(fn)](uint32_t, const Ledger& ledger, Resp* r) { return fn(ledger, r); },
      [done = std::move(done)](grpc::Status status, std::vector<Resp>* results) {
        done(std::move(status), results != nullptr ? &results->front() : nullptr);
      });
}

namespace {
constexpr char kRetryWithKey[] = "retry with the same idempotency key";
uint32_t AccountPartition(const std::string& account, uint32_t partitions) {
  return runtime::PartitionForKey(account, partitions);
}
std::string NoKey(const google::protobuf::Message&) { return ""; }
template <typename R>
std::string IdempotencyKey(const R& r) { return r.idempotency_key(); }
}  // namespace

template <typename Request>
Result<uint32_t> LedgerService::PartitionOf(const Request& req) const {
  return AccountPartition(req.account_id(), log_->partitions());
}
template <>
Result<uint32_t> LedgerService::PartitionOf(const v1::ReverseRequest& req) const {
  return PartitionOfTxn(req.original_txn_id());
}

#define WL_LEDGER_MUTATION(Method, Request, Convert, KeyOf)                                          \
  void LedgerService::Method##Async(const v1::Request& req, MutationDone done) {                    \
    if (req.ByteSizeLong() > kMaxInputBytes) return done(TooLarge(req.ByteSizeLong()), nullptr);    \
    if (grpc::Status bad = CheckUtf8(req); !bad.ok()) return done(std::move(bad), nullptr);          \
    Result<uint32_t> p = PartitionOf(req);                                                           \
    if (!p.ok()) return done(server::ToGrpc(p.status()), nullptr);                                   \
    /* Converted here, not on the writer: a malformed request is answered without queueing, and */ \
    /* the writer neither copies nor parses the request. The writer gives it its txn id and time. */ \
    auto converted = Convert(req);                                                                   \
    if (!converted.ok()) return done(server::ToGrpc(converted.status()), nullptr);                   \
    MutateAsync(*p, KeyOf(req), Command(std::move(converted).value()), std::move(done));              \
  }                                                                                                  \
  grpc::Status LedgerService::Method(grpc::ServerContext*, const v1::Request* req,                  \
                                     v1::MutationResponse* resp) {                                  \
    return Await<v1::MutationResponse>([&](MutationDone done) { Method##Async(*req, std::move(done)); }, resp, \
                                       kRetryWithKey);                                              \
  }
WL_LEDGER_MUTATIONS(WL_LEDGER_MUTATION)
#undef WL_LEDGER_MUTATION

void LedgerService::GetAccountAsync(const v1::GetAccountRequest& req, Done<v1::Account> done) {
  if (req.account_id().empty()) return done({grpc::StatusCode::INVALID_ARGUMENT, "account_id is required"}, nullptr);
  const std::string id = req.account_id();
  OnWriterAsync<v1::Account>(AccountPartition(id, log_->partitions()), [id](const Ledger& ledger, v1::Account* out) {
    const Account* a = ledger.FindAccount(id);
    if (a == nullptr) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          "account " + id + " does not exist; list accounts with `wlctl account list`");
    }
    ToProto(*a, out);
    return grpc::Status::OK;
  }, std::move(done));
}

void LedgerService::ListAccountsAsync(const v1::ListAccountsRequest& req, Done<v1::ListAccountsResponse> done) {
  if (req.page_size() < 0 || req.page_size() > 1000) {
    return done({grpc::StatusCode::INVALID_ARGUMENT, "page_size must be 0..1000"}, nullptr);
  }
  // The filter: which levels and states are wanted (none given: any).
  struct Filter {
    std::set<Level> levels;
    std::set<AccountState> states;
    bool Matches(const Account& a) const {
      if (!levels.empty() && !(Tracked(a) && levels.contains(a.level))) return false;
      return states.empty() || states.contains(a.state);
    }
  };
  auto filter = std::make_shared<Filter>();
  for (int level : req.levels()) {
    auto l = FromProto(static_cast<v1::Level>(level), "levels");
    if (!l.ok()) return done(server::ToGrpc(l.status()), nullptr);
    filter->levels.insert(*l);
  }
  for (int state : req.states()) {
    auto st = FromProto(static_cast<v1::AccountState>(state), "states");
    if (!st.ok()) return done(server::ToGrpc(st.status()), nullptr);
    filter->states.insert(*st);
  }
  const bool filtered = !filter->levels.empty() || !filter->states.empty();
  const size_t limit = req.page_size() == 0 ? 100 : static_cast<size_t>(req.page_size());
  // How many ids a page looks at: with a filter, more than it may show, and no more than this,
  // so that a page of a rare level among millions of accounts still answers in bounded time.
  const size_t examine = filtered ? std::max(limit, options_.list_accounts_examined) : limit;
  // The ids come in order from the views (every account has one from the batch that opened it);
  // what is said of each comes from its partition's writer, as for GetAccount.
  auto ids = std::make_shared<std::vector<std::string>>();
  bool more = false;
  std::string from;
  if (!req.page_token().empty()) from = kAccountPrefix + req.page_token() + '\0';  // The first id after it.
  Status s = log_->ScanState(kAccountPrefix, [&](std::string_view key, std::string_view) {
    if (ids->size() == examine) {
      more = true;
      return false;
    }
    ids->emplace_back(key.substr(sizeof(kAccountPrefix) - 1));
    return true;
  }, from);
  if (!s.ok()) return done(server::ToGrpc(s), nullptr);

  std::vector<uint32_t> partitions;
  auto wanted = std::make_shared<std::vector<std::vector<std::string>>>(log_->partitions());
  for (const std::string& id : *ids) {
    const uint32_t p = AccountPartition(id, log_->partitions());
    if ((*wanted)[p].empty()) partitions.push_back(p);
    (*wanted)[p].push_back(id);
  }
  OnWritersAsync<v1::ListAccountsResponse>(
      std::move(partitions),
      [wanted, filter](uint32_t p, const Ledger& ledger, v1::ListAccountsResponse* out) {
        for (const std::string& id : (*wanted)[p]) {
          const Account* a = ledger.FindAccount(id);
          if (a == nullptr) {
            return grpc::Status(grpc::StatusCode::DATA_LOSS,
                                "the views list account " + id + " but the ledger does not hold it");
          }
          if (filter->Matches(*a)) ToProto(*a, out->add_accounts());
        }
        return grpc::Status::OK;
      },
      [ids, more, limit, filtered, done = std::move(done)](grpc::Status status,
                                                           std::vector<v1::ListAccountsResponse>* found) {
        if (!status.ok()) return done(std::move(status), nullptr);
        std::map<std::string, v1::Account*, std::less<>> by_id;
        for (auto& part : *found) {
          for (auto& a : *part.mutable_accounts()) by_id[a.account_id()] = &a;
        }
        v1::ListAccountsResponse page;
        // In id order: the matches, up to the limit; the page ends at the last id it looked at.
        std::string last_looked_at;
        for (const std::string& id : *ids) {
          auto it = by_id.find(id);
          if (it == by_id.end()) {
            if (!filtered) return done({grpc::StatusCode::INTERNAL, "account " + id + " went missing from its page"}, nullptr);
            last_looked_at = id;
            continue;
          }
          if (static_cast<size_t>(page.accounts_size()) == limit) {
            page.set_next_page_token(last_looked_at);
            return done(grpc::Status::OK, &page);
          }
          *page.add_accounts() = std::move(*it->second);
          last_looked_at = id;
        }
        if (more) page.set_next_page_token(last_looked_at);
        done(grpc::Status::OK, &page);
      });
}

namespace {

// The statement entry `env` made on `account_id`, and (if `link` is given) its link to the
// account's entry before it: every entry txn and entry link names such an event, so anything
// else is DATA_LOSS.
Result<StatementEntry> EntryIn(const eventlog::Envelope& env, const std::string& account_id,
                               EntryLink* link = nullptr) {
  const std::string where = "event " + std::to_string(env.seq()) + " of partition " + std::to_string(env.partition());
  Result<Event> event = DecodeEvent(env.type(), env.payload());
  if (!event.ok()) return DataLoss(where + " does not decode: " + event.status().message());
  std::optional<StatementEntry> entry = EntryOf(*event);
  if (!entry || EventAccountId(*event) != account_id) {
    return DataLoss(where + " (" + env.type() + ") makes no statement entry of account " + account_id);
  }
  if (link != nullptr) *link = *EntryLinkOf(*event);
  return *std::move(entry);
}

// EntryIn of the event at `seq` of `partition`.
Result<StatementEntry> EntryAt(const eventlog::EventLog& log, uint32_t partition, uint64_t seq,
                               const std::string& account_id) {
  Result<StatementEntry> entry = DataLoss("event " + std::to_string(seq) + " was not read");
  WL_RETURN_IF_ERROR(log.Walk(partition, seq, [&](const eventlog::Envelope& env) -> Result<uint64_t> {
    entry = EntryIn(env, account_id);
    return uint64_t{0};
  }));
  return entry;
}

}  // namespace

Result<Statement> ReadStatement(const eventlog::EventLog& log, const std::string& account_id, uint64_t last_entry_seq,
                                int64_t from_us, int64_t to_us, size_t* entries_read) {
  const uint32_t p = AccountPartition(account_id, log.partitions());
  // Newest first, as walked. Every walked entry's time and balance are needed to place the
  // period; of those outside it nothing else is kept.
  std::vector<StatementEntry> entries;
  WL_RETURN_IF_ERROR(log.Walk(p, last_entry_seq, [&](const eventlog::Envelope& env) -> Result<uint64_t> {
    EntryLink link;
    WL_ASSIGN_OR_RETURN(StatementEntry e, EntryIn(env, account_id, &link));
    const uint64_t prev = link.prev_entry_seq;
    if (e.time_us < from_us || e.time_us >= to_us) {
      StatementEntry placed;
      placed.time_us = e.time_us;
      placed.balance_after_minor = e.balance_after_minor;
      e = std::move(placed);
    }
    // Each link points back, so the walk ends; a link that does not is a corrupt log.
    if (prev >= env.seq()) {
      return DataLoss("event " + std::to_string(env.seq()) + " of partition " + std::to_string(p) +
                      " links account " + account_id + "'s entry before it to event " + std::to_string(prev) +
                      ", which is not earlier");
    }
    entries.push_back(std::move(e));
    return StatementWalkEnds(link, from_us) ? 0 : prev;  // 0: no entry before this one is read.
  }));
  if (entries_read != nullptr) *entries_read = entries.size();
  std::reverse(entries.begin(), entries.end());
  std::vector<EntryRow> rows;
  rows.reserve(entries.size());
  for (const StatementEntry& e : entries) rows.push_back({e.time_us, e.balance_after_minor});
  const StatementPlan plan = PlanStatement(rows, from_us, to_us);
  Statement s{account_id, from_us, to_us, plan.opening_balance_minor, plan.closing_balance_minor, {}};
  if (!plan.rows.empty()) {
    // Between the first and the last listed entry, those of other periods (kept as time and
    // balance only): their sum is what the listed amounts leave of closing - opening, a
    // difference of two balances, so within int64 but for balances near both of its ends.
    s.unlisted_entries = static_cast<int64_t>(plan.rows.back() - plan.rows.front() + 1 - plan.rows.size());
    __int128 unlisted = static_cast<__int128>(plan.closing_balance_minor) - plan.opening_balance_minor;
    for (size_t i : plan.rows) unlisted -= entries[i].amount_minor;
    if (unlisted < INT64_MIN || unlisted > INT64_MAX) {
      return OutOfRange("the entries of other periods within account " + account_id +
                        "'s statement sum beyond int64; ask for a shorter period");
    }
    s.unlisted_minor = static_cast<int64_t>(unlisted);
  }
  s.entries.reserve(plan.rows.size());
  for (size_t i : plan.rows) s.entries.push_back(std::move(entries[i]));
  return s;
}

void LedgerService::GetStatementAsync(const v1::GetStatementRequest& req, Done<v1::GetStatementResponse> done) {
  if (req.account_id().empty()) return done({grpc::StatusCode::INVALID_ARGUMENT, "account_id is required"}, nullptr);
  const int64_t to = req.to_us() == 0 ? INT64_MAX : req.to_us();
  if (req.from_us() < 0 || to < req.from_us()) {
    return done({grpc::StatusCode::INVALID_ARGUMENT, "statement period must have 0 <= from <= to"}, nullptr);
  }
  // The writer names the account's latest entry, and answers once the batch it ran in is
  // durable: every entry back from it is then in the log, every answered command's included.
  // The walk back runs on the statement reader, so that a long history holds up no commit.
  auto last = std::make_shared<uint64_t>(0);
  const std::string& id = req.account_id();
  OnWriterAsync<v1::GetStatementResponse>(
      AccountPartition(id, log_->partitions()),
      [id, last](const Ledger& ledger, v1::GetStatementResponse*) {
        const Account* a = ledger.FindAccount(id);
        if (a == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "account " + id + " not found");
        *last = a->last_entry_seq;
        return grpc::Status::OK;
      },
      [this, id, from = req.from_us(), to, last, done](grpc::Status status, v1::GetStatementResponse*) {
        if (!status.ok()) return done(std::move(status), nullptr);
        const Status posted = reader_->Post([this, id, from, to, last, done] {
          Result<Statement> statement = Internal("reading the statement did not finish");
          const auto started = std::chrono::steady_clock::now();
          size_t read = 0;
          try {
            statement = ReadStatement(*log_, id, *last, from, to, &read);
          } catch (const std::exception& e) {  // Out of memory on a long history, say: answered.
            statement = Internal(std::string("reading the statement of account ") + id + " threw: " + e.what());
          }
          LedgerMetrics::Get().statement_seconds.Observe(
              std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
          LedgerMetrics::Get().statement_entries.Observe(static_cast<double>(read));
          if (!statement.ok()) return done(server::ToGrpc(statement.status()), nullptr);
          v1::GetStatementResponse out;
          out.set_account_id(statement->account_id);
          out.set_opening_balance_minor(statement->opening_balance_minor);
          out.set_closing_balance_minor(statement->closing_balance_minor);
          out.set_unlisted_entries(static_cast<int32_t>(std::min<int64_t>(statement->unlisted_entries, INT32_MAX)));
          out.set_unlisted_minor(statement->unlisted_minor);
          for (const auto& e : statement->entries) *out.add_entries() = ToProto(e);
          done(grpc::Status::OK, &out);
        });
        if (!posted.ok()) done(server::ToGrpc(posted), nullptr);
      });
}

void LedgerService::GetTransactionAsync(const v1::GetTransactionRequest& req, Done<v1::Transaction> done) {
  auto p = PartitionOfTxn(req.txn_id());
  if (!p.ok()) return done(server::ToGrpc(p.status()), nullptr);
  // The writer knows every txn; of an entry txn it keeps only part, and the rest is read from its
  // event once the answer is due (its batch, and so the txn, durable).
  auto partial = std::make_shared<std::optional<TxnRecord>>();
  OnWriterAsync<v1::Transaction>(*p, [id = req.txn_id(), partial](const Ledger& ledger, v1::Transaction* out) {
    std::optional<TxnRecord> t = ledger.FindTxn(id);
    if (!t) return grpc::Status(grpc::StatusCode::NOT_FOUND, "transaction " + id + " does not exist");
    if (ledger.IsEntryTxn(id)) {
      *partial = std::move(t);
    } else {
      *out = ToProto(*t);
    }
    return grpc::Status::OK;
  }, [this, p = *p, partial, done = std::move(done)](grpc::Status status, v1::Transaction* out) {
    if (!status.ok() || !partial->has_value()) return done(std::move(status), out);
    const TxnRecord& t = **partial;
    std::string_view prefix;
    uint64_t seq = 0;
    if (!SplitTxnId(t.txn_id, &prefix, &seq)) {
      return done({grpc::StatusCode::DATA_LOSS, "transaction " + t.txn_id + " has no seq to read its event at"}, nullptr);
    }
    Result<StatementEntry> entry = EntryAt(*log_, p, seq, t.account_id);
    if (entry.ok() && entry->txn_id != t.txn_id) {
      entry = DataLoss("event " + std::to_string(seq) + " is of txn " + entry->txn_id + ", not " + t.txn_id);
    }
    if (!entry.ok()) return done(server::ToGrpc(entry.status()), nullptr);
    v1::Transaction whole = ToProto(CompleteTxn(t, *entry));
    *whole.mutable_entry() = ToProto(*entry);
    done(grpc::Status::OK, &whole);
  });
}

void LedgerService::GetTotalsAsync(const v1::LedgerTotalsRequest&, Done<v1::LedgerTotalsResponse> done) {
  // Each partition's postings balance within it, so the sum over partitions read one after the
  // other is zero like each of them.
  std::vector<uint32_t> all(log_->partitions());
  for (uint32_t p = 0; p < all.size(); ++p) all[p] = p;
  OnWritersAsync<v1::LedgerTotalsResponse>(
      std::move(all),
      [](uint32_t, const Ledger& ledger, v1::LedgerTotalsResponse* out) {
        out->set_tenant_total_minor(ledger.state().tenant_total_minor);
        out->set_accounts(static_cast<int64_t>(ledger.state().accounts.size()));
        for (const auto& [name, balance] : ledger.state().system_balances) (*out->mutable_system_minor())[name] = balance;
        return grpc::Status::OK;
      },
      [done = std::move(done)](grpc::Status status, std::vector<v1::LedgerTotalsResponse>* parts) {
        if (!status.ok()) return done(std::move(status), nullptr);
        // Each partition's sums fit in int64 (the domain refuses what would not); theirs may not.
        __int128 tenants = 0, accounts = 0, system = 0;
        std::map<std::string, __int128> by_name;
        for (const auto& part : *parts) {
          tenants += part.tenant_total_minor();
          accounts += part.accounts();
          for (const auto& [name, balance] : part.system_minor()) {
            by_name[name] += balance;
            system += balance;
          }
        }
        auto fits = [](__int128 v) { return v >= INT64_MIN && v <= INT64_MAX; };
        bool all_fit = fits(tenants) && fits(system);
        for (const auto& [name, sum] : by_name) all_fit = all_fit && fits(sum);
        if (!all_fit) {
          return done({grpc::StatusCode::OUT_OF_RANGE,
                       "the totals over all partitions do not fit in 64 bits; read them per account"},
                      nullptr);
        }
        v1::LedgerTotalsResponse totals;
        for (const auto& [name, sum] : by_name) (*totals.mutable_system_minor())[name] = static_cast<int64_t>(sum);
        totals.set_tenant_total_minor(static_cast<int64_t>(tenants));
        totals.set_accounts(static_cast<int64_t>(accounts));
        totals.set_total_minor(static_cast<int64_t>(tenants + system));
        done(grpc::Status::OK, &totals);
      });
}

#define WL_LEDGER_READ(Method, Request, Response)                                                          \
  grpc::Status LedgerService::Method(grpc::ServerContext*, const v1::Request* req, v1::Response* resp) {  \
    const v1::Request copy = req == nullptr ? v1::Request() : *req;                                        \
    return Await<v1::Response>([&](Done<v1::Response> done) { Method##Async(copy, std::move(done)); }, resp, \
                               "retry");                                                                 \
  }
WL_LEDGER_READS(WL_LEDGER_READ)
#undef WL_LEDGER_READ

}  // namespace wattledger::ledger::adapters
