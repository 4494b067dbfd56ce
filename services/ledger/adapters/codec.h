// The codec between the ledger's pure domain (plain structs) and its wire contract (protobuf):
// the one place where the two kinds of types meet.
//
// Everything that crosses inbound is validated for shape here: required ids present, enums inside
// their range (UNSPECIFIED and values this build does not know are INVALID_ARGUMENT naming the
// field), amounts with the sign the domain requires, postings whose legs sum to zero. Business
// rules (limits, balances, idempotency) stay in the domain. Nothing here throws or asserts on
// input; every function is pure and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "services/ledger/domain/commands.h"
#include "services/ledger/domain/events.h"
#include "services/ledger/domain/ledger.h"
#include "services/ledger/domain/types.h"
#include "wattledger/base/status.h"
#include "wattledger/billing/v1/events.pb.h"
#include "wattledger/ledger/v1/ledger.pb.h"

namespace wattledger::ledger::adapters {

// An event as the log stores it: the payload's protobuf full name and its serialized bytes.
struct Encoded {
  std::string type;  // E.g. "wattledger.ledger.v1.ToppedUp".
  std::string payload;
};

Encoded EncodeEvent(const Event& e);

// The first text field of `m` (nested messages and repeated fields included; bytes fields are
// not text) that is not UTF-8, as its path ("reason", "phones[1]", "posting.legs[0].account"), or
// nullopt. gRPC's parser refuses such requests; in-process callers skip it, and a payload that
// protobuf cannot parse back would be an event no replay could read. Made for the ledger.v1
// requests: proto3, no maps, no recursive types (a map would be named by entry index).
std::optional<std::string> NonUtf8Field(const google::protobuf::Message& m);

// Decodes an envelope payload of one of the 16 domain event types. INVALID_ARGUMENT for an
// unknown type, a payload that does not parse, or fields out of range (UNSPECIFIED or unknown
// enums, amounts with the wrong sign, empty txn_id/account_id, postings that do not balance or
// name an unknown system account). Never crashes, whatever the bytes.
Result<Event> DecodeEvent(std::string_view type, std::string_view payload);

// Recorded next to the events but not an Event: the domain never folds it.
inline constexpr std::string_view kRejectedType = "wattledger.ledger.v1.CommandRejected";

// True for the 16 domain event types (not kRejectedType).
bool IsLedgerEventType(std::string_view type);

// Enum conversions. FromProto rejects UNSPECIFIED and unknown values with INVALID_ARGUMENT whose
// message names `field` and lists the accepted values.
v1::PaymentMethod ToProto(PaymentMethod m);
Result<PaymentMethod> FromProto(v1::PaymentMethod m, std::string_view field);
v1::Mode ToProto(Mode m);
Result<Mode> FromProto(v1::Mode m, std::string_view field);
v1::Level ToProto(Level l);
Result<Level> FromProto(v1::Level l, std::string_view field);
v1::AccountState ToProto(AccountState s);
Result<AccountState> FromProto(v1::AccountState s, std::string_view field);
v1::TxnKind ToProto(TxnKind k);

// Views for the API.
v1::Account ToProto(const Account& a);  // Every field but the statement entries.
// The same into *out, whose every field of an account it sets: a message that held another
// account holds nothing of it afterwards.
void ToProto(const Account& a, v1::Account* out);
// What a posting left the account at (a receipt), into *out, every field of which it sets.
void ToProto(const Account& a, v1::AccountBalance* out);
v1::StatementEntry ToProto(const StatementEntry& e);
v1::Transaction ToProto(const TxnRecord& t);
v1::Limits ToProto(const Limits& l);
v1::Posting ToProto(const Posting& p);

// Requests -> domain commands, without txn_id and time_us: the partition's writer gives each its
// own when it takes it. Only shape is checked (required ids, enum values); the domain decides the
// rest and records its rejections.
Result<OpenAccount> FromProto(const v1::OpenAccountRequest& r);
Result<AttachMeter> AttachFromProto(const v1::MeterRequest& r);
Result<DetachMeter> DetachFromProto(const v1::MeterRequest& r);
Result<SetLimits> FromProto(const v1::SetLimitsRequest& r);
Result<Suspend> FromProto(const v1::SuspendRequest& r);
Result<Resume> FromProto(const v1::ResumeRequest& r);
// An UNSPECIFIED method means cash (only used when a settlement pays out).
Result<TransferOwnership> FromProto(const v1::TransferRequest& r);
// An UNSPECIFIED method means cash (only used when a positive balance is paid out).
Result<CloseAccount> FromProto(const v1::CloseAccountRequest& r);
Result<TopUp> FromProto(const v1::TopUpRequest& r);
Result<Refund> FromProto(const v1::RefundRequest& r);
Result<Reverse> FromProto(const v1::ReverseRequest& r);
Result<Adjust> FromProto(const v1::AdjustRequest& r);

// Billing's usage event -> charge command. charge_id and account_id must be set, amount_minor > 0
// and energy_wh >= 0: billing is another service, so its output is input here. The charge takes
// the usage's strings (no copies) once every check passed; a usage refused is left as it came,
// for the record of its rejection.
Result<Charge> ChargeFromUsage(billing::v1::UsageCharged* u, std::string txn_id, int64_t time_us);

// The account_id of a serialised UsageCharged, read off the wire without parsing the rest: the
// consumer routes every charge by it, and the writer parses the payload fully anyway. Agrees with
// ParseFromString wherever that succeeds (the last occurrence wins). nullopt when the payload is
// not well-formed wire format; "" when it has no account_id.
std::optional<std::string_view> UsageAccountIdOf(std::string_view payload);

}  // namespace wattledger::ledger::adapters
