// wlctl: the operator's command line for the ledger, over gRPC (LedgerService and Admin).
//
// Run parses the arguments, validates every value it can without the server (money, dates,
// payment methods, required flags, no empty values, text that must be UTF-8), and only then opens a channel and
// makes the call, so a usage error never reaches the ledger. Results go to `out` as aligned text or, with -o json,
// as one JSON object in which every money value is a yuan decimal string ("12.3456"). Errors go
// to `err` as `wlctl: <what failed>: <gRPC code> <server message>` with a hint where one helps;
// with -o json, as one JSON object instead, {"error": {"command", "code", "rule", "message",
// "hints"}}, where code is the gRPC code's name, USAGE, CHECK_FAILED (audit verify, totals) or
// INTERNAL, and rule the ledger rule the message names ("hoarding_cap"), when it names one.
//
// Exit codes: 0 success, 1 the server rejected or failed the call (or `audit verify` found a
// problem), 2 usage error.
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

namespace grpc {
class ChannelInterface;
}  // namespace grpc

namespace wattledger::wlctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// Opens the channel to an endpoint ("host:port"). Tests pass their own to see whether, and
// where, wlctl connects.
using ChannelFactory =
    std::function<std::shared_ptr<grpc::ChannelInterface>(const std::string& endpoint)>;

// An insecure channel to the endpoint.
std::shared_ptr<grpc::ChannelInterface> DefaultChannel(const std::string& endpoint);

// Who operates when neither --operator nor WLCTL_OPERATOR says: $USER, else $LOGNAME, else the
// name of the user id wlctl runs as; "" when none is known (an id with no passwd entry, in a
// container). Then queries still work, and a change is refused (exit 2) rather than recorded
// under a made-up name.
std::string DefaultOperator();

int Run(int argc, char** argv, std::ostream& out, std::ostream& err);
// `default_operator` stands in for DefaultOperator (tests).
int Run(int argc, char** argv, std::ostream& out, std::ostream& err, const ChannelFactory& connect,
        const std::function<std::string()>& default_operator = DefaultOperator);

}  // namespace wattledger::wlctl
