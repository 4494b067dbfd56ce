#include "cmd/wlctl/wlctl.h"

#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <sstream>
#include <utility>
#include <vector>

#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "cmd/wlctl/format.h"
#include "wattledger/admin/v1/admin.grpc.pb.h"
#include "wattledger/base/status.h"
#include "wattledger/base/utf8.h"
#include "wattledger/ledger/v1/ledger.grpc.pb.h"
#include "wattledger/money/money.h"

namespace wattledger::wlctl {

namespace pb = ::wattledger::ledger::v1;
namespace adminpb = ::wattledger::admin::v1;
using money::FormatYuan;

namespace {

constexpr char kDefaultEndpoint[] = "127.0.0.1:7400";
constexpr char kMethods[] = "cash|wechat|alipay|bank|platform";
// The longest --timeout: no call of the ledger takes a day, and the bound keeps the deadline's
// microseconds far from int64's limit, past which it wrapped into the past.
constexpr int kMaxTimeoutS = 86'400;

// Flags shared by every command; filled by CLI11 before any command runs.
struct Globals {
  std::string endpoint = kDefaultEndpoint;
  std::string output = "table";
  std::string operator_id;
  // As typed; read into timeout_s by ParseTimeout once the flags are parsed.
  std::string timeout_text = "10";
  double timeout_s = 10;
};

// What a chosen command needs at run time: the channel (opened on first use), the flags and
// the streams. One per Run.
class Client {
 public:
  Client(const Globals& globals, std::ostream& out, std::ostream& err,
         const ChannelFactory& connect)
      : globals_(globals), out_(out), err_(err), connect_(connect) {}

  bool json() const { return globals_.output == "json"; }
  const std::string& operator_id() const { return globals_.operator_id; }
  std::ostream& out() { return out_; }
  // Prints why the command failed, as text or, with -o json, as one JSON object.
  void Fail(const Failure& failure) { PrintFailure(failure, json(), err_); }

  pb::LedgerService::Stub& Ledger() {
    if (!ledger_) ledger_ = pb::LedgerService::NewStub(Channel());
    return *ledger_;
  }
  adminpb::Admin::Stub& Admin() {
    if (!admin_) admin_ = adminpb::Admin::NewStub(Channel());
    return *admin_;
  }

  // Makes one unary call, fn(ClientContext*) -> grpc::Status, under the --timeout deadline.
  // On failure prints `wlctl: <what>: <CODE> <message>` and a hint, and returns false.
  // `mutating` calls get a hint about retrying safely when the outcome is unknown.
  template <typename Fn>
  bool Call(const std::string& what, Fn&& fn, bool mutating = false) {
    grpc::ClientContext context;
    auto timeout = std::chrono::microseconds(static_cast<int64_t>(globals_.timeout_s * 1e6));
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    grpc::Status status = fn(&context);
    if (status.ok()) return true;
    ReportRpcError(what, status, mutating);
    return false;
  }

 private:
  std::shared_ptr<grpc::ChannelInterface> Channel() {
    if (!channel_) channel_ = connect_(globals_.endpoint);
    return channel_;
  }

  void ReportRpcError(const std::string& what, const grpc::Status& status, bool mutating) {
    auto code = static_cast<StatusCode>(status.error_code());
    Failure failure{what, std::string(StatusCodeName(code)), status.error_message(), {}};
    switch (code) {
      case StatusCode::kUnavailable:
        // A ledger rule (idempotency_key_in_flight) comes from a running server: try again.
        if (!LeadingRule(status.error_message()).empty()) {
          failure.notes.push_back(std::string("hint: the server asks for a retry") +
                                  (mutating ? " with the same --key" : ""));
        } else {
          failure.notes.push_back("hint: is the server running at " + globals_.endpoint +
                                  "? start it with `make run` or pass --endpoint");
        }
        break;
      case StatusCode::kDeadlineExceeded: {
        std::ostringstream hint;
        hint << "hint: no answer within " << globals_.timeout_s << "s; pass a larger --timeout";
        if (mutating) {
          hint << ". The change may still have been applied: `wlctl statement` shows whether it "
                  "was, and repeating a keyed command with the same --key returns its result "
                  "instead of applying it twice";
        }
        failure.notes.push_back(hint.str());
        break;
      }
      case StatusCode::kUnimplemented:
        failure.notes.push_back("hint: the server at " + globals_.endpoint +
                                " does not offer this call; is --endpoint a wattledger server of "
                                "this version?");
        break;
      default:
        break;
    }
    Fail(failure);
  }

  const Globals& globals_;
  std::ostream& out_;
  std::ostream& err_;
  const ChannelFactory& connect_;
  std::shared_ptr<grpc::ChannelInterface> channel_;
  std::unique_ptr<pb::LedgerService::Stub> ledger_;
  std::unique_ptr<adminpb::Admin::Stub> admin_;
};

// A validated command, ready to call the server; returns the exit code.
using Action = std::function<int(Client&)>;
// Checks the parsed flags of the chosen command and builds its Action, or says what is wrong
// (always INVALID_ARGUMENT: a usage error).
using Plan = std::function<Result<Action>()>;

// A money flag (yuan text) and whether it was given at all.
struct MoneyFlag {
  std::string text;
  CLI::Option* option = nullptr;

