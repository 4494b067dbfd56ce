#include "services/ledger/adapters/codec.h"

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/stubs/logging.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "services/ledger/adapters/sample_events.h"

namespace wattledger::ledger::adapters {
namespace {

using ::testing::HasSubstr;

using sample::kT;
using sample::Two;

// The sample of the given message type, encoded.
Encoded SampleOf(std::string_view type) {
  for (const Event& e : sample::Events()) {
    Encoded enc = EncodeEvent(e);
    if (enc.type == type) return enc;
  }
  ADD_FAILURE() << "no sample of " << type;
  return {};
}

// Decodes the sample of P after `mutate` changed its message.
template <typename P>
Status DecodeMutated(const std::function<void(P&)>& mutate) {
  P p;
  EXPECT_TRUE(p.ParseFromString(SampleOf(P::descriptor()->full_name()).payload));
  mutate(p);
  return DecodeEvent(P::descriptor()->full_name(), p.SerializeAsString()).status();
}

void ExpectInvalid(const Status& s, std::string_view part) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr(std::string(part)));
}

// ---------------------------------------------------------------------------------------------
// Events

TEST(EventCodec, EveryEventTypeRoundTrips) {
  std::set<std::size_t> kinds;
  for (const Event& e : sample::Events()) {
    kinds.insert(e.index());
    Encoded enc = EncodeEvent(e);
    // The domain's "ledger.ToppedUp" is the message "wattledger.ledger.v1.ToppedUp".
    EXPECT_EQ(enc.type, "wattledger.ledger.v1." + std::string(EventTypeName(e).substr(7)));
    EXPECT_TRUE(IsLedgerEventType(enc.type)) << enc.type;
    Result<Event> back = DecodeEvent(enc.type, enc.payload);
    ASSERT_TRUE(back.ok()) << enc.type << ": " << back.status().ToString();
    EXPECT_EQ(*back, e) << enc.type;
    EXPECT_EQ(EncodeEvent(*back).payload, enc.payload) << enc.type;
  }
  EXPECT_EQ(kinds.size(), std::variant_size_v<Event>);
}

// EncodeEvent reuses one message per type on each thread: an event encoded after a fuller one of
// its type (two legs, every string set) must carry nothing of it, byte for byte what a thread
// that never encoded that type makes of it.
TEST(EventCodec, AnEventCarriesNothingOfTheOneEncodedBeforeIt) {
  for (const Event& full : sample::Events()) {
    const Event empty = std::visit([](const auto& ev) { return Event{std::decay_t<decltype(ev)>{}}; }, full);
    Encoded fresh;
    std::thread([&] { fresh = EncodeEvent(empty); }).join();
    EncodeEvent(full);
    Encoded after = EncodeEvent(empty);
    EXPECT_EQ(after.type, fresh.type);
    EXPECT_EQ(after.payload, fresh.payload) << after.type;
  }
}

// The generic mapping copies fields the domain has; this catches a message field it never sets.
TEST(EventCodec, EveryWireFieldIsSet) {
  namespace pb = google::protobuf;
  pb::DynamicMessageFactory factory;
  for (const Event& e : sample::Events()) {
    Encoded enc = EncodeEvent(e);
    const pb::Descriptor* d = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(enc.type);
    ASSERT_NE(d, nullptr) << enc.type;
    std::unique_ptr<pb::Message> m(factory.GetPrototype(d)->New());
    ASSERT_TRUE(m->ParseFromString(enc.payload));
    const pb::Reflection* r = m->GetReflection();
    for (int i = 0; i < d->field_count(); ++i) {
      const pb::FieldDescriptor* f = d->field(i);
      bool set = f->is_repeated() ? r->FieldSize(*m, f) > 0 : r->HasField(*m, f);
      EXPECT_TRUE(set) << f->full_name() << " is never set by EncodeEvent";
    }
  }
}

TEST(EventCodec, UnknownTypesAreRejected) {
  Encoded enc = SampleOf("wattledger.ledger.v1.ToppedUp");
  for (std::string_view type : {std::string_view(""), std::string_view("ledger.ToppedUp"),
                                std::string_view("wattledger.ledger.v1.Nope"),
                                std::string_view("wattledger.ledger.v1.ToppedUp "),
                                std::string_view("wattledger.ledger.v1.Account"), kRejectedType}) {
    EXPECT_FALSE(IsLedgerEventType(type)) << type;
    ExpectInvalid(DecodeEvent(type, enc.payload).status(), "");
  }
  v1::CommandRejected rejected;
  rejected.set_txn_id("T1");
  rejected.set_account_id("A1");
  ExpectInvalid(DecodeEvent(kRejectedType, rejected.SerializeAsString()).status(),
                "rejected command");
  ExpectInvalid(DecodeEvent("x.Y", "").status(), "unknown ledger event type \"x.Y\"");
}

