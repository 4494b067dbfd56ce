// Rendering of ledger and admin API messages for wlctl: JSON objects for scripts and aligned
// text for people, plus the time and text-width helpers both need.
//
// Every money field of the API (int64 minor units, 1e-4 yuan) is rendered as a decimal string in
// yuan with all four stored decimals (FormatYuan), never as a JSON number, so no script ever
// sees a rounded or floating-point balance. Field names drop the `_minor` suffix: the JSON key
// for `balance_minor` is `balance`. Enums are lower-case words without their prefix
// (LEVEL_ALARM1 -> "alarm1"). All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "wattledger/admin/v1/admin.pb.h"
#include "wattledger/base/status.h"
#include "wattledger/ledger/v1/ledger.pb.h"

namespace wattledger::wlctl {

// Insertion-ordered, so that output follows the order of the API fields.
using Json = nlohmann::ordered_json;

// "LEVEL_ALARM1" with prefix "LEVEL_" -> "alarm1"; an unknown (empty) name -> "unknown".
std::string EnumWord(std::string_view proto_name, std::string_view prefix);

std::string ModeWord(ledger::v1::Mode mode);
std::string StateWord(ledger::v1::AccountState state);
std::string LevelWord(ledger::v1::Level level);
std::string KindWord(ledger::v1::TxnKind kind);
std::string MethodWord(ledger::v1::PaymentMethod method);

Json LimitsJson(const ledger::v1::Limits& limits);
Json AccountJson(const ledger::v1::Account& account);
// Under "account": the whole account after an account command, the fields a posting changes
// (account_id, balance, level, purchase_count, supply_cut) after a posting.
Json MutationJson(const ledger::v1::MutationResponse& response);
Json AccountListJson(const ledger::v1::ListAccountsResponse& response);
Json StatementJson(const ledger::v1::GetStatementResponse& response);
Json TransactionJson(const ledger::v1::Transaction& txn);
Json TotalsJson(const ledger::v1::LedgerTotalsResponse& totals);
Json VerifyLogJson(const admin::v1::VerifyLogResponse& response);
Json StatusJson(const admin::v1::GetStatusResponse& response);

// One JSON document on one or more lines, ending in a newline. Invalid UTF-8 from the server is
// replaced rather than thrown on.
void PrintJson(const Json& value, std::ostream& out);

// Why a command failed, printed on stderr: as text, `wlctl: <what>: <code> <message>` and then
// each note on its own line; with -o json, one object
// {"error": {"command", "code", "rule", "message", "hints"}} so that a script can branch on the
// code and the rule without parsing English.
struct Failure {
  // What was being done: "topup A1 100", "account open"; empty when nothing was chosen yet.
  std::string what;
  // A gRPC code name ("FAILED_PRECONDITION") when the server answered; kUsage for an error in
  // the command line, kCheckFailed when the call worked but what it found is wrong (a broken
  // chain, books that do not balance), kInternal for a bug in wlctl.
  std::string code;
  // The server's message ("hoarding_cap: top-up of ..."), or wlctl's own.
  std::string message;
  // Lines after the message: "hint: ...", "run `wlctl topup --help` for usage".
  std::vector<std::string> notes;
  // Whether the text form shows the code: a usage error's message says it all.
  bool code_in_text = true;

  static constexpr char kUsage[] = "USAGE";
  static constexpr char kCheckFailed[] = "CHECK_FAILED";
  static constexpr char kInternal[] = "INTERNAL";
};

// The rule a ledger message starts with: lower-case letters, digits and '_' before ": "
// ("hoarding_cap" in "hoarding_cap: top-up of ..."); "" when it starts with none.
std::string_view LeadingRule(std::string_view message);

// The JSON form of a failure. `rule` is the rule the server names at the start of its message
// ("hoarding_cap" in "hoarding_cap: top-up of ..."), and is left out when there is none; `hints`
// are the notes without their "hint: " prefix.
Json FailureJson(const Failure& failure);
void PrintFailure(const Failure& failure, bool json, std::ostream& err);

// A flat object as "key  value" lines with the keys padded to one width. Nested objects are
// flattened into their parent, arrays of scalars are joined with ", ", booleans are yes/no;
// arrays of objects are skipped (callers print them as a Table).
void PrintKeyValues(const Json& object, std::ostream& out);

// Columns padded by display width, so that CJK names (two terminal cells per character) keep
// the columns aligned. Columns listed in right_aligned (money, counts) are padded on the left.
class Table {
 public:
  explicit Table(std::vector<std::string> headers, std::vector<bool> right_aligned = {});
  void AddRow(std::vector<std::string> cells);
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_aligned_;
  std::vector<std::vector<std::string>> rows_;
};

// Terminal cells taken by a UTF-8 string: two for East Asian wide characters, one otherwise.
size_t DisplayWidth(std::string_view utf8);

// "2026-11-01T08:30:00.123456Z"; the fraction is left out when it is zero. 0 -> "".
std::string FormatTimeUs(int64_t time_us);

// Unix microseconds from "YYYY-MM-DD" (midnight UTC) or RFC 3339, e.g. "2026-11-01T08:30:00Z",
// "2026-11-01T08:30:00.5+08:00". INVALID_ARGUMENT with the expected forms otherwise, and for
// times before 1970.
Result<int64_t> ParseTimeUs(std::string_view text);

}  // namespace wattledger::wlctl