  bool given() const { return option != nullptr && option->count() > 0; }
};

MoneyFlag* AddMoney(CLI::App* app, const std::string& name, MoneyFlag* flag,
                    const std::string& help) {
  flag->option = app->add_option(name, flag->text, help + " (yuan, up to 4 decimals)")
                     ->type_name("YUAN");
  return flag;
}

Result<int64_t> ParseMoney(std::string_view what, const std::string& text) {
  Result<int64_t> minor = money::ParseYuan(text);
  if (!minor.ok()) return InvalidArgument(std::string(what) + ": " + minor.status().message());
  return minor;
}

Result<int64_t> ParsePositiveMoney(std::string_view what, const std::string& text) {
  WL_ASSIGN_OR_RETURN(int64_t minor, ParseMoney(what, text));
  if (minor <= 0) {
    return InvalidArgument(std::string(what) + ": the amount must be positive, got " + text +
                           "; to take money from an account use `wlctl refund` or "
                           "`wlctl adjust --amount -X`");
  }
  return minor;
}

// --timeout in seconds: a finite decimal number in (0, kMaxTimeoutS] ("0.5", "30", "1e2"),
// nothing around it. Parsed here rather than by CLI11, whose message for a bad value prints the
// range up to DBL_MAX in 300 digits and whose check lets nan through.
Result<double> ParseTimeout(const std::string& text) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(seconds) || seconds <= 0 || seconds > kMaxTimeoutS) {
    return InvalidArgument("--timeout must be a number of seconds > 0 and at most " +
                           std::to_string(kMaxTimeoutS) + " (one day), e.g. 30 or 0.5, got '" +
                           text + "'");
  }
  return seconds;
}

// A whole-number flag in [min, max], min >= 0, read as strictly as money: decimal digits and
// nothing else (no sign, space, 0x or exponent), and a value past max refused rather than
// clamped, so that what is sent is what was typed. `meaning` says what the number is.
Result<int64_t> ParseWholeNumber(std::string_view flag, const std::string& text, int64_t min,
                                 int64_t max, std::string_view meaning) {
  auto wrong = [&] {
    return InvalidArgument(std::string(flag) + " must be a whole number from " +
                           std::to_string(min) + " to " + std::to_string(max) + " (" +
                           std::string(meaning) + "), got '" + text + "'");
  };
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return wrong();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
    return wrong();
  }
  return value;
}

Result<pb::PaymentMethod> ParseMethod(const std::string& text) {
  static const std::pair<const char*, pb::PaymentMethod> kTable[] = {
      {"cash", pb::PAYMENT_METHOD_CASH},     {"wechat", pb::PAYMENT_METHOD_WECHAT},
      {"alipay", pb::PAYMENT_METHOD_ALIPAY}, {"bank", pb::PAYMENT_METHOD_BANK},
      {"platform", pb::PAYMENT_METHOD_PLATFORM}};
  for (const auto& [name, method] : kTable) {
    if (text == name) return method;
  }
  return InvalidArgument("--method: unknown payment method \"" + text + "\"; expected one of " +
                         std::string(kMethods));
}

Status NonEmpty(std::string_view flag, const std::string& value) {
  if (value.empty()) return InvalidArgument(std::string(flag) + " must not be empty");
  return Status::Ok();
}