TEST(EventCodec, GarbagePayloadsAreRejected) {
  for (std::string_view bytes : {std::string_view("\xff\xff\xff\xff"), std::string_view("\x0a\x05T"),
                                 std::string_view("\x08", 1), std::string_view("\x00", 1)}) {
    ExpectInvalid(DecodeEvent("wattledger.ledger.v1.ToppedUp", bytes).status(), "");
  }
  ExpectInvalid(DecodeEvent("wattledger.ledger.v1.ToppedUp", "\xff\xff").status(),
                "wattledger.ledger.v1.ToppedUp payload does not parse (2 bytes)");
  // An empty payload parses (all defaults) but has no ids.
  ExpectInvalid(DecodeEvent("wattledger.ledger.v1.MeterAttached", "").status(),
                "wattledger.ledger.v1.MeterAttached: txn_id is required");
}

TEST(EventCodec, OutOfRangeEnumsAreRejected) {
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.set_method(v1::PAYMENT_METHOD_UNSPECIFIED); }),
                "ToppedUp: method is required: cash, wechat, alipay, bank or platform");
  ExpectInvalid(DecodeMutated<v1::Refunded>([](auto& p) { p.set_method(static_cast<v1::PaymentMethod>(42)); }),
                "method has unknown value 42");
  ExpectInvalid(DecodeMutated<v1::AccountClosed>([](auto& p) { p.set_method(static_cast<v1::PaymentMethod>(-1)); }),
                "method has unknown value -1");
  ExpectInvalid(DecodeMutated<v1::AccountOpened>([](auto& p) { p.set_mode(v1::MODE_UNSPECIFIED); }),
                "mode is required: prepaid or postpaid");
  ExpectInvalid(DecodeMutated<v1::LevelChanged>([](auto& p) { p.set_to(static_cast<v1::Level>(6)); }),
                "to has unknown value 6");
  ExpectInvalid(DecodeMutated<v1::LevelChanged>([](auto& p) { p.set_from(v1::LEVEL_UNSPECIFIED); }),
                "from is required");
  ExpectInvalid(DecodeMutated<v1::Reversed>([](auto& p) { p.set_original_kind(v1::TXN_KIND_UNSPECIFIED); }),
                "original_kind is required: open, attach_meter");
  ExpectInvalid(DecodeMutated<v1::OwnershipTransferred>([](auto& p) { p.set_method(static_cast<v1::PaymentMethod>(6)); }),
                "method has unknown value 6");
}

