#include "cmd/wlctl/wlctl.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cmd/wlctl/format.h"
#include "wattledger/admin/v1/admin.grpc.pb.h"
#include "wattledger/ledger/v1/ledger.grpc.pb.h"

namespace wattledger::wlctl {
namespace {

namespace pb = ::wattledger::ledger::v1;
namespace adminpb = ::wattledger::admin::v1;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
  std::vector<std::string> endpoints;  // Every channel wlctl opened.
};

// An endpoint nothing listens on (port 1 needs root to bind).
constexpr char kDeadEndpoint[] = "127.0.0.1:1";

// Runs wlctl with args; channels go through a factory that records the endpoint, so a test can
// tell whether any RPC was attempted. Unless `connect_as_asked`, every channel goes to
// kDeadEndpoint, so that a test can never reach a developer's server on the default endpoint.
Outcome RunWlctl(std::vector<std::string> args, bool connect_as_asked = false) {
  args.insert(args.begin(), "wlctl");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  Outcome o;
  std::ostringstream out, err;
  ChannelFactory connect = [&o, connect_as_asked](const std::string& endpoint) {
    o.endpoints.push_back(endpoint);
    return DefaultChannel(connect_as_asked ? endpoint : kDeadEndpoint);
  };
  o.code = Run(static_cast<int>(args.size()), argv.data(), out, err, connect);
  o.out = out.str();
  o.err = err.str();
  return o;
}

pb::Account SampleAccount() {
  pb::Account a;
  a.set_account_id("A1");
  a.set_customer_name("张三");
  a.add_phones("13800000000");
  a.add_phones("13900000000");
  a.set_room("3-101");
  a.add_meters("M1");
  a.add_meters("M2");
  a.set_tariff_id("T1");
  a.set_mode(pb::MODE_PREPAID);
  a.set_state(pb::ACCOUNT_STATE_OPEN);
  a.mutable_limits()->set_credit_limit_minor(100'000);
  a.mutable_limits()->set_alarm1_minor(200'000);
  a.mutable_limits()->set_alarm2_minor(100'001);
  a.mutable_limits()->set_hoarding_cap_minor(50'000'000);
  a.set_balance_minor(123'456);
  a.set_purchase_count(3);
  a.set_level(pb::LEVEL_ALARM1);
  a.set_supply_cut(false);
  a.set_opened_txn_id("T0");
  return a;
}

// ---- usage errors: exit 2, a message saying what is wrong, and no channel opened ----

struct UsageCase {
  std::vector<std::string> args;
  std::string message;
};

// A top-up whose --purchase-count is `text`, refused with `message`.
UsageCase PurchaseCountCase(std::string text, std::string message) {
  return {{"topup", "A1", "1", "--key", "K1", "--method", "cash", "--purchase-count", std::move(text)},
          std::move(message)};
}

void PrintTo(const UsageCase& c, std::ostream* os) {
  *os << "wlctl";
  for (const std::string& a : c.args) *os << " '" << a << "'";
}

class UsageErrorTest : public ::testing::TestWithParam<UsageCase> {};

TEST_P(UsageErrorTest, ExitsTwoWithoutCallingTheServer) {
  Outcome o = RunWlctl(GetParam().args);
  EXPECT_EQ(o.code, kExitUsage);
  EXPECT_THAT(o.err, HasSubstr(GetParam().message));
  EXPECT_THAT(o.err, HasSubstr("wlctl: "));
  EXPECT_THAT(o.out, IsEmpty());
  EXPECT_THAT(o.endpoints, IsEmpty()) << "a usage error must not reach the server";
}

INSTANTIATE_TEST_SUITE_P(
    Validation, UsageErrorTest,
    ::testing::Values(
        UsageCase{{"topup", "A1", "12.34567", "--key", "K1", "--method", "cash"},
                  "it has 5 decimal places"},
        UsageCase{{"topup", "A1", "12.34567", "--key", "K1", "--method", "cash"},
                  "expected a decimal number of yuan"},
        UsageCase{{"topup", "A1", "abc", "--key", "K1", "--method", "cash"},
                  "amount: invalid amount \"abc\""},
        UsageCase{{"topup", "A1", "0", "--key", "K1", "--method", "cash"},
                  "the amount must be positive"},
        UsageCase{{"topup", "A1", "100", "--key", "K1", "--method", "card"},
                  "unknown payment method \"card\"; expected one of cash|wechat|alipay|bank|"
                  "platform"},
        UsageCase{{"topup", "A1", "100", "--method", "cash"}, "--key is required"},
        UsageCase{{"topup", "A1", "100", "--key", "K1"}, "--method is required"},
        UsageCase{{"topup", "A1", "100", "--key", "", "--method", "cash"},
                  "--key must not be empty"},
        UsageCase{{"refund", "A1", "1e3", "--key", "K2"}, "invalid amount \"1e3\""},
        UsageCase{{"refund", "A1", "20"}, "--key is required"},
        UsageCase{{"adjust", "A1", "--amount", "-12.50", "--key", "K3"}, "--reason is required"},
        UsageCase{{"adjust", "A1", "--amount", "-12.50505", "--reason", "x", "--key", "K3"},
                  "--amount: invalid amount \"-12.50505\""},
        UsageCase{{"adjust", "A1", "--amount", "0", "--reason", "x", "--key", "K3"},
                  "an adjustment of 0 changes nothing"},
        UsageCase{{"reverse", "T1"}, "--reason is required"},
        UsageCase{{"account", "open", "--id", "A1", "--name", "张三", "--credit-limit", "ten"},
                  "--credit-limit: invalid amount \"ten\""},
        UsageCase{{"account", "open", "--id", "A1", "--name", "x", "--opening-balance", "5"},
                  "--opening-source"},
        UsageCase{{"account", "open", "--id", "A1", "--name", "x", "--mode", "credit"},
                  "--mode"},
        UsageCase{{"account", "set-limits", "A1"}, "nothing to change"},
        UsageCase{{"account", "set-limits", "A1", "--alarm1", "1.23456"},
                  "--alarm1: invalid amount"},
        UsageCase{{"account", "close", "A1", "--method", "gold"}, "unknown payment method"},
        UsageCase{{"account", "suspend", "A1"}, "--reason is required"},
        UsageCase{{"account", "frobnicate"}, "not understood: frobnicate"},
        UsageCase{{"account", "frobnicate"}, "commands: open, show, list"},
        UsageCase{{"account"}, "subcommand"},
        UsageCase{{}, "subcommand"},
        UsageCase{{"statement", "A1", "--from", "2026-13-01"}, "--from: invalid time"},
        UsageCase{{"statement", "A1", "--to", "yesterday"}, "expected YYYY-MM-DD"},
        UsageCase{{"statement", "A1", "--from", "2026-12-01", "--to", "2026-11-01"},
                  "is not before --to"},
        // A --to at the epoch parses to 0, which the server reads as "up to now".
        UsageCase{{"statement", "A1", "--from", "2026-12-07", "--to", "1970-01-01"},
                  "--from 2026-12-07 is not before --to 1970-01-01"},
        UsageCase{{"statement", "A1", "--from", "1970-01-01", "--to", "1970-01-01"},
                  "--from 1970-01-01 is not before --to 1970-01-01"},
        UsageCase{{"statement", "A1", "--to", "1970-01-01T00:00:00Z"},
                  "--to 1970-01-01T00:00:00Z is not after 1970-01-01"},
        UsageCase{{"statement", "A1", "--to", ""}, "--to must not be empty"},
        UsageCase{{"statement", "A1", "--from", ""}, "--from must not be empty"},
        // An empty id (a script's unset variable) is not sent as a request for "".
        UsageCase{{"account", "show", ""}, "account must not be empty: give the account to act on"},
        UsageCase{{"topup", "", "1", "--key", "K1", "--method", "cash"}, "account must not be empty"},
        UsageCase{{"account", "attach-meter", "A1", ""}, "meter must not be empty"},
        UsageCase{{"txn", "show", ""}, "txn must not be empty"},
        UsageCase{{"reverse", "", "--reason", "typo"}, "txn must not be empty"},
        UsageCase{{"statement", ""}, "account must not be empty"},
        UsageCase{{"account", "open", "--id", "A1", "--name", "x", "--meter", "M1", "--phone", ""},
                  "--phone must not be empty: give it a value or leave it out"},
        UsageCase{{"account", "show", "A1", "--endpoint", ""}, "--endpoint must not be empty"},
        UsageCase{{"account", "list", "--level", "broke"},
                  "--level: unknown value \"broke\"; expected one of normal, alarm1, alarm2, arrears, cutoff"},
        UsageCase{{"account", "list", "--state", "gone"}, "--state: unknown value \"gone\""},
        UsageCase{{"account", "list", "--all", "--page-token", "A1"}, "--all starts at the first account"},
        // Times start at the epoch: else a --to of 1970-01-01 would pass as after --from and go
        // out as 0, "up to now".
        UsageCase{{"statement", "A1", "--from", "1969-12-31", "--to", "1970-01-01"},
                  "--from: invalid time \"1969-12-31\": before 1970-01-01"},
        UsageCase{{"statement", "A1", "--from", "1970-01-01T00:00:00+08:00", "--to", "1970-01-01"},
                  "before 1970-01-01"},
        UsageCase{{"account", "show", "A1", "-o", "yaml"}, "yaml"},
        UsageCase{{"account", "show", "A1", "--timeout", "0"}, "--timeout"},
        UsageCase{{"account", "show", "A1", "--operator", ""}, "--operator must not be empty"},
        UsageCase{{"topup", "A1", "-5.5", "--key", "K1", "--method", "cash"},
                  "the amount must be positive, got -5.5"},
        UsageCase{{"refund", "A1", "-5", "--key", "K1"}, "the amount must be positive"},
        // Text that is not UTF-8 cannot go into a proto3 string field: protobuf would refuse to
        // serialize the request, and the call would fail far from the cause.
        UsageCase{{"account", "open", "--id", "C1", "--name", "\xff\xfe", "--meter", "MC1"},
                  "--name is not valid UTF-8: got \"\\xff\\xfe\""},
        UsageCase{{"account", "open", "--id", "C1", "--name", "x", "--phone", "1", "--phone",
                   "2\xc3"},
                  "--phone is not valid UTF-8"},
        UsageCase{{"adjust", "A1", "--amount", "1", "--reason", "bad\xc3", "--key", "K1"},
                  "--reason is not valid UTF-8"},
        UsageCase{{"topup", "A1", "1", "--key", "k\xff", "--method", "cash"},
                  "--key is not valid UTF-8"},
        UsageCase{{"account", "show", "A\xed\xa0\x80"}, "account is not valid UTF-8"},
        UsageCase{{"statement", "A\xc0\xaf"}, "account is not valid UTF-8"},
        UsageCase{{"txn", "show", "T\x80"}, "txn is not valid UTF-8"},
        UsageCase{{"account", "show", "A1", "--operator", "op\xff"},
                  "--operator is not valid UTF-8"},
        // A purchase count is read like money: exactly as typed, or not at all.
        PurchaseCountCase("99999999999999999999",
                          "--purchase-count must be a whole number from 1 to 9223372036854775807 (the "
                          "account's purchase_count + 1), got '99999999999999999999'"),
        PurchaseCountCase("0x7", "got '0x7'"),
        PurchaseCountCase(" 7", "got ' 7'"),
        PurchaseCountCase("+7", "got '+7'"),
        PurchaseCountCase("7.0", "got '7.0'"),
        PurchaseCountCase("0", "--purchase-count must be a whole number from 1"),
        PurchaseCountCase("-1", "--purchase-count must be a whole number from 1 to 9223372036854775807 "
                                "(the account's purchase_count + 1), got '-1'"),
        PurchaseCountCase("abc", "--purchase-count must be a whole number from 1 to 9223372036854775807 "
                                "(the account's purchase_count + 1), got 'abc'"),
        PurchaseCountCase("", "--purchase-count must not be empty"),
        UsageCase{{"account", "list", "--page-size", "0x10"},
                  "--page-size must be a whole number from 0 to 1000 (accounts per page; 0: the "
                  "server's default of 100), got '0x10'"},
        UsageCase{{"account", "list", "--page-size", " 7"}, "got ' 7'"},
        UsageCase{{"account", "list", "--page-size", "1001"}, "got '1001'"},
        UsageCase{{"account", "list", "--page-size", "-1"}, "got '-1'"},
        UsageCase{{"account", "show", "A1", "--timeout", "0"},
                  "--timeout must be a number of seconds > 0"},
        UsageCase{{"account", "show", "A1", "--timeout", "0"}, "got '0'"},
        UsageCase{{"account", "show", "A1", "--timeout", "-1"}, "got '-1'"},
        UsageCase{{"account", "show", "A1", "--timeout", "abc"},
                  "--timeout must be a number of seconds > 0"},
        UsageCase{{"account", "show", "A1", "--timeout", "abc"}, "got 'abc'"},
        UsageCase{{"account", "show", "A1", "--timeout", "nan"}, "got 'nan'"},
        UsageCase{{"account", "show", "A1", "--timeout", "inf"}, "got 'inf'"},
        UsageCase{{"account", "show", "A1", "--timeout", "5s"}, "got '5s'"},
        UsageCase{{"account", "show", "A1", "--timeout", ""}, "--timeout must not be empty"},
        // Seconds past int64 microseconds once overflowed into a deadline in the past.
        UsageCase{{"account", "show", "A1", "--timeout", "1e13"},
                  "--timeout must be a number of seconds > 0 and at most 86400 (one day), e.g. "
                  "30 or 0.5, got '1e13'"},
        UsageCase{{"account", "show", "A1", "--timeout", "86400.5"}, "got '86400.5'"}));

TEST(WlctlTest, UsageErrorWithJsonIsOneObjectOnStderr) {
  Outcome bad_value = RunWlctl({"topup", "A1", "abc", "--key", "K1", "--method", "cash", "-o", "json"});
  EXPECT_EQ(bad_value.code, kExitUsage);
  EXPECT_THAT(bad_value.out, IsEmpty());
  Json j = Json::parse(bad_value.err);
  EXPECT_EQ(j["error"]["command"], "topup");
  EXPECT_EQ(j["error"]["code"], "USAGE");
  EXPECT_THAT(j["error"]["message"].get<std::string>(), HasSubstr("invalid amount \"abc\""));

  // Refused by the flag parser, before -o is parsed: -o json still counts, in each spelling.
  for (std::vector<std::string> json_flags :
       {std::vector<std::string>{"-o", "json"}, {"-ojson"}, {"--output", "json"}, {"--output=json"}}) {
    std::vector<std::string> args = {"topup", "A1", "--method", "cash"};
    args.insert(args.begin(), json_flags.begin(), json_flags.end());
    Outcome missing = RunWlctl(args);
    EXPECT_EQ(missing.code, kExitUsage);
    Json m = Json::parse(missing.err);
    EXPECT_EQ(m["error"]["code"], "USAGE");
    EXPECT_THAT(m["error"]["message"].get<std::string>(), HasSubstr("amount is required"));
    EXPECT_EQ(m["error"]["hints"].back(), "run `wlctl topup --help` for usage");
    EXPECT_THAT(missing.endpoints, IsEmpty());
  }

  // Without -o json the same error stays text.
  Outcome text = RunWlctl({"topup", "A1", "--method", "cash"});
  EXPECT_THAT(text.err, HasSubstr("wlctl: "));
  EXPECT_THAT(text.err, HasSubstr("run `wlctl topup --help` for usage\n"));
  EXPECT_THROW(Json::parse(text.err), Json::parse_error);
}

TEST(WlctlTest, HelpGoesToOutAndExitsZero) {
  Outcome o = RunWlctl({"topup", "--help"});
  EXPECT_EQ(o.code, kExitOk);
  EXPECT_THAT(o.out, HasSubstr("--purchase-count"));
  EXPECT_THAT(o.endpoints, IsEmpty());
}

// ---- formatting ----

TEST(FormatTest, AccountJsonHasEveryMoneyValueAsAYuanString) {
  Json j = AccountJson(SampleAccount());
  EXPECT_EQ(j["account_id"], "A1");
  EXPECT_EQ(j["customer_name"], "张三");
  EXPECT_EQ(j["phones"], Json::array({"13800000000", "13900000000"}));
  EXPECT_EQ(j["room"], "3-101");
  EXPECT_EQ(j["meters"], Json::array({"M1", "M2"}));
  EXPECT_EQ(j["tariff_id"], "T1");
  EXPECT_EQ(j["mode"], "prepaid");
  EXPECT_EQ(j["state"], "open");
  EXPECT_EQ(j["level"], "alarm1");
  EXPECT_EQ(j["balance"], "12.3456");
  EXPECT_TRUE(j["purchase_count"].is_number_integer());
  EXPECT_EQ(j["purchase_count"], 3);
  EXPECT_EQ(j["supply_cut"], false);
  EXPECT_EQ(j["limits"]["credit_limit"], "10.0000");
  EXPECT_EQ(j["limits"]["alarm1"], "20.0000");
  EXPECT_EQ(j["limits"]["alarm2"], "10.0001");
  EXPECT_EQ(j["limits"]["hoarding_cap"], "5000.0000");
}

TEST(FormatTest, NegativeBalancesAndEnumWords) {
  pb::Account a = SampleAccount();
  a.set_balance_minor(-5'000);
  a.set_level(pb::LEVEL_CUTOFF);
  a.set_state(pb::ACCOUNT_STATE_CLOSED_WITH_ARREARS);
  a.set_mode(pb::MODE_POSTPAID);
  a.set_supply_cut(true);
  Json j = AccountJson(a);
  EXPECT_EQ(j["balance"], "-0.5000");
  EXPECT_EQ(j["level"], "cutoff");
  EXPECT_EQ(j["state"], "closed_with_arrears");
  EXPECT_EQ(j["mode"], "postpaid");
  EXPECT_EQ(j["supply_cut"], true);
  EXPECT_EQ(KindWord(pb::TXN_KIND_TOP_UP), "top_up");
  EXPECT_EQ(LevelWord(static_cast<pb::Level>(42)), "unknown(42)");
}

TEST(FormatTest, MutationStatementAndTotalsUseYuanStrings) {
  pb::MutationResponse m;
  m.set_txn_id("T9");
  m.set_duplicate(true);
  *m.mutable_account() = SampleAccount();
  Json mj = MutationJson(m);
  EXPECT_EQ(mj["txn_id"], "T9");
  EXPECT_EQ(mj["duplicate"], true);
  EXPECT_EQ(mj["account"]["balance"], "12.3456");
  EXPECT_EQ(mj["account"]["customer_name"], SampleAccount().customer_name());

  // A posting's answer: only what it changes, under the same names.
  pb::MutationResponse posting;
  posting.set_txn_id("T10");
  pb::AccountBalance* b = posting.mutable_balance();
  b->set_account_id("A1");
  b->set_balance_minor(-325'000);
  b->set_level(pb::LEVEL_CUTOFF);
  b->set_purchase_count(3);
  b->set_supply_cut(true);
  Json pj = MutationJson(posting);
  EXPECT_EQ(pj["txn_id"], "T10");
  EXPECT_EQ(pj["duplicate"], false);
  EXPECT_EQ(pj["account"],
            Json({{"account_id", "A1"}, {"balance", "-32.5000"}, {"level", "cutoff"}, {"purchase_count", 3},
                  {"supply_cut", true}}));

  pb::GetStatementResponse s;
  s.set_account_id("A1");
  s.set_opening_balance_minor(10'000);
  s.set_closing_balance_minor(1'010'000);
  pb::StatementEntry* e = s.add_entries();
  e->set_txn_id("T1");
  e->set_kind(pb::TXN_KIND_TOP_UP);
  e->set_amount_minor(1'000'000);
  e->set_balance_after_minor(1'010'000);
  e->set_time_us(1'793'491'200'000'000);  // 2026-11-01T00:00:00Z
  Json sj = StatementJson(s);
  EXPECT_EQ(sj["opening_balance"], "1.0000");
  EXPECT_EQ(sj["closing_balance"], "101.0000");
  EXPECT_EQ(sj["entries"][0]["amount"], "100.0000");
  EXPECT_EQ(sj["entries"][0]["balance_after"], "101.0000");
  EXPECT_EQ(sj["entries"][0]["kind"], "top_up");
  EXPECT_EQ(sj["entries"][0]["time"], "2026-11-01T00:00:00Z");

  pb::LedgerTotalsResponse t;
  t.set_tenant_total_minor(1'000'000);
  (*t.mutable_system_minor())["revenue"] = 5;
  (*t.mutable_system_minor())["cash"] = -1'000'005;
  Json tj = TotalsJson(t);
  EXPECT_EQ(tj["tenant_total"], "100.0000");
  EXPECT_EQ(tj["system"]["cash"], "-100.0005");
  EXPECT_EQ(tj["system"]["revenue"], "0.0005");
  EXPECT_EQ(tj["total"], "0.0000");
}

TEST(FormatTest, TransactionShowsWhatItsEntrySays) {
  pb::Transaction top_up;
  top_up.set_txn_id("ledger/0/7");
  top_up.set_kind(pb::TXN_KIND_TOP_UP);
  top_up.set_amount_minor(1'000'000);
  top_up.mutable_entry()->set_method("wechat");
  top_up.mutable_entry()->set_purchase_count(4);
  top_up.mutable_entry()->set_balance_after_minor(1'234'500);
  Json j = TransactionJson(top_up);
  EXPECT_EQ(j["method"], "wechat");
  EXPECT_EQ(j["purchase_count"], 4);
  EXPECT_EQ(j["balance_after"], "123.4500");
  EXPECT_FALSE(j.contains("meter_id"));

  pb::Transaction charge;
  charge.set_kind(pb::TXN_KIND_CHARGE);
  charge.mutable_entry()->set_charge_id("C1");
  charge.mutable_entry()->set_meter_id("M1");
  charge.mutable_entry()->set_reading_id("R9");
  charge.mutable_entry()->set_tariff_id("T1");
  charge.mutable_entry()->set_tariff_version(3);
  charge.mutable_entry()->set_energy_wh(1500);
  j = TransactionJson(charge);
  EXPECT_EQ(j["meter_id"], "M1");
  EXPECT_EQ(j["reading_id"], "R9");
  EXPECT_EQ(j["tariff_version"], 3);
  EXPECT_EQ(j["energy_wh"], 1500);
  EXPECT_FALSE(j.contains("method"));

  // An account operation has no entry, and says nothing of one.
  pb::Transaction open;
  open.set_kind(pb::TXN_KIND_OPEN);
  EXPECT_FALSE(TransactionJson(open).contains("balance_after"));
}

TEST(FormatTest, ParsesDatesAndRfc3339) {
  EXPECT_EQ(*ParseTimeUs("2026-11-01"), 1'793'491'200'000'000);
  EXPECT_EQ(*ParseTimeUs("2026-11-01T00:00:00Z"), 1'793'491'200'000'000);
  EXPECT_EQ(*ParseTimeUs("2026-11-01T08:00:00+08:00"), 1'793'491'200'000'000);
  EXPECT_EQ(*ParseTimeUs("2026-11-01T00:00:01.25Z"), 1'793'491'201'250'000);
  EXPECT_EQ(*ParseTimeUs("1970-01-01T00:00:00.000001Z"), 1);
  for (const char* bad : {"", "2026-11", "2026-02-30", "2026-11-01T00:00", "2026-11-01T00:00:00",
                          "2026-11-01T24:00:00Z", "2026-11-01T00:00:00Zx", "1969-12-31",
                          "2026-11-01T00:00:00.Z", "01/11/2026"}) {
    Result<int64_t> r = ParseTimeUs(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_THAT(r.status().message(), HasSubstr("expected YYYY-MM-DD")) << bad;
  }
  EXPECT_EQ(FormatTimeUs(1'793'491'201'250'000), "2026-11-01T00:00:01.250000Z");
  EXPECT_EQ(*ParseTimeUs(FormatTimeUs(1'793'491'201'250'001)), 1'793'491'201'250'001);
}

TEST(FormatTest, TableAlignsWideCharacters) {
  EXPECT_EQ(DisplayWidth("abc"), 3u);
  EXPECT_EQ(DisplayWidth("张三"), 4u);
  EXPECT_EQ(DisplayWidth("张三a"), 5u);
  Table table({"NAME", "BALANCE"}, {false, true});
  table.AddRow({"张三", "1.0000"});
  table.AddRow({"Li", "100.0000"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME   BALANCE\n"
            "张三    1.0000\n"
            "Li    100.0000\n");
}

// ---- the server is down ----

TEST(WlctlTest, UnavailableServerExitsOneWithAHint) {
  Outcome o = RunWlctl({"--endpoint", kDeadEndpoint, "account", "show", "A1"},
                       /*connect_as_asked=*/true);
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.err, HasSubstr("wlctl: account show A1: UNAVAILABLE"));
  EXPECT_THAT(o.err, HasSubstr("is the server running at 127.0.0.1:1?"));
  EXPECT_THAT(o.err, HasSubstr("make run"));
  EXPECT_EQ(o.endpoints, std::vector<std::string>{"127.0.0.1:1"});
}

TEST(WlctlTest, UnavailableWithJsonKeepsStdoutEmpty) {
  Outcome o = RunWlctl(
      {"topup", "A1", "100", "--key", "K1", "--method", "cash", "-o", "json", "--endpoint",
       kDeadEndpoint},
      /*connect_as_asked=*/true);
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.out, IsEmpty());
  // A script asked for JSON, so the error is JSON too: one object on stderr.
  Json j = Json::parse(o.err);
  EXPECT_EQ(j["error"]["command"], "topup A1 100");
  EXPECT_EQ(j["error"]["code"], "UNAVAILABLE");
  EXPECT_FALSE(j["error"].contains("rule"));
  ASSERT_EQ(j["error"]["hints"].size(), 1u);
  EXPECT_THAT(j["error"]["hints"][0].get<std::string>(),
              HasSubstr("is the server running at 127.0.0.1:1?"));
}

// ---- against an in-process fake server: requests as sent, answers as printed ----

class FakeLedger final : public pb::LedgerService::Service {
 public:
  grpc::Status OpenAccount(grpc::ServerContext*, const pb::OpenAccountRequest* req,
                           pb::MutationResponse* resp) override {
    return Record(&open, *req, resp);
  }
  grpc::Status TopUp(grpc::ServerContext*, const pb::TopUpRequest* req,
                     pb::MutationResponse* resp) override {
    std::lock_guard lock(mu_);
    topup = *req;
    if (req->account_id() == "BUSY") {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "idempotency_key_in_flight: idempotency key K1 is in use by a request on an "
                          "account of another partition that is not recorded yet (ledger/0/5); retry");
    }
    if (req->account_id() == "FULL") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "hoarding_cap: balance 4950.0000 + 100.0000 exceeds the cap 5000.0000");
    }
    return Answer(resp);
  }
  grpc::Status Adjust(grpc::ServerContext*, const pb::AdjustRequest* req,
                      pb::MutationResponse* resp) override {
    return Record(&adjust, *req, resp);
  }
  grpc::Status SetLimits(grpc::ServerContext*, const pb::SetLimitsRequest* req,
                         pb::MutationResponse* resp) override {
    return Record(&limits, *req, resp);
  }
  grpc::Status AttachMeter(grpc::ServerContext*, const pb::MeterRequest* req,
                           pb::MutationResponse* resp) override {
    return Record(&meter, *req, resp);
  }
  grpc::Status Resume(grpc::ServerContext*, const pb::ResumeRequest* req,
                      pb::MutationResponse* resp) override {
    return Record(&resume, *req, resp);
  }
  grpc::Status TransferOwnership(grpc::ServerContext*, const pb::TransferRequest* req,
                                 pb::MutationResponse* resp) override {
    return Record(&transfer, *req, resp);
  }
  grpc::Status ListAccounts(grpc::ServerContext*, const pb::ListAccountsRequest* req,
                            pb::ListAccountsResponse* resp) override {
    std::lock_guard lock(mu_);
    list = *req;
    list_calls++;
    *resp->add_accounts() = SampleAccount();
    // Two pages when the levels are asked for: A1, then A2 after it.
    if (req->levels_size() > 0 && req->page_token().empty()) resp->set_next_page_token("A1");
    if (req->page_token() == "A1") resp->mutable_accounts(0)->set_account_id("A2");
    return grpc::Status::OK;
  }
  grpc::Status GetAccount(grpc::ServerContext*, const pb::GetAccountRequest* req,
                          pb::Account* resp) override {
    if (req->account_id() != "A1") {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "account " + req->account_id());
    }
    *resp = SampleAccount();
    return grpc::Status::OK;
  }
  grpc::Status GetStatement(grpc::ServerContext*, const pb::GetStatementRequest* req,
                            pb::GetStatementResponse* resp) override {
    std::lock_guard lock(mu_);
    statement = *req;
    resp->set_account_id(req->account_id());
    resp->set_closing_balance_minor(123'456);
    pb::StatementEntry* e = resp->add_entries();
    e->set_txn_id("T1");
    e->set_kind(pb::TXN_KIND_TOP_UP);
    e->set_amount_minor(123'456);
    e->set_balance_after_minor(123'456);
    e->set_time_us(1'793'491'200'000'000);
    if (req->account_id() == "LATE") {
      resp->set_unlisted_entries(2);
      resp->set_unlisted_minor(-35'000);
    }
    return grpc::Status::OK;
  }

  std::mutex mu_;
  pb::OpenAccountRequest open;
  pb::TopUpRequest topup;
  pb::AdjustRequest adjust;
  pb::SetLimitsRequest limits;
  pb::MeterRequest meter;
  pb::ResumeRequest resume;
  pb::TransferRequest transfer;
  pb::ListAccountsRequest list;
  int list_calls = 0;
  pb::GetStatementRequest statement;

 private:
  // Keeps the request where the test reads it, and answers as every mutation here does.
  template <typename Request>
  grpc::Status Record(Request* into, const Request& req, pb::MutationResponse* resp) {
    std::lock_guard lock(mu_);
    *into = req;
    return Answer(resp);
  }
  static grpc::Status Answer(pb::MutationResponse* resp) {
    resp->set_txn_id("T42");
    *resp->mutable_account() = SampleAccount();
    return grpc::Status::OK;
  }
};

class FakeAdmin final : public adminpb::Admin::Service {
 public:
  grpc::Status VerifyLog(grpc::ServerContext*, const adminpb::VerifyLogRequest*,
                         adminpb::VerifyLogResponse* resp) override {
    resp->set_ok(false);
    resp->set_log("ledger");
    resp->set_events_checked(7);
    resp->set_problem("partition 0: hash chain broken at seq 5");
    return grpc::Status::OK;
  }
};

class FakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&ledger_);
    builder.RegisterService(&admin_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    endpoint_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  Outcome Wlctl(std::vector<std::string> args) {
    args.insert(args.end(), {"--endpoint", endpoint_, "--operator", "op7"});
    return RunWlctl(std::move(args), /*connect_as_asked=*/true);
  }

  FakeLedger ledger_;
  FakeAdmin admin_;
  std::unique_ptr<grpc::Server> server_;
  std::string endpoint_;
};

TEST_F(FakeServerTest, TopUpSendsMinorUnitsAndPrintsJson) {
  Outcome o = Wlctl({"topup", "A1", "100.5", "--key", "K1", "--method", "wechat",
                     "--purchase-count", "3", "-o", "json"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.topup.account_id(), "A1");
  EXPECT_EQ(ledger_.topup.amount_minor(), 1'005'000);
  EXPECT_EQ(ledger_.topup.method(), pb::PAYMENT_METHOD_WECHAT);
  EXPECT_EQ(ledger_.topup.idempotency_key(), "K1");
  EXPECT_EQ(ledger_.topup.operator_id(), "op7");
  ASSERT_TRUE(ledger_.topup.has_expected_purchase_count());
  EXPECT_EQ(ledger_.topup.expected_purchase_count(), 3);
  Json j = Json::parse(o.out);
  EXPECT_EQ(j["txn_id"], "T42");
  EXPECT_EQ(j["duplicate"], false);
  EXPECT_EQ(j["account"]["balance"], "12.3456");
  EXPECT_EQ(j["account"]["purchase_count"], 3);
}

TEST_F(FakeServerTest, TopUpSendsTheLargestPurchaseCountAsTyped) {
  Outcome o = Wlctl({"topup", "A1", "1", "--key", "K1", "--method", "cash", "--purchase-count",
                     "9223372036854775807"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.topup.expected_purchase_count(), INT64_MAX);
}

TEST_F(FakeServerTest, TopUpWithoutPurchaseCountLeavesItUnset) {
  Outcome o = Wlctl({"topup", "A1", "1", "--key", "K1", "--method", "cash"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_FALSE(ledger_.topup.has_expected_purchase_count());
  EXPECT_THAT(o.out, HasSubstr("txn_id"));
  EXPECT_THAT(o.out, HasSubstr("12.3456"));
}

TEST_F(FakeServerTest, NegativeAdjustmentIsAnAmountNotAFlag) {
  Outcome o = Wlctl({"adjust", "A1", "--amount", "-12.50", "--reason", "meter misread", "--key",
                     "K3"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.adjust.amount_minor(), -125'000);
  EXPECT_EQ(ledger_.adjust.reason(), "meter misread");
  EXPECT_EQ(ledger_.adjust.operator_id(), "op7");
}

TEST_F(FakeServerTest, OpenAccountSendsOnlyTheLimitsGiven) {
  Outcome o = Wlctl({"account", "open", "--id", "A1", "--name", "张三", "--phone", "13800000000",
                     "--phone", "13900000000", "--meter", "M1", "--meter", "M2", "--credit-limit",
                     "10", "--alarm1", "20", "--hoarding-cap", "5000", "--opening-balance", "12.5",
                     "--opening-source", "OLDMETER"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  const pb::OpenAccountRequest& r = ledger_.open;
  EXPECT_EQ(r.customer_name(), "张三");
  EXPECT_EQ(r.phones_size(), 2);
  EXPECT_EQ(r.meters_size(), 2);
  EXPECT_EQ(r.mode(), pb::MODE_PREPAID);
  EXPECT_EQ(r.credit_limit_minor(), 100'000);
  EXPECT_EQ(r.alarm1_minor(), 200'000);
  EXPECT_FALSE(r.has_alarm2_minor());
  EXPECT_EQ(r.hoarding_cap_minor(), 50'000'000);
  EXPECT_EQ(r.opening_balance_minor(), 125'000);
  EXPECT_EQ(r.opening_balance_source(), "OLDMETER");
  EXPECT_EQ(r.operator_id(), "op7");
}

TEST_F(FakeServerTest, SetLimitsAcceptsNegativeValues) {
  Outcome o = Wlctl({"account", "set-limits", "A1", "--alarm2", "-1", "--credit-limit", "0"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.limits.alarm2_minor(), -10'000);
  EXPECT_TRUE(ledger_.limits.has_credit_limit_minor());
  EXPECT_FALSE(ledger_.limits.has_alarm1_minor());
}

TEST_F(FakeServerTest, AccountOperationsSendTheirReason) {
  ASSERT_EQ(Wlctl({"account", "set-limits", "A1", "--credit-limit", "30", "--reason", "hardship"}).code, kExitOk);
  ASSERT_EQ(Wlctl({"account", "attach-meter", "A1", "M9", "--reason", "second circuit"}).code, kExitOk);
  ASSERT_EQ(Wlctl({"account", "resume", "A1", "--reason", "inspected"}).code, kExitOk);
  ASSERT_EQ(Wlctl({"account", "transfer", "A1", "--name", "李四", "--settle", "--reason", "new lease"}).code, kExitOk);
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.limits.reason(), "hardship");
  EXPECT_EQ(ledger_.meter.reason(), "second circuit");
  EXPECT_EQ(ledger_.resume.reason(), "inspected");
  EXPECT_EQ(ledger_.transfer.reason(), "new lease");
  EXPECT_TRUE(ledger_.transfer.settle());
}

TEST_F(FakeServerTest, ListFiltersByLevelAndStateAndPagesOnWithAll) {
  Outcome one = Wlctl({"account", "list", "--level", "cutoff", "--level", "arrears", "--state", "suspended"});
  ASSERT_EQ(one.code, kExitOk) << one.err;
  {
    std::lock_guard lock(ledger_.mu_);
    ASSERT_EQ(ledger_.list.levels_size(), 2);
    EXPECT_EQ(ledger_.list.levels(0), pb::LEVEL_CUTOFF);
    EXPECT_EQ(ledger_.list.levels(1), pb::LEVEL_ARREARS);
    ASSERT_EQ(ledger_.list.states_size(), 1);
    EXPECT_EQ(ledger_.list.states(0), pb::ACCOUNT_STATE_SUSPENDED);
    EXPECT_EQ(ledger_.list_calls, 1);
  }
  EXPECT_THAT(one.out, HasSubstr("more: wlctl account list --page-token A1"));

  Outcome all = Wlctl({"account", "list", "--level", "cutoff", "--all", "-o", "json"});
  ASSERT_EQ(all.code, kExitOk) << all.err;
  Json j = Json::parse(all.out);
  ASSERT_EQ(j["accounts"].size(), 2u);
  EXPECT_EQ(j["accounts"][0]["account_id"], "A1");
  EXPECT_EQ(j["accounts"][1]["account_id"], "A2");
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.list_calls, 3);
  EXPECT_EQ(ledger_.list.levels(0), pb::LEVEL_CUTOFF) << "the filter is sent with every page";
}

TEST_F(FakeServerTest, AcceptsAFractionalTimeout) {
  Outcome o = Wlctl({"account", "show", "A1", "--timeout", "2.5"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  EXPECT_THAT(o.out, HasSubstr("12.3456"));
}

TEST_F(FakeServerTest, AcceptsTheLongestTimeout) {
  Outcome o = Wlctl({"account", "show", "A1", "--timeout", "86400"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  EXPECT_THAT(o.out, HasSubstr("12.3456"));
}

TEST_F(FakeServerTest, ServerRejectionExitsOneWithCodeAndMessage) {
  Outcome o = Wlctl({"topup", "FULL", "100", "--key", "K1", "--method", "cash"});
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.out, IsEmpty());
  EXPECT_THAT(o.err, HasSubstr("wlctl: topup FULL 100: FAILED_PRECONDITION hoarding_cap: balance "
                               "4950.0000 + 100.0000 exceeds the cap 5000.0000"));
  EXPECT_THAT(o.err, Not(HasSubstr("hint")));
}

// With no --operator, no WLCTL_OPERATOR and no $USER (a cron job, a container), the operator is
// the login name, not a made-up "operator".
TEST_F(FakeServerTest, OperatorDefaultsToTheLoginNameWithoutUser) {
  const passwd* entry = getpwuid(getuid());
  if (entry == nullptr) GTEST_SKIP() << "this user id has no passwd entry";
  std::string login = entry->pw_name;
  struct SavedEnv {
    std::string name;
    std::optional<std::string> value;
    explicit SavedEnv(std::string n) : name(std::move(n)) {
      if (const char* v = std::getenv(name.c_str())) value = v;
      unsetenv(name.c_str());
    }
    ~SavedEnv() {
      if (value) setenv(name.c_str(), value->c_str(), 1);
    }
  };
  SavedEnv user("USER"), logname("LOGNAME"), op("WLCTL_OPERATOR");
  Outcome o = RunWlctl({"topup", "A1", "1", "--key", "K1", "--method", "cash", "--endpoint", endpoint_},
                       /*connect_as_asked=*/true);
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.topup.operator_id(), login);
}

// With no operator to be found (a container's user id without a passwd entry), queries work and
// a change is refused without reaching the server (found by review: every command was refused).
TEST_F(FakeServerTest, AnUnknownOperatorStopsChangesOnly) {
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "wlctl");
    args.insert(args.end(), {"--endpoint", endpoint_});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    std::ostringstream out, err;
    int code = wlctl::Run(static_cast<int>(args.size()), argv.data(), out, err, DefaultChannel,
                   [] { return std::string(); });
    return std::make_pair(code, err.str());
  };
  auto [show, show_err] = run({"account", "show", "A1"});
  EXPECT_EQ(show, kExitOk) << show_err;
  auto [top, top_err] = run({"topup", "A1", "1", "--key", "K9", "--method", "cash"});
  EXPECT_EQ(top, kExitUsage);
  EXPECT_THAT(top_err, HasSubstr("the operator is unknown: pass --operator NAME or set WLCTL_OPERATOR"));
  {
    std::lock_guard lock(ledger_.mu_);
    EXPECT_NE(ledger_.topup.idempotency_key(), "K9") << "the top-up reached the server";
  }
  auto [named, named_err] = run({"topup", "A1", "1", "--key", "K9", "--method", "cash", "--operator", "op9"});
  EXPECT_EQ(named, kExitOk) << named_err;
}

TEST_F(FakeServerTest, AnEmptyPageTokenIsTheFirstPage) {
  Outcome o = Wlctl({"account", "list", "--page-token", ""});
  EXPECT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.list.page_token(), "");
}

// An UNAVAILABLE that names a ledger rule comes from a server that runs: the hint is to retry,
// not to start the server (found by review).
TEST_F(FakeServerTest, AKeyInFlightIsAskedToRetryNotToStartTheServer) {
  Outcome o = Wlctl({"topup", "BUSY", "100", "--key", "K1", "--method", "cash"});
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.err, HasSubstr("UNAVAILABLE idempotency_key_in_flight"));
  EXPECT_THAT(o.err, HasSubstr("hint: the server asks for a retry with the same --key\n"));
  EXPECT_THAT(o.err, Not(HasSubstr("is the server running")));
}

TEST_F(FakeServerTest, ServerRejectionWithJsonNamesTheRule) {
  Outcome o = Wlctl({"topup", "FULL", "100", "--key", "K1", "--method", "cash", "-o", "json"});
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.out, IsEmpty());
  Json j = Json::parse(o.err);
  EXPECT_EQ(j["error"]["command"], "topup FULL 100");
  EXPECT_EQ(j["error"]["code"], "FAILED_PRECONDITION");
  EXPECT_EQ(j["error"]["rule"], "hoarding_cap");
  EXPECT_EQ(j["error"]["message"],
            "hoarding_cap: balance 4950.0000 + 100.0000 exceeds the cap 5000.0000");
  EXPECT_EQ(j["error"]["hints"], Json::array());

  // A message that does not start with a rule has none.
  Outcome missing = Wlctl({"account", "show", "NOPE", "-o", "json"});
  Json m = Json::parse(missing.err);
  EXPECT_EQ(m["error"]["code"], "NOT_FOUND");
  EXPECT_FALSE(m["error"].contains("rule"));
}

TEST_F(FakeServerTest, ShowJsonAndTable) {
  Outcome json = Wlctl({"account", "show", "A1", "-o", "json"});
  ASSERT_EQ(json.code, kExitOk) << json.err;
  Json j = Json::parse(json.out);
  EXPECT_EQ(j["balance"], "12.3456");
  EXPECT_EQ(j["level"], "alarm1");

  Outcome table = Wlctl({"account", "show", "A1"});
  ASSERT_EQ(table.code, kExitOk) << table.err;
  EXPECT_THAT(table.out, HasSubstr("customer_name   张三\n"));
  EXPECT_THAT(table.out, HasSubstr("balance         12.3456\n"));

  Outcome missing = Wlctl({"account", "show", "NOPE"});
  EXPECT_EQ(missing.code, kExitFailed);
  EXPECT_THAT(missing.err, HasSubstr("wlctl: account show NOPE: NOT_FOUND account NOPE"));
}

TEST_F(FakeServerTest, ListReadsPageSizeAsDecimal) {
  // Not octal: a leading zero changes nothing.
  Outcome o = Wlctl({"account", "list", "--page-size", "010"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.list.page_size(), 10);
  EXPECT_THAT(o.out, HasSubstr("张三"));
}

TEST_F(FakeServerTest, StatementConvertsDatesToMicroseconds) {
  Outcome o = Wlctl({"statement", "A1", "--from", "2026-11-01", "--to",
                     "2026-12-01T00:00:00Z", "-o", "json"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  {
    std::lock_guard lock(ledger_.mu_);
    EXPECT_EQ(ledger_.statement.from_us(), 1'793'491'200'000'000);
    EXPECT_EQ(ledger_.statement.to_us(), 1'796'083'200'000'000);
  }
  Json j = Json::parse(o.out);
  EXPECT_EQ(j["closing_balance"], "12.3456");
  EXPECT_EQ(j["entries"][0]["balance_after"], "12.3456");

  Outcome all = Wlctl({"statement", "A1"});
  ASSERT_EQ(all.code, kExitOk) << all.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.statement.from_us(), 0);
  EXPECT_EQ(ledger_.statement.to_us(), 0);
  EXPECT_THAT(all.out, HasSubstr("top_up"));
}

TEST_F(FakeServerTest, StatementSaysWhatLateChargesLieBetweenItsEntries) {
  Outcome table = Wlctl({"statement", "LATE"});
  ASSERT_EQ(table.code, kExitOk) << table.err;
  EXPECT_THAT(table.out, HasSubstr("between these, 2 entries of other periods (late charges) of -3.5000: "
                                   "opening + amounts listed + these = closing\n"));
  Outcome json = Wlctl({"statement", "LATE", "-o", "json"});
  ASSERT_EQ(json.code, kExitOk) << json.err;
  Json j = Json::parse(json.out);
  EXPECT_EQ(j["unlisted_entries"], 2);
  EXPECT_EQ(j["unlisted"], "-3.5000");
  Outcome none = Wlctl({"statement", "A1"});
  EXPECT_THAT(none.out, Not(HasSubstr("other periods")));
}

TEST_F(FakeServerTest, StatementSendsAToJustAfterTheEpochAsIs) {
  Outcome o = Wlctl({"statement", "A1", "--to", "1970-01-01T00:00:00.000001Z"});
  ASSERT_EQ(o.code, kExitOk) << o.err;
  std::lock_guard lock(ledger_.mu_);
  EXPECT_EQ(ledger_.statement.from_us(), 0);
  EXPECT_EQ(ledger_.statement.to_us(), 1);
}

TEST_F(FakeServerTest, AuditVerifyFailureExitsOne) {
  Outcome o = Wlctl({"audit", "verify", "-o", "json"});
  EXPECT_EQ(o.code, kExitFailed);
  Json j = Json::parse(o.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["events_checked"], 7);
  Json e = Json::parse(o.err);
  EXPECT_EQ(e["error"]["code"], "CHECK_FAILED");
  EXPECT_EQ(e["error"]["message"],
            "log ledger failed verification: partition 0: hash chain broken at seq 5");

  Outcome text = Wlctl({"audit", "verify"});
  EXPECT_EQ(text.code, kExitFailed);
  EXPECT_THAT(text.err, HasSubstr("wlctl: audit verify: log ledger failed verification: partition "
                                  "0: hash chain broken at seq 5\n"));
}

TEST_F(FakeServerTest, UnimplementedCallGetsAHint) {
  Outcome o = Wlctl({"totals"});
  EXPECT_EQ(o.code, kExitFailed);
  EXPECT_THAT(o.err, HasSubstr("wlctl: totals: UNIMPLEMENTED"));
  EXPECT_THAT(o.err, HasSubstr("hint: the server at " + endpoint_));
}

}  // namespace
}  // namespace wattledger::wlctl