// The bytes of text that is not UTF-8, printable: ASCII as is, every other byte as \xNN.
std::string EscapeBytes(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

// Every value given to the chosen command and its parents (from argv or the environment) is
// checked here, before any request is built, rather than flag by flag, where a new flag could be
// missed:
// - It must not be empty, but for --page-token and --reason. An empty value means nothing for
//   the others, and an empty account or txn id (a script's unset variable) would go to the
//   server as a request for "".
// - It must be UTF-8. Every value wlctl may send lands in a proto3 string field, which must hold
//   UTF-8: protobuf refuses to serialize anything else, and the call then fails as
//   UNIMPLEMENTED after a libprotobuf ERROR line, far from the cause.
Status CheckValues(const CLI::App& app) {
  for (const CLI::Option* option : app.get_options()) {
    for (const std::string& value : option->results()) {
      // An empty page token is the first page, and an empty reason none (where one is needed,
      // its command says so): a script passes "$TOKEN" or "$REASON" as it stands.
      if (value.empty() && option->get_name() != "--page-token" && option->get_name() != "--reason") {
        const std::string name = option->get_name();
        return InvalidArgument(name + " must not be empty: " +
                               (name.starts_with("-") ? "give it a value or leave it out"
                                                      : "give the " + name + " to act on"));
      }
      if (!IsUtf8(value)) {
        return InvalidArgument(option->get_name() + " is not valid UTF-8: got \"" +
                               EscapeBytes(value) +
                               "\"; the ledger stores text as UTF-8, so convert it first (e.g. "
                               "with iconv -t UTF-8) or fix the terminal's encoding");
      }
    }
  }
  // Only the chosen subcommands, one per level: at most four deep.
  for (const CLI::App* sub : app.get_subcommands()) WL_RETURN_IF_ERROR(CheckValues(*sub));
  return Status::Ok();
}

// Prints a MutationResponse in the chosen format.
void PrintMutation(Client& client, const pb::MutationResponse& response) {
  if (client.json()) {
    PrintJson(MutationJson(response), client.out());
    return;
  }
  PrintKeyValues(MutationJson(response), client.out());
  if (response.duplicate()) {
    client.out() << "(this idempotency key was used before: the first result is shown, "
                    "nothing was applied again)\n";
  }
}

// An Action for a mutating call: call(stub, context, response) -> grpc::Status.
template <typename Call>
Action Mutation(std::string what, Call call) {
  return [what = std::move(what), call = std::move(call)](Client& client) {
    if (client.operator_id().empty()) {
      client.Fail({what, Failure::kUsage,
                   "the operator is unknown: pass --operator NAME or set WLCTL_OPERATOR (when "
                   "neither is given it is $USER, $LOGNAME or the login name, and none is set "
                   "here); every change records who made it",
                   {}, /*code_in_text=*/false});
      return kExitUsage;
    }
    pb::MutationResponse response;
    bool ok = client.Call(
        what,
        [&](grpc::ClientContext* context) { return call(client.Ledger(), context, &response); },
        /*mutating=*/true);
    if (!ok) return kExitFailed;
    PrintMutation(client, response);
    return kExitOk;
  };
}

void PrintAccount(Client& client, const pb::Account& account) {
  if (client.json()) {
    PrintJson(AccountJson(account), client.out());
  } else {
    PrintKeyValues(AccountJson(account), client.out());
  }
}

// ---- account ----

void AddAccountOpen(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, name, room, tariff, mode = "prepaid", opening_source;
    std::vector<std::string> phones, meters;
    MoneyFlag credit_limit, alarm1, alarm2, hoarding_cap, opening_balance;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand("open", "open an account");
  sub->add_option("--id", f->id, "account id")->required();
  sub->add_option("--name", f->name, "customer name")->required();
  sub->add_option("--phone", f->phones, "phone for SMS; repeat for more");
  sub->add_option("--meter", f->meters, "meter id; repeat for more (一户多表)");
  sub->add_option("--room", f->room, "room");
  sub->add_option("--tariff", f->tariff, "tariff id, passed on to billing");
  sub->add_option("--mode", f->mode, "prepaid or postpaid")
      ->check(CLI::IsMember({"prepaid", "postpaid"}))
      ->capture_default_str();
  AddMoney(sub, "--credit-limit", &f->credit_limit, "how far below zero before cut-off");
  AddMoney(sub, "--alarm1", &f->alarm1, "alarm level 1 balance");
  AddMoney(sub, "--alarm2", &f->alarm2, "alarm level 2 balance");
  AddMoney(sub, "--hoarding-cap", &f->hoarding_cap, "highest balance a top-up may reach");
  CLI::Option* opening =
      AddMoney(sub, "--opening-balance", &f->opening_balance, "balance carried from an old meter")
          ->option;
  CLI::Option* source =
      sub->add_option("--opening-source", f->opening_source, "where the opening balance came from");
  opening->needs(source);
  source->needs(opening);
  Plan plan = [f, &g]() -> Result<Action> {
    pb::OpenAccountRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_customer_name(f->name);
    for (const std::string& p : f->phones) req.add_phones(p);
    req.set_room(f->room);
    for (const std::string& m : f->meters) req.add_meters(m);
    req.set_tariff_id(f->tariff);
    req.set_mode(f->mode == "postpaid" ? pb::MODE_POSTPAID : pb::MODE_PREPAID);
    WL_RETURN_IF_ERROR(NonEmpty("--id", f->id));
    WL_RETURN_IF_ERROR(NonEmpty("--name", f->name));
    if (f->credit_limit.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--credit-limit", f->credit_limit.text));
      req.set_credit_limit_minor(v);
    }
    if (f->alarm1.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--alarm1", f->alarm1.text));
      req.set_alarm1_minor(v);
    }
    if (f->alarm2.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--alarm2", f->alarm2.text));
      req.set_alarm2_minor(v);
    }
    if (f->hoarding_cap.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--hoarding-cap", f->hoarding_cap.text));
      req.set_hoarding_cap_minor(v);
    }
    if (f->opening_balance.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--opening-balance", f->opening_balance.text));
      WL_RETURN_IF_ERROR(NonEmpty("--opening-source", f->opening_source));
      req.set_opening_balance_minor(v);
      req.set_opening_balance_source(f->opening_source);
    }
    return Mutation("account open " + f->id, [req](auto& stub, auto* context, auto* response) {
      return stub.OpenAccount(context, req, response);
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountShow(CLI::App* parent, const Globals& g, Plan* chosen) {
  auto id = std::make_shared<std::string>();
  CLI::App* sub = parent->add_subcommand("show", "show an account and its balance");
  sub->add_option("account", *id, "account id")->required();
  Plan plan = [id]() -> Result<Action> {
    pb::GetAccountRequest req;
    req.set_account_id(*id);
    return Action([req](Client& client) {
      pb::Account account;
      bool ok = client.Call("account show " + req.account_id(), [&](grpc::ClientContext* c) {
        return client.Ledger().GetAccount(c, req, &account);
      });
      if (!ok) return kExitFailed;
      PrintAccount(client, account);
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

// The values of an enum but UNSPECIFIED, by the word wlctl prints for each ("cutoff", "closed").
struct EnumValues {
  std::vector<std::string> words;
  std::vector<int> numbers;

  EnumValues(std::string_view prefix, const google::protobuf::EnumDescriptor* d) {
    for (int i = 0; i < d->value_count(); ++i) {
      if (d->value(i)->number() == 0) continue;
      words.push_back(EnumWord(d->value(i)->name(), prefix));
      numbers.push_back(d->value(i)->number());
    }
  }
  std::string Joined(const char* separator) const { return CLI::detail::join(words, separator); }
  // The numbers of `given` words; INVALID_ARGUMENT naming `flag` for a word not among them.
  Result<std::vector<int>> Parse(const std::string& flag, const std::vector<std::string>& given) const {
    std::vector<int> out;
    for (const std::string& word : given) {
      auto it = std::find(words.begin(), words.end(), word);
      if (it == words.end()) {
        return InvalidArgument(flag + ": unknown value \"" + word + "\"; expected one of " + Joined(", "));
      }
      out.push_back(numbers[static_cast<size_t>(it - words.begin())]);
    }
    return out;
  }
};

void AddAccountList(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string page_size = "0", page_token;
    std::vector<std::string> levels, states;
    bool all = false;
  };
  auto f = std::make_shared<Flags>();
  const EnumValues levels("LEVEL_", pb::Level_descriptor());
  const EnumValues states("ACCOUNT_STATE_", pb::AccountState_descriptor());
  CLI::App* sub = parent->add_subcommand("list", "list accounts, one page at a time");
  // Read as text: CLI11's own integer parsing takes "0x10", " 7" and octal "010".
  sub->add_option("--page-size", f->page_size, "accounts per page (0: server default of 100)")
      ->type_name("N")
      ->capture_default_str();
  sub->add_option("--page-token", f->page_token, "next_page_token of the previous page");
  sub->add_option("--level", f->levels,
                  "only prepaid accounts, not closed, at this level; repeat for more (e.g. "
                  "--level cutoff --level arrears: whom to call)")
      ->type_name(levels.Joined("|"));
  sub->add_option("--state", f->states, "only accounts in this state; repeat for more")
      ->type_name(states.Joined("|"));
  sub->add_flag("--all", f->all, "every page, one after the other, instead of one page");
  Plan plan = [f, levels, states]() -> Result<Action> {
    WL_ASSIGN_OR_RETURN(int64_t size,
                        ParseWholeNumber("--page-size", f->page_size, 0, 1000,
                                         "accounts per page; 0: the server's default of 100"));
    pb::ListAccountsRequest req;
    req.set_page_size(static_cast<int32_t>(size));
    req.set_page_token(f->page_token);
    // Words to enum values, through the same words the output uses.
    WL_ASSIGN_OR_RETURN(std::vector<int> level_numbers, levels.Parse("--level", f->levels));
    for (int v : level_numbers) req.add_levels(static_cast<pb::Level>(v));
    WL_ASSIGN_OR_RETURN(std::vector<int> state_numbers, states.Parse("--state", f->states));
    for (int v : state_numbers) req.add_states(static_cast<pb::AccountState>(v));
    const bool all = f->all;
    if (all && !f->page_token.empty()) {
      return InvalidArgument("--all starts at the first account; leave out --page-token");
    }
    return Action([req, all](Client& client) mutable {
      pb::ListAccountsResponse whole;
      Table table({"ACCOUNT", "NAME", "STATE", "LEVEL", "BALANCE", "METERS"},
                  {false, false, false, false, true, false});
      while (true) {
        pb::ListAccountsResponse response;
        bool ok = client.Call("account list", [&](grpc::ClientContext* c) {
          return client.Ledger().ListAccounts(c, req, &response);
        });
        if (!ok) return kExitFailed;
        for (pb::Account& a : *response.mutable_accounts()) {
          std::string meters;
          for (const std::string& m : a.meters()) meters += (meters.empty() ? "" : ",") + m;
          table.AddRow({a.account_id(), a.customer_name(), StateWord(a.state()),
                        LevelWord(a.level()), FormatYuan(a.balance_minor()), meters});
          *whole.add_accounts() = std::move(a);
        }
        whole.set_next_page_token(response.next_page_token());
        if (!all || response.next_page_token().empty()) break;
        req.set_page_token(response.next_page_token());
      }
      if (client.json()) {
        PrintJson(AccountListJson(whole), client.out());
        return kExitOk;
      }
      table.Print(client.out());
      if (!whole.next_page_token().empty()) {
        client.out() << "more: wlctl account list --page-token " << whole.next_page_token()
                     << " (with the same filters), or --all\n";
      }
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountClose(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, reason, method = "cash";
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand(
      "close", "close an account: refund the remaining balance, or record arrears");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("--reason", f->reason, "why the account is closed");
  sub->add_option("--method", f->method, "how a remaining balance is paid out")
      ->type_name(kMethods)
      ->capture_default_str();
  Plan plan = [f, &g]() -> Result<Action> {
    WL_ASSIGN_OR_RETURN(pb::PaymentMethod method, ParseMethod(f->method));
    pb::CloseAccountRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_reason(f->reason);
    req.set_method(method);
    return Mutation("account close " + f->id, [req](auto& stub, auto* context, auto* response) {
      return stub.CloseAccount(context, req, response);
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddMeterCommand(CLI::App* parent, const Globals& g, Plan* chosen, bool attach) {
  struct Flags {
    std::string id, meter, reason;
  };
  auto f = std::make_shared<Flags>();
  std::string name = attach ? "attach-meter" : "detach-meter";
  CLI::App* sub = parent->add_subcommand(
      name, attach ? "attach a meter to an account" : "detach a meter from an account");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("meter", f->meter, "meter id")->required();
  sub->add_option("--reason", f->reason, attach ? "why (a replacement, a second circuit)" : "why (faulty, moved)");
  Plan plan = [f, &g, attach, name]() -> Result<Action> {
    pb::MeterRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_meter_id(f->meter);
    req.set_reason(f->reason);
    return Mutation("account " + name + " " + f->id + " " + f->meter,
                    [req, attach](auto& stub, auto* context, auto* response) {
                      return attach ? stub.AttachMeter(context, req, response)
                                    : stub.DetachMeter(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountSetLimits(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, reason;
    MoneyFlag credit_limit, alarm1, alarm2, hoarding_cap;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand("set-limits", "change an account's limits");
  sub->add_option("account", f->id, "account id")->required();
  AddMoney(sub, "--credit-limit", &f->credit_limit, "how far below zero before cut-off");
  AddMoney(sub, "--alarm1", &f->alarm1, "alarm level 1 balance");
  AddMoney(sub, "--alarm2", &f->alarm2, "alarm level 2 balance");
  AddMoney(sub, "--hoarding-cap", &f->hoarding_cap, "highest balance a top-up may reach");
  sub->add_option("--reason", f->reason, "why (credit agreed with the tenant)");
  Plan plan = [f, &g]() -> Result<Action> {
    pb::SetLimitsRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_reason(f->reason);
    bool any = false;
    if (f->credit_limit.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--credit-limit", f->credit_limit.text));
      req.set_credit_limit_minor(v);
      any = true;
    }
    if (f->alarm1.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--alarm1", f->alarm1.text));
      req.set_alarm1_minor(v);
      any = true;
    }
    if (f->alarm2.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--alarm2", f->alarm2.text));
      req.set_alarm2_minor(v);
      any = true;
    }
    if (f->hoarding_cap.given()) {
      WL_ASSIGN_OR_RETURN(int64_t v, ParseMoney("--hoarding-cap", f->hoarding_cap.text));
      req.set_hoarding_cap_minor(v);
      any = true;
    }
    if (!any) {
      return InvalidArgument(
          "nothing to change: give at least one of --credit-limit, --alarm1, --alarm2, "
          "--hoarding-cap");
    }
    return Mutation("account set-limits " + f->id,
                    [req](auto& stub, auto* context, auto* response) {
                      return stub.SetLimits(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountSuspend(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, reason;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand("suspend", "suspend an account");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("--reason", f->reason, "why the account is suspended")->required();
  Plan plan = [f, &g]() -> Result<Action> {
    WL_RETURN_IF_ERROR(NonEmpty("--reason", f->reason));
    pb::SuspendRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_reason(f->reason);
    return Mutation("account suspend " + f->id, [req](auto& stub, auto* context, auto* response) {
      return stub.Suspend(context, req, response);
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountResume(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, reason;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand("resume", "resume a suspended account");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("--reason", f->reason, "why");
  Plan plan = [f, &g]() -> Result<Action> {
    pb::ResumeRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_reason(f->reason);
    return Mutation("account resume " + f->id, [req](auto& stub, auto* context, auto* response) {
      return stub.Resume(context, req, response);
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAccountTransfer(CLI::App* parent, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, name, method = "cash", reason;
    std::vector<std::string> phones;
    bool settle = false;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = parent->add_subcommand(
      "transfer", "transfer ownership: new customer, same meters; balance carried or settled");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("--name", f->name, "new customer name")->required();
  sub->add_option("--phone", f->phones, "new customer's phone; repeat for more");
  sub->add_flag("--settle", f->settle,
                "settle the balance with the old customer instead of carrying it over");
  sub->add_option("--method", f->method, "how a settled balance is paid out")
      ->type_name(kMethods)
      ->capture_default_str();
  sub->add_option("--reason", f->reason, "why (a new lease)");
  Plan plan = [f, &g]() -> Result<Action> {
    WL_RETURN_IF_ERROR(NonEmpty("--name", f->name));
    WL_ASSIGN_OR_RETURN(pb::PaymentMethod method, ParseMethod(f->method));
    pb::TransferRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_new_customer_name(f->name);
    for (const std::string& p : f->phones) req.add_new_phones(p);
    req.set_settle(f->settle);
    req.set_method(method);
    req.set_reason(f->reason);
    return Mutation("account transfer " + f->id,
                    [req](auto& stub, auto* context, auto* response) {
                      return stub.TransferOwnership(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

// ---- money ----

void AddTopUp(CLI::App* root, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, amount, key, method, purchase_count;
    CLI::Option* purchase_count_option = nullptr;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = root->add_subcommand("topup", "top up an account (售电)");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("amount", f->amount, "yuan, up to 4 decimals")->required()->type_name("YUAN");
  sub->add_option("--key", f->key, "idempotency key: the same key again returns the first result")
      ->required();
  sub->add_option("--method", f->method, "payment method")->required()->type_name(kMethods);
  f->purchase_count_option =
      sub->add_option("--purchase-count", f->purchase_count,
                      "the purchase number this top-up should get (the account's "
                      "purchase_count + 1); a mismatch is rejected like a meter's CE-05")
          ->type_name("N");
  Plan plan = [f, &g]() -> Result<Action> {
    WL_ASSIGN_OR_RETURN(int64_t amount, ParsePositiveMoney("amount", f->amount));
    WL_ASSIGN_OR_RETURN(pb::PaymentMethod method, ParseMethod(f->method));
    WL_RETURN_IF_ERROR(NonEmpty("--key", f->key));
    pb::TopUpRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_idempotency_key(f->key);
    req.set_amount_minor(amount);
    req.set_method(method);
    if (f->purchase_count_option->count() > 0) {
      // The ledger numbers an account's purchases from 1, so 0 could never match.
      WL_ASSIGN_OR_RETURN(int64_t count,
                          ParseWholeNumber("--purchase-count", f->purchase_count, 1, INT64_MAX,
                                           "the account's purchase_count + 1"));
      req.set_expected_purchase_count(count);
    }
    return Mutation("topup " + f->id + " " + f->amount,
                    [req](auto& stub, auto* context, auto* response) {
                      return stub.TopUp(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddRefund(CLI::App* root, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, amount, key, method = "cash", reason;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = root->add_subcommand("refund", "refund part of the balance (退电)");
  sub->add_option("account", f->id, "account id")->required();
  sub->add_option("amount", f->amount, "yuan, up to 4 decimals")->required()->type_name("YUAN");
  sub->add_option("--key", f->key, "idempotency key: the same key again returns the first result")
      ->required();
  sub->add_option("--method", f->method, "how the money is paid out")
      ->type_name(kMethods)
      ->capture_default_str();
  sub->add_option("--reason", f->reason, "why");
  Plan plan = [f, &g]() -> Result<Action> {
    WL_ASSIGN_OR_RETURN(int64_t amount, ParsePositiveMoney("amount", f->amount));
    WL_ASSIGN_OR_RETURN(pb::PaymentMethod method, ParseMethod(f->method));
    WL_RETURN_IF_ERROR(NonEmpty("--key", f->key));
    pb::RefundRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_idempotency_key(f->key);
    req.set_amount_minor(amount);
    req.set_method(method);
    req.set_reason(f->reason);
    return Mutation("refund " + f->id + " " + f->amount,
                    [req](auto& stub, auto* context, auto* response) {
                      return stub.Refund(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddReverse(CLI::App* root, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string txn, reason, key;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub =
      root->add_subcommand("reverse", "reverse a top-up, refund or adjustment (冲正), at most once");
  sub->add_option("txn", f->txn, "transaction id to reverse")->required();
  sub->add_option("--reason", f->reason, "why")->required();
  sub->add_option("--key", f->key, "idempotency key");
  Plan plan = [f, &g]() -> Result<Action> {
    WL_RETURN_IF_ERROR(NonEmpty("--reason", f->reason));
    pb::ReverseRequest req;
    req.set_operator_id(g.operator_id);
    req.set_original_txn_id(f->txn);
    req.set_reason(f->reason);
    req.set_idempotency_key(f->key);
    return Mutation("reverse " + f->txn, [req](auto& stub, auto* context, auto* response) {
      return stub.Reverse(context, req, response);
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAdjust(CLI::App* root, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, amount, reason, key;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = root->add_subcommand(
      "adjust", "credit (positive) or debit (negative) an account by agreement (调整)");
  sub->add_option("account", f->id, "account id")->required();
  // A single-value option takes the next argument whatever it looks like, so "-12.50" is read
  // as the amount, not as a flag.
  sub->add_option("--amount", f->amount, "yuan, up to 4 decimals; negative debits")
      ->required()
      ->type_name("YUAN");
  sub->add_option("--reason", f->reason, "why (mandatory)")->required();
  sub->add_option("--key", f->key, "idempotency key: the same key again returns the first result")
      ->required();
  Plan plan = [f, &g]() -> Result<Action> {
    WL_ASSIGN_OR_RETURN(int64_t amount, ParseMoney("--amount", f->amount));
    if (amount == 0) return InvalidArgument("--amount: an adjustment of 0 changes nothing");
    WL_RETURN_IF_ERROR(NonEmpty("--reason", f->reason));
    WL_RETURN_IF_ERROR(NonEmpty("--key", f->key));
    pb::AdjustRequest req;
    req.set_operator_id(g.operator_id);
    req.set_account_id(f->id);
    req.set_idempotency_key(f->key);
    req.set_amount_minor(amount);
    req.set_reason(f->reason);
    return Mutation("adjust " + f->id + " " + f->amount,
                    [req](auto& stub, auto* context, auto* response) {
                      return stub.Adjust(context, req, response);
                    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

// ---- queries ----

std::string EntryDetail(const pb::StatementEntry& e) {
  std::vector<std::string> parts;
  auto add = [&](const std::string& label, const std::string& value) {
    if (!value.empty()) parts.push_back(label + value);
  };
  add("", e.reason());
  add("method=", e.method());
  add("key=", e.idempotency_key());
  add("of=", e.original_txn_id());
  if (e.kind() == pb::TXN_KIND_TOP_UP) add("purchase#", std::to_string(e.purchase_count()));
  add("charge=", e.charge_id());
  add("meter=", e.meter_id());
  add("reading=", e.reading_id());
  if (!e.tariff_id().empty()) {
    add("tariff=", e.tariff_id() + "@" + std::to_string(e.tariff_version()));
  }
  if (e.energy_wh() != 0) add("", std::to_string(e.energy_wh()) + "Wh");
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : " ") + p;
  return out;
}

void AddStatement(CLI::App* root, const Globals& g, Plan* chosen) {
  struct Flags {
    std::string id, from, to;
    CLI::Option* from_option = nullptr;
    CLI::Option* to_option = nullptr;
  };
  auto f = std::make_shared<Flags>();
  CLI::App* sub = root->add_subcommand(
      "statement", "entries over a period with a running balance and each entry's cause");
  sub->add_option("account", f->id, "account id")->required();
  f->from_option =
      sub->add_option("--from", f->from, "start, inclusive: YYYY-MM-DD (UTC) or RFC 3339");
  f->to_option = sub->add_option("--to", f->to, "end, exclusive: YYYY-MM-DD (UTC) or RFC 3339");
  Plan plan = [f]() -> Result<Action> {
    pb::GetStatementRequest req;
    req.set_account_id(f->id);
    // Whether a flag was given, not whether its text is empty: `--to ""` is a mistake to report,
    // not a request for everything.
    const bool from_given = f->from_option->count() > 0;
    const bool to_given = f->to_option->count() > 0;
    if (from_given) {
      Result<int64_t> from = ParseTimeUs(f->from);
      if (!from.ok()) return InvalidArgument("--from: " + from.status().message());
      req.set_from_us(*from);
    }
    if (to_given) {
      Result<int64_t> to = ParseTimeUs(f->to);
      if (!to.ok()) return InvalidArgument("--to: " + to.status().message());
      req.set_to_us(*to);
      // On the wire a to_us of 0 means "up to now", so a --to at the epoch must never be sent:
      // it would ask for the empty period before 1970 and get the whole history. Every start is
      // at or after the epoch, so the check that --to is after the start refuses it.
      if (req.to_us() <= req.from_us()) {
        if (from_given) {
          return InvalidArgument("--from " + f->from + " is not before --to " + f->to +
                                 " (--to is exclusive, so the period would be empty)");
        }
        return InvalidArgument("--to " + f->to +
                               " is not after 1970-01-01, where a statement without --from "
                               "starts (--to is exclusive, so the period would be empty); leave "
                               "out --to for everything up to now");
      }
    }
    return Action([req](Client& client) {
      pb::GetStatementResponse response;
      bool ok = client.Call("statement " + req.account_id(), [&](grpc::ClientContext* c) {
        return client.Ledger().GetStatement(c, req, &response);
      });
      if (!ok) return kExitFailed;
      if (client.json()) {
        PrintJson(StatementJson(response), client.out());
        return kExitOk;
      }
      client.out() << "account " << response.account_id() << "  opening "
                   << FormatYuan(response.opening_balance_minor()) << "  closing "
                   << FormatYuan(response.closing_balance_minor()) << "\n";
      Table table({"TIME", "KIND", "AMOUNT", "BALANCE", "TXN", "OPERATOR", "DETAIL"},
                  {false, false, true, true, false, false, false});
      for (const pb::StatementEntry& e : response.entries()) {
        table.AddRow({FormatTimeUs(e.time_us()), KindWord(e.kind()),
                      FormatYuan(e.amount_minor()), FormatYuan(e.balance_after_minor()),
                      e.txn_id(), e.operator_id(), EntryDetail(e)});
      }
      table.Print(client.out());
      if (response.unlisted_entries() > 0) {
        client.out() << "between these, " << response.unlisted_entries()
                     << " entries of other periods (late charges) of "
                     << FormatYuan(response.unlisted_minor())
                     << ": opening + amounts listed + these = closing\n";
      }
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddTxnShow(CLI::App* parent, Plan* chosen) {
  auto id = std::make_shared<std::string>();
  CLI::App* sub = parent->add_subcommand("show", "show a transaction and its posting");
  sub->add_option("txn", *id, "transaction id")->required();
  Plan plan = [id]() -> Result<Action> {
    pb::GetTransactionRequest req;
    req.set_txn_id(*id);
    return Action([req](Client& client) {
      pb::Transaction txn;
      bool ok = client.Call("txn show " + req.txn_id(), [&](grpc::ClientContext* c) {
        return client.Ledger().GetTransaction(c, req, &txn);
      });
      if (!ok) return kExitFailed;
      Json json = TransactionJson(txn);
      if (client.json()) {
        PrintJson(json, client.out());
        return kExitOk;
      }
      PrintKeyValues(json, client.out());
      client.out() << "\n";
      Table table({"ACCOUNT", "SYSTEM", "DELTA"}, {false, false, true});
      for (const pb::Leg& leg : txn.posting().legs()) {
        table.AddRow({leg.account(), leg.system() ? "yes" : "no", FormatYuan(leg.delta_minor())});
      }
      table.Print(client.out());
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddTotals(CLI::App* root, Plan* chosen) {
  CLI::App* sub = root->add_subcommand(
      "totals", "sums of tenant and system balances; the grand total is always 0");
  Plan plan = []() -> Result<Action> {
    return Action([](Client& client) {
      pb::LedgerTotalsResponse totals;
      bool ok = client.Call("totals", [&](grpc::ClientContext* c) {
        return client.Ledger().GetTotals(c, pb::LedgerTotalsRequest(), &totals);
      });
      if (!ok) return kExitFailed;
      Json json = TotalsJson(totals);
      if (client.json()) {
        PrintJson(json, client.out());
      } else {
        // System account names become "system <name>" rows so they cannot clash with the
        // tenant rows.
        Json rows;
        rows["accounts"] = json["accounts"];
        rows["tenant_total"] = json["tenant_total"];
        for (const auto& [name, value] : json["system"].items()) rows["system " + name] = value;
        rows["total"] = json["total"];
        PrintKeyValues(rows, client.out());
      }
      // The ledger asserts this itself; a non-zero total here means money was created or lost.
      if (totals.total_minor() != 0) {
        client.Fail({"totals", Failure::kCheckFailed,
                     "the grand total is " + FormatYuan(totals.total_minor()) +
                         ", not 0: the books do not balance",
                     {}, /*code_in_text=*/false});
        return kExitFailed;
      }
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddAuditVerify(CLI::App* parent, Plan* chosen) {
  CLI::App* sub =
      parent->add_subcommand("verify", "check the event log: gap-free sequences, hash chain");
  Plan plan = []() -> Result<Action> {
    return Action([](Client& client) {
      adminpb::VerifyLogResponse response;
      bool ok = client.Call("audit verify", [&](grpc::ClientContext* c) {
        return client.Admin().VerifyLog(c, adminpb::VerifyLogRequest(), &response);
      });
      if (!ok) return kExitFailed;
      if (client.json()) {
        PrintJson(VerifyLogJson(response), client.out());
      } else {
        PrintKeyValues(VerifyLogJson(response), client.out());
      }
      if (!response.ok()) {
        client.Fail({"audit verify", Failure::kCheckFailed,
                     "log " + response.log() + " failed verification: " + response.problem(),
                     {}, /*code_in_text=*/false});
        return kExitFailed;
      }
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

void AddStatus(CLI::App* root, Plan* chosen) {
  CLI::App* sub = root->add_subcommand("status", "server version, bus and event log heads");
  Plan plan = []() -> Result<Action> {
    return Action([](Client& client) {
      adminpb::GetStatusResponse response;
      bool ok = client.Call("status", [&](grpc::ClientContext* c) {
        return client.Admin().GetStatus(c, adminpb::GetStatusRequest(), &response);
      });
      if (!ok) return kExitFailed;
      if (client.json()) {
        PrintJson(StatusJson(response), client.out());
        return kExitOk;
      }
      client.out() << "version  " << response.version() << "\nbus      " << response.bus()
                   << "\n\n";
      Table table({"SERVICE", "LOG", "PARTITIONS", "EVENTS"}, {false, false, true, true});
      for (const adminpb::ServiceStatus& s : response.services()) {
        table.AddRow(
            {s.name(), s.log(), std::to_string(s.partitions()), std::to_string(s.events())});
      }
      table.Print(client.out());
      return kExitOk;
    });
  };
  sub->callback([chosen, plan] { *chosen = plan; });
}

// The deepest subcommand chosen so far: `account` in `wlctl account frobnicate`.
const CLI::App* DeepestCommand(const CLI::App& app) {
  const CLI::App* current = &app;
  for (int depth = 0; depth < 4; ++depth) {
    std::vector<CLI::App*> subs = current->get_subcommands();
    if (subs.empty()) break;
    current = subs.front();
  }
  return current;
}

// "wlctl account open" for the deepest subcommand chosen so far.
std::string CommandPath(const CLI::App& app) {
  std::string path = app.get_name();
  const CLI::App* current = &app;
  for (int depth = 0; depth < 4; ++depth) {
    std::vector<CLI::App*> subs = current->get_subcommands();
    if (subs.empty()) break;
    current = subs.front();
    path += " " + current->get_name();
  }
  return path;
}

// Whether the arguments ask for -o json, read before (or without) CLI11: "-o json", "-ojson",
// "--output json", "--output=json".
bool AsksForJson(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-ojson" || arg == "--output=json") return true;
    if ((arg == "-o" || arg == "--output") && i + 1 < argc && std::string_view(argv[i + 1]) == "json") {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string DefaultOperator() {
  for (const char* name : {"USER", "LOGNAME"}) {
    const char* value = std::getenv(name);
    if (value != nullptr && *value != '\0') return value;
  }
  const passwd* entry = getpwuid(getuid());
  return entry != nullptr && entry->pw_name != nullptr ? entry->pw_name : "";
}

namespace {

int RunChecked(int argc, char** argv, std::ostream& out, std::ostream& err,
               const ChannelFactory& connect, const std::function<std::string()>& default_operator) {
  Globals g;
  g.operator_id = default_operator();
  Plan chosen;

  CLI::App app{"wlctl: operator command line for the wattledger ledger", "wlctl"};
  app.require_subcommand(1);
  // Global flags are accepted after the subcommand too: `wlctl account show A1 -o json`.
  app.fallthrough();
  app.add_option("--endpoint", g.endpoint, "server address host:port")
      ->envname("WLCTL_ENDPOINT")
      ->capture_default_str();
  app.add_option("-o,--output", g.output, "output format")
      ->check(CLI::IsMember({"json", "table"}))
      ->capture_default_str();
  CLI::Option* operator_option = app.add_option("--operator", g.operator_id, "operator id recorded on every change")
      ->envname("WLCTL_OPERATOR")
      ->capture_default_str();
  app.add_option("--timeout", g.timeout_text, "seconds to wait for the server, at most a day")
      ->type_name("SECONDS")
      ->capture_default_str();

  CLI::App* account = app.add_subcommand("account", "open, inspect and change accounts");
  account->require_subcommand(1);
  AddAccountOpen(account, g, &chosen);
  AddAccountShow(account, g, &chosen);
  AddAccountList(account, g, &chosen);
  AddAccountClose(account, g, &chosen);
  AddMeterCommand(account, g, &chosen, /*attach=*/true);
  AddMeterCommand(account, g, &chosen, /*attach=*/false);
  AddAccountSetLimits(account, g, &chosen);
  AddAccountSuspend(account, g, &chosen);
  AddAccountResume(account, g, &chosen);
  AddAccountTransfer(account, g, &chosen);
  AddTopUp(&app, g, &chosen);
  AddRefund(&app, g, &chosen);
  AddReverse(&app, g, &chosen);
  AddAdjust(&app, g, &chosen);
  AddStatement(&app, g, &chosen);
  CLI::App* txn = app.add_subcommand("txn", "transactions");
  txn->require_subcommand(1);
  AddTxnShow(txn, &chosen);
  AddTotals(&app, &chosen);
  CLI::App* audit = app.add_subcommand("audit", "audit the event log");
  audit->require_subcommand(1);
  AddAuditVerify(audit, &chosen);
  AddStatus(&app, &chosen);

  // Until the flags are parsed, -o json is looked for by hand, so that a usage error comes out
  // as JSON too when the script asked for it.
  bool json = AsksForJson(argc, argv);
  auto usage = [&](std::string what, std::string message, std::vector<std::string> notes = {}) {
    PrintFailure({std::move(what), Failure::kUsage, std::move(message), std::move(notes),
                  /*code_in_text=*/false},
                 json, err);
    return kExitUsage;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      app.exit(e, out, err);  // --help: the help of the chosen subcommand, on out.
      return kExitOk;
    }
    std::string command = CommandPath(app);
    std::vector<std::string> notes;
    std::vector<std::string> extra = app.remaining(/*recurse=*/true);
    if (!extra.empty() && dynamic_cast<const CLI::ExtrasError*>(&e) == nullptr) {
      notes.push_back("wlctl: not understood: " + CLI::detail::join(extra, " "));
    }
    if (const CLI::App* deepest = DeepestCommand(app); deepest->get_require_subcommand_min() > 0 &&
                                                      deepest->get_subcommands().empty()) {
      std::vector<std::string> names;
      for (const CLI::App* sub : deepest->get_subcommands({})) names.push_back(sub->get_name());
      notes.push_back("commands: " + CLI::detail::join(names, ", "));
    }
    notes.push_back("run `" + command + " --help` for usage");
    return usage("", e.what(), std::move(notes));
  }
  json = g.output == "json";
  if (!chosen) return usage("", "no command given", {"run `" + CommandPath(app) + " --help` for usage"});
  std::string command = CommandPath(app).substr(6);  // Without "wlctl ".
  if (Status values = CheckValues(app); !values.ok()) return usage(command, values.message());
  if (Result<double> timeout = ParseTimeout(g.timeout_text); timeout.ok()) {
    g.timeout_s = *timeout;
  } else {
    return usage("", timeout.status().message());
  }
  if (g.operator_id.empty()) {
    if (operator_option->count() > 0) {
      return usage("", "--operator must not be empty: every change records who made it");
    }
    // Unknown: queries need none; a change says so (Mutation) rather than record a made-up name.
  }
  Result<Action> action = chosen();
  if (!action.ok()) return usage(command, action.status().message());
  Client client(g, out, err, connect);
  return (*action)(client);
}

}  // namespace

std::shared_ptr<grpc::ChannelInterface> DefaultChannel(const std::string& endpoint) {
  return grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
}

int Run(int argc, char** argv, std::ostream& out, std::ostream& err) {
  return Run(argc, argv, out, err, DefaultChannel);
}

int Run(int argc, char** argv, std::ostream& out, std::ostream& err,
        const ChannelFactory& connect, const std::function<std::string()>& default_operator) {
  // Our code does not throw; CLI11, nlohmann::json and the standard library may.
  try {
    return RunChecked(argc, argv, out, err, connect, default_operator);
  } catch (const std::exception& e) {
    PrintFailure({"", Failure::kInternal, std::string("internal error: ") + e.what(), {},
                  /*code_in_text=*/false},
                 AsksForJson(argc, argv), err);
    return kExitFailed;
  }
}

}  // namespace wattledger::wlctl