TEST(EventCodec, OutOfRangeFieldsAreRejected) {
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.clear_txn_id(); }), "ToppedUp: txn_id is required");
  ExpectInvalid(DecodeMutated<v1::Charged>([](auto& p) { p.clear_account_id(); }), "account_id is required");
  ExpectInvalid(DecodeMutated<v1::SupplyCutRequired>([](auto& p) { p.clear_account_id(); }), "account_id is required");
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.set_amount_minor(0); }), "amount_minor must be > 0, got 0");
  ExpectInvalid(DecodeMutated<v1::Refunded>([](auto& p) { p.set_amount_minor(-5); }), "amount_minor must be > 0, got -5");
  ExpectInvalid(DecodeMutated<v1::Charged>([](auto& p) { p.set_amount_minor(-1); }), "amount_minor must be > 0");
  ExpectInvalid(DecodeMutated<v1::Charged>([](auto& p) { p.set_energy_wh(-1); }), "energy_wh must be >= 0");
  ExpectInvalid(DecodeMutated<v1::Adjusted>([](auto& p) { p.set_amount_minor(0); }), "amount_minor must not be 0");
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.set_purchase_count(0); }), "purchase_count must be > 0");
  ExpectInvalid(DecodeMutated<v1::AccountClosed>([](auto& p) { p.set_arrears_minor(-1); }), "arrears_minor must be >= 0");
  ExpectInvalid(DecodeMutated<v1::AccountClosed>([](auto& p) { p.set_settlement_refund_minor(-1); }),
                "settlement_refund_minor must be >= 0");
  ExpectInvalid(DecodeMutated<v1::OwnershipTransferred>([](auto& p) { p.set_settlement_refund_minor(-1); }),
                "settlement_refund_minor must be >= 0");
  ExpectInvalid(DecodeMutated<v1::AccountOpened>([](auto& p) { p.clear_meters(); }), "meters must name at least one meter");
  ExpectInvalid(DecodeMutated<v1::AccountOpened>([](auto& p) { p.mutable_limits()->set_alarm2_minor(-1); }),
                "limits.alarm2_minor must be >= 0, got -1");
  ExpectInvalid(DecodeMutated<v1::LimitsChanged>([](auto& p) { p.mutable_after()->set_credit_limit_minor(-3); }),
                "after.credit_limit_minor must be >= 0");
  // Postings: what Apply would crash on must never get past the codec.
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.mutable_posting()->mutable_legs(0)->set_delta_minor(1); }),
                "posting legs do not sum to zero");
  ExpectInvalid(DecodeMutated<v1::ToppedUp>([](auto& p) { p.mutable_posting()->mutable_legs(1)->set_account("bitcoin"); }),
                "posting names an unknown system account \"bitcoin\"");
  ExpectInvalid(DecodeMutated<v1::Charged>([](auto& p) { p.mutable_posting()->mutable_legs(0)->clear_account(); }),
                "posting has a leg without an account");
  ExpectInvalid(DecodeMutated<v1::Adjusted>([](auto& p) { p.mutable_posting()->mutable_legs()->RemoveLast(); }),
                "posting legs do not sum to zero");
  // Legs at the ends of int64 still sum exactly.
  ExpectInvalid(DecodeMutated<v1::Adjusted>([](auto& p) {
                  p.mutable_posting()->mutable_legs(0)->set_delta_minor(INT64_MIN);
                  p.mutable_posting()->mutable_legs(1)->set_delta_minor(INT64_MIN);
                }),
                "posting legs do not sum to zero");
  // Signed amounts where the domain allows either sign are accepted.
  EXPECT_TRUE(DecodeMutated<v1::Reversed>([](auto& p) { p.set_amount_minor(10'000); }).ok());
  EXPECT_TRUE(DecodeMutated<v1::Adjusted>([](auto& p) { p.set_amount_minor(77); }).ok());
}

// Protobuf logs invalid UTF-8 in string fields; the fuzz loop would print thousands of lines.
void DiscardLog(google::protobuf::LogLevel, const char*, int, const std::string&) {}

// Only an event that moves the tenant's money links an entry: a link on one that moves none
// (an opening without a balance, a transfer or close without a refund) is refused.
TEST(EventCodec, ALinkOnAnEventThatMovesNoMoneyIsRejected) {
  ExpectInvalid(DecodeMutated<v1::AccountOpened>([](auto& p) {
                  p.set_opening_balance_minor(0);
                  p.clear_posting();
                  p.mutable_link()->set_balance_after_minor(0);
                  p.mutable_link()->set_prev_entry_seq(3);
                }),
                "link must be empty: the event moves no money");
  ExpectInvalid(DecodeMutated<v1::AccountClosed>([](auto& p) {
                  p.set_settlement_refund_minor(0);
                  p.clear_posting();
                }),
                "link must be empty");
  EXPECT_TRUE(DecodeMutated<v1::AccountClosed>([](auto& p) {
                p.set_settlement_refund_minor(0);
                p.clear_posting();
                p.clear_link();
              }).ok());
}

// A link's latest entry time goes on the wire when known; unknown is what its absence decodes as
// (links written before the field), so an unknown one is not written, and the link of an event
// that makes no entry stays empty.
TEST(EventCodec, ALinksLatestTimeIsWrittenOnlyWhenKnown) {
  const Posting ten{{Leg{false, "A1", 10}, Leg{true, "cash", -10}}};
  for (int64_t latest : {int64_t{1'700'000'000'000'000}, int64_t{0}, kLatestEntryTimeUnknown}) {
    SCOPED_TRACE(latest);
    const Event e = ToppedUp{"ledger/0/2", 5, "op", "A1", "K1", 10, PaymentMethod::kCash, 1, ten,
                             EntryLink{0, 10, latest}};
    const Encoded enc = EncodeEvent(e);
    v1::ToppedUp wire;
    ASSERT_TRUE(wire.ParseFromString(enc.payload));
    EXPECT_EQ(wire.link().has_latest_time_us(), latest != kLatestEntryTimeUnknown);
    auto back = DecodeEvent(enc.type, enc.payload);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(std::get<ToppedUp>(*back).link.latest_time_us, latest);
  }
  const Event opened = AccountOpened{"ledger/0/1", 1, "op", "A1", "x", {}, "", {"M1"}, "", Mode::kPrepaid,
                                     Limits{}, 0, "", {}, {}};
  v1::AccountOpened wire;
  ASSERT_TRUE(wire.ParseFromString(EncodeEvent(opened).payload));
  EXPECT_EQ(wire.link().ByteSizeLong(), 0u);
}

TEST(EventCodec, RandomBytesNeverCrash) {
  std::vector<Encoded> samples;
  for (const Event& e : sample::Events()) samples.push_back(EncodeEvent(e));
  google::protobuf::LogHandler* old = google::protobuf::SetLogHandler(&DiscardLog);
  std::mt19937_64 rng(20240611);
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 200'000; ++i) {
    const Encoded& base = samples[rng() % samples.size()];
    std::string payload;
    switch (rng() % 3) {
      case 0:  // Noise of up to 64 bytes.
        payload.resize(rng() % 65);
        for (char& c : payload) c = static_cast<char>(rng());
        break;
      case 1:  // A valid payload with a few bytes changed: gets past the parser more often.
        payload = base.payload;
        for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
          payload[rng() % payload.size()] = static_cast<char>(rng());
        }
        break;
      default:  // A valid payload cut short or with noise appended.
        payload = base.payload.substr(0, rng() % (base.payload.size() + 1));
        if (rng() % 2 == 0) payload += static_cast<char>(rng());
        break;
    }
    Result<Event> r = DecodeEvent(base.type, payload);
    if (!r.ok()) {
      ++rejected;
      ASSERT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().ToString();
      continue;
    }
    ++accepted;
    // Whatever is accepted is an event of the requested type that survives another round trip.
    Encoded again = EncodeEvent(*r);
    ASSERT_EQ(again.type, base.type);
    Result<Event> twice = DecodeEvent(again.type, again.payload);
    ASSERT_TRUE(twice.ok()) << twice.status().ToString();
    ASSERT_EQ(*twice, *r);
  }
  google::protobuf::SetLogHandler(old);
  // Both paths were exercised, or the loop proves nothing.
  EXPECT_GT(accepted, 1000);
  EXPECT_GT(rejected, 1000);
}

// The consumer routes by UsageAccountIdOf; it must name the account a full parse would.
TEST(UsageCodec, AccountIdOffTheWireAgreesWithTheParser) {
  billing::v1::UsageCharged u;
  u.set_charge_id("C-1");
  u.set_account_id("账户-0042");
  u.set_amount_minor(12'345);
  u.set_energy_wh(900);
  u.set_meter_id("M-7");
  u.set_reading_id("R-9");
  u.set_tariff_id("T1");
  u.set_tariff_version(3);
  u.set_occurred_at_us(1'700'000'000'000'000);
  const std::string base = u.SerializeAsString();
  EXPECT_EQ(UsageAccountIdOf(base), std::optional<std::string_view>("账户-0042"));
  EXPECT_EQ(UsageAccountIdOf(""), std::optional<std::string_view>(""));
  // An account_id written out empty as the last field parses (to ""), though protobuf never writes
  // one; found by tests/fuzz/usage_fuzz, after an unknown fixed32 field.
  const std::string empty_last("\x12\x00", 2);
  ASSERT_TRUE(billing::v1::UsageCharged().ParseFromString(empty_last));
  EXPECT_EQ(UsageAccountIdOf(empty_last), std::optional<std::string_view>(""));
  EXPECT_EQ(UsageAccountIdOf(std::string("\x95\x0a\x1d\x00\x00\x00\x12\x00", 8)), std::optional<std::string_view>(""));
  EXPECT_EQ(UsageAccountIdOf(base + empty_last), std::optional<std::string_view>(""));
  // A second occurrence of the field wins, as in a parse.
  billing::v1::UsageCharged other;
  other.set_account_id("B-2");
  EXPECT_EQ(UsageAccountIdOf(base + other.SerializeAsString()), std::optional<std::string_view>("B-2"));

  google::protobuf::LogHandler* old = google::protobuf::SetLogHandler(&DiscardLog);
  std::mt19937_64 rng(20261121);
  int parsed = 0;
  for (int i = 0; i < 200'000; ++i) {
    std::string payload = base;
    switch (rng() % 3) {
      case 0:
        for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) payload[rng() % payload.size()] = static_cast<char>(rng());
        break;
      case 1:
        payload = payload.substr(0, rng() % (payload.size() + 1));
        break;
      default:
        payload.resize(rng() % 48);
        for (char& c : payload) c = static_cast<char>(rng());
        break;
    }
    billing::v1::UsageCharged full;
    std::optional<std::string_view> fast = UsageAccountIdOf(payload);
    if (full.ParseFromString(payload)) {
      ++parsed;
      ASSERT_TRUE(fast.has_value()) << "wire scan refused what the parser took";
      ASSERT_EQ(*fast, full.account_id());
    }
  }
  google::protobuf::SetLogHandler(old);
  EXPECT_GT(parsed, 1000);
}

// ---------------------------------------------------------------------------------------------
// Enums and views

TEST(EnumCodec, EveryValueRoundTrips) {
  for (PaymentMethod m : {PaymentMethod::kCash, PaymentMethod::kWechat, PaymentMethod::kAlipay,
                          PaymentMethod::kBank, PaymentMethod::kPlatform}) {
    Result<PaymentMethod> back = FromProto(ToProto(m), "method");
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, m);
  }
  for (Mode m : {Mode::kPrepaid, Mode::kPostpaid}) {
    Result<Mode> back = FromProto(ToProto(m), "mode");
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, m);
  }
  std::set<int> levels, states, kinds;
  for (int i = 0; i <= static_cast<int>(Level::kCutoff); ++i) levels.insert(ToProto(static_cast<Level>(i)));
  for (int i = 0; i <= static_cast<int>(AccountState::kClosedWithArrears); ++i) {
    states.insert(ToProto(static_cast<AccountState>(i)));
  }
  for (int i = 0; i <= static_cast<int>(TxnKind::kCharge); ++i) kinds.insert(ToProto(static_cast<TxnKind>(i)));
  // Distinct and never UNSPECIFIED.
  EXPECT_EQ(levels, (std::set<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(states, (std::set<int>{1, 2, 3, 4}));
  EXPECT_EQ(kinds.size(), 13u);
  EXPECT_EQ(kinds.count(0), 0u);
  EXPECT_EQ(ToProto(TxnKind::kCharge), v1::TXN_KIND_CHARGE);
  EXPECT_EQ(ToProto(AccountState::kClosedWithArrears), v1::ACCOUNT_STATE_CLOSED_WITH_ARREARS);
}

TEST(EnumCodec, UnspecifiedAndUnknownAreRejectedNamingTheField) {
  EXPECT_EQ(FromProto(v1::PAYMENT_METHOD_UNSPECIFIED, "method").status().message(),
            "method is required: cash, wechat, alipay, bank or platform");
  ExpectInvalid(FromProto(static_cast<v1::PaymentMethod>(9), "payout").status(),
                "payout has unknown value 9; expected cash, wechat, alipay, bank or platform");
  ExpectInvalid(FromProto(v1::MODE_UNSPECIFIED, "mode").status(), "mode is required: prepaid or postpaid");
  ExpectInvalid(FromProto(static_cast<v1::Mode>(3), "mode").status(), "mode has unknown value 3");
}

// An account with every field away from its default.
Account FullAccount() {
  Account a;
  a.id = "A1";
  a.customer_name = "Wang";
  a.phones = {"138"};
  a.room = "3-201";
  a.meters = {"M1", "M2"};
  a.tariff_id = "tf";
  a.mode = Mode::kPostpaid;
  a.state = AccountState::kSuspended;
  a.limits = Limits{1, 4, 3, 9};
  a.balance_minor = -20;
  a.purchase_count = 7;
  a.level = Level::kCutoff;
  a.supply_cut = true;
  a.opened_txn_id = "T1";
  return a;
}

TEST(ViewCodec, AccountHasEveryField) {
  v1::Account p = ToProto(FullAccount());
  EXPECT_EQ(p.account_id(), "A1");
  EXPECT_EQ(p.customer_name(), "Wang");
  EXPECT_THAT(p.phones(), ::testing::ElementsAre("138"));
  EXPECT_EQ(p.room(), "3-201");
  EXPECT_THAT(p.meters(), ::testing::ElementsAre("M1", "M2"));
  EXPECT_EQ(p.tariff_id(), "tf");
  EXPECT_EQ(p.mode(), v1::MODE_POSTPAID);
  EXPECT_EQ(p.state(), v1::ACCOUNT_STATE_SUSPENDED);
  EXPECT_EQ(p.limits().credit_limit_minor(), 1);
  EXPECT_EQ(p.limits().alarm1_minor(), 4);
  EXPECT_EQ(p.limits().alarm2_minor(), 3);
  EXPECT_EQ(p.limits().hoarding_cap_minor(), 9);
  EXPECT_EQ(p.balance_minor(), -20);
  EXPECT_EQ(p.purchase_count(), 7);
  EXPECT_EQ(p.level(), v1::LEVEL_CUTOFF);
  EXPECT_TRUE(p.supply_cut());
  EXPECT_EQ(p.opened_txn_id(), "T1");
}

// Views and answers refill one message: nothing of the account it held before may stay.
TEST(ViewCodec, AnAccountCarriesNothingOfTheOneFilledBeforeIt) {
  Account bare;
  bare.id = "A2";
  v1::Account reused;
  ToProto(FullAccount(), &reused);
  ToProto(bare, &reused);
  EXPECT_EQ(reused.SerializeAsString(), ToProto(bare).SerializeAsString());
  EXPECT_EQ(reused.phones_size(), 0);
  EXPECT_EQ(reused.limits().hoarding_cap_minor(), 0);
}

TEST(ViewCodec, StatementEntryAndTransaction) {
  StatementEntry e{"T9", kT, TxnKind::kCharge, -1'234, 8'766, "op", "why", "wechat", "k9", "T2",
                   5, "C1", "M1", "R1", "tf", 4, 5'600};
  v1::StatementEntry pe = ToProto(e);
  EXPECT_EQ(pe.txn_id(), "T9");
  EXPECT_EQ(pe.time_us(), kT);
  EXPECT_EQ(pe.kind(), v1::TXN_KIND_CHARGE);
  EXPECT_EQ(pe.amount_minor(), -1'234);
  EXPECT_EQ(pe.balance_after_minor(), 8'766);
  EXPECT_EQ(pe.operator_id(), "op");
  EXPECT_EQ(pe.reason(), "why");
  EXPECT_EQ(pe.method(), "wechat");
  EXPECT_EQ(pe.idempotency_key(), "k9");
  EXPECT_EQ(pe.original_txn_id(), "T2");
  EXPECT_EQ(pe.purchase_count(), 5);
  EXPECT_EQ(pe.charge_id(), "C1");
  EXPECT_EQ(pe.meter_id(), "M1");
  EXPECT_EQ(pe.reading_id(), "R1");
  EXPECT_EQ(pe.tariff_id(), "tf");
  EXPECT_EQ(pe.tariff_version(), 4);
  EXPECT_EQ(pe.energy_wh(), 5'600);

  TxnRecord t{"T9", TxnKind::kTopUp, "A1", kT, 500, "op", "why", "k9", "T0", "T10",
              Two("A1", 500, "cash")};
  v1::Transaction pt = ToProto(t);
  EXPECT_EQ(pt.txn_id(), "T9");
  EXPECT_EQ(pt.kind(), v1::TXN_KIND_TOP_UP);
  EXPECT_EQ(pt.account_id(), "A1");
  EXPECT_EQ(pt.time_us(), kT);
  EXPECT_EQ(pt.amount_minor(), 500);
  EXPECT_EQ(pt.operator_id(), "op");
  EXPECT_EQ(pt.reason(), "why");
  EXPECT_EQ(pt.idempotency_key(), "k9");
  EXPECT_EQ(pt.original_txn_id(), "T0");
  EXPECT_EQ(pt.reversed_by(), "T10");
  ASSERT_EQ(pt.posting().legs_size(), 2);
  EXPECT_FALSE(pt.posting().legs(0).system());
  EXPECT_EQ(pt.posting().legs(0).account(), "A1");
  EXPECT_EQ(pt.posting().legs(0).delta_minor(), 500);
  EXPECT_TRUE(pt.posting().legs(1).system());
  EXPECT_EQ(pt.posting().legs(1).account(), "cash");
  EXPECT_EQ(pt.posting().legs(1).delta_minor(), -500);
  EXPECT_EQ(ToProto(Posting{}).legs_size(), 0);
}

// ---------------------------------------------------------------------------------------------
// Requests

TEST(RequestCodec, OpenAccountCarriesEveryField) {
  v1::OpenAccountRequest r;
  r.set_operator_id("op");
  r.set_account_id("A1");
  r.set_customer_name("Wang");
  r.add_phones("138");
  r.set_room("3-201");
  r.add_meters("M1");
  r.add_meters("M2");
  r.set_tariff_id("tf");
  r.set_mode(v1::MODE_PREPAID);
  r.set_credit_limit_minor(0);  // Set to 0 is not unset.
  r.set_hoarding_cap_minor(9);
  r.set_opening_balance_minor(-5);
  r.set_opening_balance_source("old");
  Result<OpenAccount> c = FromProto(r);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->txn_id, "");  // The writer gives it one when it takes the command.
  EXPECT_EQ(c->time_us, 0);
  EXPECT_EQ(c->operator_id, "op");
  EXPECT_EQ(c->account_id, "A1");
  EXPECT_EQ(c->customer_name, "Wang");
  EXPECT_EQ(c->phones, std::vector<std::string>{"138"});
  EXPECT_EQ(c->room, "3-201");
  EXPECT_EQ(c->meters, (std::vector<std::string>{"M1", "M2"}));
  EXPECT_EQ(c->tariff_id, "tf");
  EXPECT_EQ(c->mode, Mode::kPrepaid);
  EXPECT_EQ(c->credit_limit_minor, 0);
  EXPECT_EQ(c->alarm1_minor, std::nullopt);
  EXPECT_EQ(c->alarm2_minor, std::nullopt);
  EXPECT_EQ(c->hoarding_cap_minor, 9);
  EXPECT_EQ(c->opening_balance_minor, -5);
  EXPECT_EQ(c->opening_balance_source, "old");

  r.clear_mode();
  ExpectInvalid(FromProto(r).status(), "mode is required: prepaid or postpaid");
}

TEST(RequestCodec, MissingFieldsAreNamed) {
  struct Case {
    std::string name;
    std::function<Status()> convert;
    std::string message;
  };
  v1::MeterRequest meter;
  meter.set_operator_id("op");
  meter.set_account_id("A1");
  v1::TopUpRequest top_up;
  top_up.set_operator_id("op");
  top_up.set_account_id("A1");
  top_up.set_method(v1::PAYMENT_METHOD_CASH);
  v1::RefundRequest refund;
  refund.set_operator_id("op");
  refund.set_account_id("A1");
  refund.set_idempotency_key("k");
  v1::AdjustRequest adjust;
  adjust.set_operator_id("op");
  adjust.set_account_id("A1");
  v1::ReverseRequest reverse;
  reverse.set_operator_id("op");
  v1::SuspendRequest suspend;
  suspend.set_account_id("A1");
  v1::ResumeRequest resume;
  resume.set_operator_id("op");
  v1::TransferRequest transfer;
  transfer.set_account_id("A1");
  v1::CloseAccountRequest close;
  close.set_operator_id("op");
  v1::SetLimitsRequest limits;
  limits.set_operator_id("op");
  v1::OpenAccountRequest open;
  open.set_account_id("A1");
  open.set_mode(v1::MODE_PREPAID);
  const std::vector<Case> cases = {
      {"open", [&] { return FromProto(open).status(); }, "operator_id is required"},
      {"attach", [&] { return AttachFromProto(meter).status(); }, "meter_id is required"},
      {"detach", [&] { return DetachFromProto(meter).status(); }, "meter_id is required"},
      {"set_limits", [&] { return FromProto(limits).status(); }, "account_id is required"},
      {"suspend", [&] { return FromProto(suspend).status(); }, "operator_id is required"},
      {"resume", [&] { return FromProto(resume).status(); }, "account_id is required"},
      {"transfer", [&] { return FromProto(transfer).status(); }, "operator_id is required"},
      {"close", [&] { return FromProto(close).status(); }, "account_id is required"},
      {"top_up", [&] { return FromProto(top_up).status(); }, "idempotency_key is required"},
      {"refund", [&] { return FromProto(refund).status(); },
       "method is required: cash, wechat, alipay, bank or platform"},
      {"reverse", [&] { return FromProto(reverse).status(); }, "original_txn_id is required"},
      {"adjust", [&] { return FromProto(adjust).status(); }, "idempotency_key is required"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Status s = c.convert();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_EQ(s.message(), c.message);
  }
}

TEST(RequestCodec, PaymentRequestsNeedAMethod) {
  v1::TopUpRequest r;
  r.set_operator_id("op");
  r.set_account_id("A1");
  r.set_idempotency_key("k1");
  r.set_amount_minor(500);
  EXPECT_EQ(FromProto(r).status().message(),
            "method is required: cash, wechat, alipay, bank or platform");
  r.set_method(static_cast<v1::PaymentMethod>(11));
  ExpectInvalid(FromProto(r).status(), "method has unknown value 11");
  r.set_method(v1::PAYMENT_METHOD_WECHAT);
  Result<TopUp> c = FromProto(r);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->method, PaymentMethod::kWechat);
  EXPECT_EQ(c->idempotency_key, "k1");
  EXPECT_EQ(c->amount_minor, 500);
  EXPECT_EQ(c->expected_purchase_count, std::nullopt);
  r.set_expected_purchase_count(4);
  EXPECT_EQ(FromProto(r)->expected_purchase_count, 4);
  // Purchases count from 1: a count below is a malformed request, not a CE-05 mismatch.
  r.set_expected_purchase_count(-3);
  ExpectInvalid(FromProto(r).status(), "expected_purchase_count must be > 0, got -3");
  r.set_expected_purchase_count(0);
  ExpectInvalid(FromProto(r).status(), "expected_purchase_count must be > 0, got 0");
  r.set_expected_purchase_count(4);
  // The domain, not the codec, decides that an amount must be positive.
  r.set_amount_minor(-1);
  EXPECT_TRUE(FromProto(r).ok());

  v1::RefundRequest f;
  f.set_operator_id("op");
  f.set_account_id("A1");
  f.set_idempotency_key("k2");
  f.set_amount_minor(300);
  f.set_method(v1::PAYMENT_METHOD_BANK);
  f.set_reason("asked");
  Result<Refund> rc = FromProto(f);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(rc->method, PaymentMethod::kBank);
  EXPECT_EQ(rc->amount_minor, 300);
  EXPECT_EQ(rc->reason, "asked");
}

TEST(RequestCodec, CloseAndTransferDefaultToCash) {
  v1::CloseAccountRequest close;
  close.set_operator_id("op");
  close.set_account_id("A1");
  close.set_reason("moved");
  Result<CloseAccount> c = FromProto(close);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->method, PaymentMethod::kCash);
  EXPECT_EQ(c->reason, "moved");
  close.set_method(v1::PAYMENT_METHOD_ALIPAY);
  EXPECT_EQ(FromProto(close)->method, PaymentMethod::kAlipay);
  close.set_method(static_cast<v1::PaymentMethod>(99));
  ExpectInvalid(FromProto(close).status(), "method has unknown value 99");

  v1::TransferRequest t;
  t.set_operator_id("op");
  t.set_account_id("A1");
  t.set_new_customer_name("Li");
  t.add_new_phones("186");
  t.set_settle(true);
  Result<TransferOwnership> tc = FromProto(t);
  ASSERT_TRUE(tc.ok());
  EXPECT_EQ(tc->method, PaymentMethod::kCash);
  EXPECT_EQ(tc->new_customer_name, "Li");
  EXPECT_EQ(tc->new_phones, std::vector<std::string>{"186"});
  EXPECT_TRUE(tc->settle);
  t.set_method(static_cast<v1::PaymentMethod>(-3));
  ExpectInvalid(FromProto(t).status(), "method has unknown value -3");
}

TEST(RequestCodec, OtherRequestsCarryTheirFields) {
  v1::MeterRequest m;
  m.set_operator_id("op");
  m.set_account_id("A1");
  m.set_meter_id("M7");
  Result<AttachMeter> a = AttachFromProto(m);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->meter_id, "M7");
  EXPECT_EQ(a->account_id, "A1");
  Result<DetachMeter> d = DetachFromProto(m);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->meter_id, "M7");

  v1::SetLimitsRequest l;
  l.set_operator_id("op");
  l.set_account_id("A1");
  l.set_alarm2_minor(0);
  Result<SetLimits> lc = FromProto(l);
  ASSERT_TRUE(lc.ok());
  EXPECT_EQ(lc->alarm2_minor, 0);
  EXPECT_EQ(lc->credit_limit_minor, std::nullopt);

  v1::SuspendRequest s;
  s.set_operator_id("op");
  s.set_account_id("A1");
  s.set_reason("tamper");
  EXPECT_EQ(FromProto(s)->reason, "tamper");

  v1::ResumeRequest r;
  r.set_operator_id("op");
  r.set_account_id("A1");
  EXPECT_EQ(FromProto(r)->account_id, "A1");

  v1::ReverseRequest rv;
  rv.set_operator_id("op");
  rv.set_original_txn_id("T9");
  rv.set_reason("typo");
  Result<Reverse> rc = FromProto(rv);
  ASSERT_TRUE(rc.ok());  // The idempotency key is optional for reversals.
  EXPECT_EQ(rc->original_txn_id, "T9");
  EXPECT_EQ(rc->reason, "typo");
  EXPECT_EQ(rc->idempotency_key, "");

  v1::AdjustRequest ad;
  ad.set_operator_id("op");
  ad.set_account_id("A1");
  ad.set_idempotency_key("k");
  ad.set_amount_minor(-40);
  ad.set_reason("fault");
  Result<Adjust> ac = FromProto(ad);
  ASSERT_TRUE(ac.ok());
  EXPECT_EQ(ac->amount_minor, -40);
  EXPECT_EQ(ac->reason, "fault");
}

TEST(RequestCodec, TextThatIsNotUtf8IsFoundWhereverItIs) {
  v1::ToppedUp t;
  t.set_txn_id("ledger/0/1");
  t.set_operator_id("收银员");
  auto* leg = t.mutable_posting()->add_legs();
  leg->set_account("A1");
  t.mutable_posting()->add_legs()->set_account("cash");
  EXPECT_EQ(NonUtf8Field(t), std::nullopt);
  t.mutable_posting()->mutable_legs(1)->set_account("ca\xffsh");
  EXPECT_EQ(NonUtf8Field(t), "posting.legs[1].account");
  t.set_operator_id("\xe6\x94");  // A character cut short: before the posting in field order.
  EXPECT_EQ(NonUtf8Field(t), "operator_id");
  v1::OpenAccountRequest o;
  o.add_phones("13800000000");
  o.add_phones("\xc0\xaf");  // An overlong '/'.
  EXPECT_EQ(NonUtf8Field(o), "phones[1]");
  o.set_customer_name("\xed\xa0\x80");  // A surrogate.
  EXPECT_EQ(NonUtf8Field(o), "customer_name");
}

TEST(RequestCodec, UsageBecomesACharge) {
  billing::v1::UsageCharged u;
  u.set_charge_id("C1");
  u.set_account_id("A1");
  u.set_amount_minor(1'234);
  u.set_energy_wh(0);  // Zero energy is allowed (standing charges).
  u.set_meter_id("M1");
  u.set_reading_id("R1");
  u.set_tariff_id("tf");
  u.set_tariff_version(4);
  u.set_occurred_at_us(kT - 1);
  billing::v1::UsageCharged taken = u;
  Result<Charge> c = ChargeFromUsage(&taken, "T1", kT);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->txn_id, "T1");
  EXPECT_EQ(c->time_us, kT);
  EXPECT_EQ(c->charge_id, "C1");
  EXPECT_EQ(c->account_id, "A1");
  EXPECT_EQ(c->amount_minor, 1'234);
  EXPECT_EQ(c->energy_wh, 0);
  EXPECT_EQ(c->meter_id, "M1");
  EXPECT_EQ(c->reading_id, "R1");
  EXPECT_EQ(c->tariff_id, "tf");
  EXPECT_EQ(c->tariff_version, 4);

  // Each refusal names the rule, and leaves the usage as it came, for the record of its rejection.
  auto with = [&](const std::function<void(billing::v1::UsageCharged&)>& change) {
    billing::v1::UsageCharged v = u;
    change(v);
    const std::string before = v.SerializeAsString();
    Status status = ChargeFromUsage(&v, "T1", kT).status();
    EXPECT_EQ(v.SerializeAsString(), before) << "a refused usage was changed";
    return status;
  };
  ExpectInvalid(with([](auto& v) { v.clear_charge_id(); }), "charge_id is required");
  ExpectInvalid(with([](auto& v) { v.clear_account_id(); }), "account_id is required");
  ExpectInvalid(with([](auto& v) { v.set_amount_minor(0); }), "amount_minor must be > 0, got 0");
  ExpectInvalid(with([](auto& v) { v.set_amount_minor(-9); }), "amount_minor must be > 0, got -9");
  ExpectInvalid(with([](auto& v) { v.set_energy_wh(-1); }), "energy_wh must be >= 0, got -1");

  // Ids as long as the fleet's are heap strings, which the charge takes whole.
  billing::v1::UsageCharged fleet = u;
  fleet.set_charge_id("fleet-sim/run-1/000042/SIM-A000123");
  fleet.set_account_id("SIM-A000123-building-7");
  fleet.set_meter_id("SIM-M000123-room-402");
  fleet.set_reading_id("fleet-sim/run-1/000042/SIM-M000123");
  fleet.set_tariff_id("residential-tiered-2026");
  billing::v1::UsageCharged fleet_taken = fleet;
  Result<Charge> t = ChargeFromUsage(&fleet_taken, "T1", kT);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->charge_id, fleet.charge_id());
  EXPECT_EQ(t->account_id, fleet.account_id());
  EXPECT_EQ(t->meter_id, fleet.meter_id());
  EXPECT_EQ(t->reading_id, fleet.reading_id());
  EXPECT_EQ(t->tariff_id, fleet.tariff_id());
  EXPECT_EQ(t->amount_minor, 1'234);
  EXPECT_EQ(t->tariff_version, 4);
}

}  // namespace
}  // namespace wattledger::ledger::adapters
