#include "services/ledger/adapters/codec.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/message.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/wire_format_lite.h>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "wattledger/base/utf8.h"

namespace wattledger::ledger::adapters {
namespace {

using google::protobuf::RepeatedPtrField;

// ---------------------------------------------------------------------------------------------
// Enums: one table per enum drives both directions, so they cannot disagree.

template <typename D, typename W>
struct EnumPair {
  D domain;
  W wire;
};

constexpr EnumPair<PaymentMethod, v1::PaymentMethod> kMethods[] = {
    {PaymentMethod::kCash, v1::PAYMENT_METHOD_CASH},
    {PaymentMethod::kWechat, v1::PAYMENT_METHOD_WECHAT},
    {PaymentMethod::kAlipay, v1::PAYMENT_METHOD_ALIPAY},
    {PaymentMethod::kBank, v1::PAYMENT_METHOD_BANK},
    {PaymentMethod::kPlatform, v1::PAYMENT_METHOD_PLATFORM},
};
constexpr EnumPair<Mode, v1::Mode> kModes[] = {
    {Mode::kPrepaid, v1::MODE_PREPAID},
    {Mode::kPostpaid, v1::MODE_POSTPAID},
};
constexpr EnumPair<Level, v1::Level> kLevels[] = {
    {Level::kNormal, v1::LEVEL_NORMAL},   {Level::kAlarm1, v1::LEVEL_ALARM1},
    {Level::kAlarm2, v1::LEVEL_ALARM2},   {Level::kArrears, v1::LEVEL_ARREARS},
    {Level::kCutoff, v1::LEVEL_CUTOFF},
};
constexpr EnumPair<AccountState, v1::AccountState> kStates[] = {
    {AccountState::kOpen, v1::ACCOUNT_STATE_OPEN},
    {AccountState::kSuspended, v1::ACCOUNT_STATE_SUSPENDED},
    {AccountState::kClosed, v1::ACCOUNT_STATE_CLOSED},
    {AccountState::kClosedWithArrears, v1::ACCOUNT_STATE_CLOSED_WITH_ARREARS},
};
constexpr EnumPair<TxnKind, v1::TxnKind> kKinds[] = {
    {TxnKind::kOpen, v1::TXN_KIND_OPEN},
    {TxnKind::kAttachMeter, v1::TXN_KIND_ATTACH_METER},
    {TxnKind::kDetachMeter, v1::TXN_KIND_DETACH_METER},
    {TxnKind::kSetLimits, v1::TXN_KIND_SET_LIMITS},
    {TxnKind::kSuspend, v1::TXN_KIND_SUSPEND},
    {TxnKind::kResume, v1::TXN_KIND_RESUME},
    {TxnKind::kTransfer, v1::TXN_KIND_TRANSFER},
    {TxnKind::kClose, v1::TXN_KIND_CLOSE},
    {TxnKind::kTopUp, v1::TXN_KIND_TOP_UP},
    {TxnKind::kRefund, v1::TXN_KIND_REFUND},
    {TxnKind::kReversal, v1::TXN_KIND_REVERSAL},
    {TxnKind::kAdjustment, v1::TXN_KIND_ADJUSTMENT},
    {TxnKind::kCharge, v1::TXN_KIND_CHARGE},
};

// The table for a wire enum, for the generic decoder below.
constexpr const auto& Table(v1::PaymentMethod) { return kMethods; }
constexpr const auto& Table(v1::Mode) { return kModes; }
constexpr const auto& Table(v1::Level) { return kLevels; }
constexpr const auto& Table(v1::AccountState) { return kStates; }
constexpr const auto& Table(v1::TxnKind) { return kKinds; }

std::string_view Name(PaymentMethod m) { return PaymentMethodName(m); }
std::string_view Name(Mode m) { return ModeName(m); }
std::string_view Name(Level l) { return LevelName(l); }
std::string_view Name(AccountState s) { return AccountStateName(s); }
std::string_view Name(TxnKind k) { return TxnKindName(k); }

template <typename D, typename W, std::size_t N>
W EnumToWire(const EnumPair<D, W> (&table)[N], D d) {
  for (const auto& e : table) {
    if (e.domain == d) return e.wire;
  }
  // Only a corrupted domain value gets here; UNSPECIFIED makes every decoder refuse it.
  return W{};
}

template <typename D, typename W, std::size_t N>
Result<D> EnumFromWire(const EnumPair<D, W> (&table)[N], W w, std::string_view field) {
  for (const auto& e : table) {
    if (e.wire == w) return e.domain;
  }
  std::string accepted;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) accepted += i + 1 == N ? " or " : ", ";
    accepted += Name(table[i].domain);
  }
  int value = static_cast<int>(w);
  if (value == 0) return InvalidArgument(std::string(field) + " is required: " + accepted);
  return InvalidArgument(std::string(field) + " has unknown value " + std::to_string(value) +
                         "; expected " + accepted);
}

// ---------------------------------------------------------------------------------------------
// Field checks. Messages name the field; DecodeEvent prefixes the message type.

// Ids and keys are bounded: they are repeated in events and rejection messages.
constexpr size_t kMaxIdBytes = 256;

Status Required(std::string_view value, std::string_view field) {
  if (value.empty()) return InvalidArgument(std::string(field) + " is required");
  if (value.size() > kMaxIdBytes) {
    return InvalidArgument(std::string(field) + " is " + std::to_string(value.size()) + " bytes; at most " +
                           std::to_string(kMaxIdBytes) + " are allowed");
  }
  return Status::Ok();
}

Status AtLeast(int64_t value, int64_t min, std::string_view field) {
  if (value >= min) return Status::Ok();
  std::string bound = min == 1 ? "> 0" : ">= " + std::to_string(min);
  return InvalidArgument(std::string(field) + " must be " + bound + ", got " +
                         std::to_string(value));
}

// ---------------------------------------------------------------------------------------------
// Generic field mapping. Domain structs and their messages spell shared fields the same, so one
// list of names drives encoding and decoding of every event and view: a name is mapped wherever
// the domain struct has a member of that name, and a domain member the message lacks does not
// compile. A message field the domain lacks is never set: codec_test's EveryWireFieldIsSet
// (events) and View tests catch that. Fields that do not line up (Account::id, Posting legs)
// are mapped by hand.

// Set with p.set_<name>(...): strings, integers, bools and enums.
#define WL_CODEC_SCALARS(X)                                                                    \
  X(txn_id) X(time_us) X(operator_id) X(account_id) X(customer_name) X(room) X(tariff_id)     \
  X(mode) X(opening_balance_minor) X(opening_balance_source) X(meter_id) X(reason)           \
  X(old_customer_name) X(new_customer_name) X(settled) X(settlement_refund_minor) X(method)  \
  X(arrears_minor) X(idempotency_key) X(amount_minor) X(purchase_count) X(original_txn_id)   \
  X(original_kind) X(charge_id) X(energy_wh) X(reading_id) X(tariff_version) X(from) X(to)   \
  X(balance_minor) X(cutoff_line_minor) X(credit_limit_minor) X(alarm1_minor)                \
  X(alarm2_minor) X(hoarding_cap_minor) X(kind) X(state) X(level) X(supply_cut)               \
  X(balance_after_minor) X(reversed_by) X(opened_txn_id) X(prev_entry_seq) X(latest_time_us)

// Set through p.mutable_<name>(): repeated strings and sub-messages.
#define WL_CODEC_COMPOSITES(X)                                                                 \
  X(phones) X(meters) X(old_phones) X(new_phones) X(released_meters) X(limits) X(before)     \
  X(after) X(posting) X(link)

// Encoding: an enum goes through its table, anything else as is.
template <typename T>
decltype(auto) Out(const T& v) {
  if constexpr (std::is_enum_v<T>) {
    return ToProto(v);
  } else {
    return (v);
  }
}

void Put(const std::vector<std::string>& v, RepeatedPtrField<std::string>* w) {
  w->Assign(v.begin(), v.end());
}
void Put(const Limits& l, v1::Limits* w);
void Put(const Posting& p, v1::Posting* w);
void Put(const EntryLink& l, v1::EntryLink* w);

// Sets every field of `p` that D has; the others are left as they are. Into a message that
// already holds strings (and legs), the strings are assigned in place: no allocation once they
// are large enough.
template <typename P, typename D>
void ToWire(const D& d, P* p) {
#define WL_CODEC_SET(f) \
  if constexpr (requires { d.f; }) p->set_##f(Out(d.f));
  WL_CODEC_SCALARS(WL_CODEC_SET)
#undef WL_CODEC_SET
#define WL_CODEC_PUT(f) \
  if constexpr (requires { d.f; }) Put(d.f, p->mutable_##f());
  WL_CODEC_COMPOSITES(WL_CODEC_PUT)
#undef WL_CODEC_PUT
}
template <typename P, typename D>
P ToWire(const D& d) {
  P p;
  ToWire(d, &p);
  return p;
}

void Put(const Limits& l, v1::Limits* w) { ToWire(l, w); }
void Put(const EntryLink& l, v1::EntryLink* w) {
  ToWire(l, w);
  // Unknown is what its absence decodes as: the links of events that make no entry stay empty.
  if (l.latest_time_us == kLatestEntryTimeUnknown) w->clear_latest_time_us();
}
void Put(const Posting& p, v1::Posting* w) {
  // Cleared legs stay allocated, and add_legs hands them out again.
  w->clear_legs();
  for (const Leg& leg : p.legs) {
    v1::Leg* l = w->add_legs();
    l->set_system(leg.system);
    l->set_account(leg.account);
    l->set_delta_minor(leg.delta_minor);
  }
}

// Decoding: the overloads of In validate what they convert.
template <typename D, typename P>
Status FromWire(const P& p, D* d);

template <typename T>
Status In(const T& w, std::string_view, T* d) {
  *d = w;
  return Status::Ok();
}

template <typename W, typename D>
  requires std::is_enum_v<W> && std::is_enum_v<D>
Status In(W w, std::string_view field, D* d) {
  WL_ASSIGN_OR_RETURN(*d, EnumFromWire(Table(w), w, field));
  return Status::Ok();
}

Status In(const RepeatedPtrField<std::string>& w, std::string_view, std::vector<std::string>* d) {
  d->assign(w.begin(), w.end());
  return Status::Ok();
}

Status In(const v1::Limits& w, std::string_view field, Limits* d) {
  WL_RETURN_IF_ERROR(FromWire(w, d));
  std::string prefix = std::string(field) + ".";
  WL_RETURN_IF_ERROR(AtLeast(d->credit_limit_minor, 0, prefix + "credit_limit_minor"));
  WL_RETURN_IF_ERROR(AtLeast(d->alarm1_minor, 0, prefix + "alarm1_minor"));
  WL_RETURN_IF_ERROR(AtLeast(d->alarm2_minor, 0, prefix + "alarm2_minor"));
  return AtLeast(d->hoarding_cap_minor, 0, prefix + "hoarding_cap_minor");
}

Status In(const v1::EntryLink& w, std::string_view, EntryLink* d) {
  WL_RETURN_IF_ERROR(FromWire(w, d));
  // Absent in events written before links carried it: not known (see kLatestEntryTimeUnknown).
  if (!w.has_latest_time_us()) d->latest_time_us = kLatestEntryTimeUnknown;
  return Status::Ok();
}

bool IsSystemAccount(std::string_view name) {
  return std::find(std::begin(sys::kAll), std::end(sys::kAll), name) != std::end(sys::kAll);
}

// A posting read back must be one the ledger could have written: Apply crashes (rightly) on an
// unbalanced posting or an unknown system account, so such bytes must stop here.
Status In(const v1::Posting& w, std::string_view field, Posting* d) {
  __int128 sum = 0;
  d->legs.clear();
  d->legs.reserve(static_cast<std::size_t>(w.legs_size()));
  for (const v1::Leg& leg : w.legs()) {
    if (leg.account().empty()) {
      return InvalidArgument(std::string(field) + " has a leg without an account");
    }
    if (leg.system() && !IsSystemAccount(leg.account())) {
      return InvalidArgument(std::string(field) + " names an unknown system account \"" +
                             leg.account() + "\"");
    }
    sum += leg.delta_minor();
    d->legs.push_back(Leg{leg.system(), leg.account(), leg.delta_minor()});
  }
  if (sum != 0) return InvalidArgument(std::string(field) + " legs do not sum to zero");
  return Status::Ok();
}

template <typename D, typename P>
Status FromWire(const P& p, D* d) {
#define WL_CODEC_GET(f) \
  if constexpr (requires { d->f; }) WL_RETURN_IF_ERROR(In(p.f(), #f, &d->f));
  WL_CODEC_SCALARS(WL_CODEC_GET)
  WL_CODEC_COMPOSITES(WL_CODEC_GET)
#undef WL_CODEC_GET
  return Status::Ok();
}

#undef WL_CODEC_SCALARS
#undef WL_CODEC_COMPOSITES

// ---------------------------------------------------------------------------------------------
// Events

// The 16 domain events; each has a message of the same name in wattledger.ledger.v1.
#define WL_CODEC_EVENTS(X)                                                                     \
  X(AccountOpened) X(MeterAttached) X(MeterDetached) X(LimitsChanged) X(AccountSuspended)    \
  X(AccountResumed) X(OwnershipTransferred) X(AccountClosed) X(ToppedUp) X(Refunded)         \
  X(Reversed) X(Adjusted) X(Charged) X(LevelChanged) X(SupplyCutRequired)                    \
  X(SupplyRestoreAllowed)

template <typename D>
struct WireOf;
#define WL_CODEC_WIRE_OF(T) \
  template <>               \
  struct WireOf<T> {        \
    using type = v1::T;     \
  };
WL_CODEC_EVENTS(WL_CODEC_WIRE_OF)
#undef WL_CODEC_WIRE_OF
static_assert(std::variant_size_v<Event> == 16, "a new event needs a line in WL_CODEC_EVENTS");

// What the message cannot say about a decoded event: ranges the domain guarantees when it
// writes one, so a violation means corrupt or foreign bytes.
template <typename D>
Status CheckEvent(const D& e) {
  WL_RETURN_IF_ERROR(Required(e.txn_id, "txn_id"));
  WL_RETURN_IF_ERROR(Required(e.account_id, "account_id"));
  constexpr bool kPositiveAmount =
      std::is_same_v<D, ToppedUp> || std::is_same_v<D, Refunded> || std::is_same_v<D, Charged>;
  if constexpr (kPositiveAmount) WL_RETURN_IF_ERROR(AtLeast(e.amount_minor, 1, "amount_minor"));
  if constexpr (std::is_same_v<D, Adjusted>) {
    if (e.amount_minor == 0) return InvalidArgument("amount_minor must not be 0");
  }
  if constexpr (std::is_same_v<D, ToppedUp>) {
    WL_RETURN_IF_ERROR(AtLeast(e.purchase_count, 1, "purchase_count"));
  }
  if constexpr (std::is_same_v<D, AccountOpened>) {
    if (e.meters.empty()) return InvalidArgument("meters must name at least one meter");
  }
  if constexpr (requires { e.settlement_refund_minor; }) {
    WL_RETURN_IF_ERROR(AtLeast(e.settlement_refund_minor, 0, "settlement_refund_minor"));
  }
  if constexpr (requires { e.arrears_minor; }) {
    WL_RETURN_IF_ERROR(AtLeast(e.arrears_minor, 0, "arrears_minor"));
  }
  if constexpr (requires { e.energy_wh; }) WL_RETURN_IF_ERROR(AtLeast(e.energy_wh, 0, "energy_wh"));
  if constexpr (requires { e.link; }) {
    // Only an event that moves the tenant's money makes an entry; another one with a link would
    // fold the same as without it.
    if (!MakesEntryOf(e) && e.link != EntryLink{}) return InvalidArgument("link must be empty: the event moves no money");
  }
  return Status::Ok();
}

template <typename D>
Result<Event> Decode(std::string_view payload) {
  using P = typename WireOf<D>::type;
  P p;
  if (payload.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !p.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return InvalidArgument(P::descriptor()->full_name() + " payload does not parse (" +
                           std::to_string(payload.size()) + " bytes)");
  }
  D d;
  Status s = FromWire(p, &d);
  if (s.ok()) s = CheckEvent(d);
  if (!s.ok()) return InvalidArgument(P::descriptor()->full_name() + ": " + s.message());
  return Event(std::move(d));
}

// ---------------------------------------------------------------------------------------------
// Requests

// The part every operator command shares: a required operator, for commands on an account a
// required account id, and the free-text reason where there is one.
template <typename C, typename R>
Result<C> OperatorCommand(const R& r) {
  WL_RETURN_IF_ERROR(Required(r.operator_id(), "operator_id"));
  C c;
  c.operator_id = r.operator_id();
  if constexpr (requires { c.account_id; }) {
    WL_RETURN_IF_ERROR(Required(r.account_id(), "account_id"));
    c.account_id = r.account_id();
  }
  if constexpr (requires { c.reason; }) c.reason = r.reason();
  return c;
}

template <typename R, typename C>
void CopyLimitOverrides(const R& r, C* c) {
  if (r.has_credit_limit_minor()) c->credit_limit_minor = r.credit_limit_minor();
  if (r.has_alarm1_minor()) c->alarm1_minor = r.alarm1_minor();
  if (r.has_alarm2_minor()) c->alarm2_minor = r.alarm2_minor();
  if (r.has_hoarding_cap_minor()) c->hoarding_cap_minor = r.hoarding_cap_minor();
}

template <typename C>
Result<C> MeterCommand(const v1::MeterRequest& r) {
  WL_ASSIGN_OR_RETURN(C c, OperatorCommand<C>(r));
  WL_RETURN_IF_ERROR(Required(r.meter_id(), "meter_id"));
  c.meter_id = r.meter_id();
  return c;
}

// For payouts that usually are cash (close, settled transfer) the method may be left out.
Result<PaymentMethod> MethodOrCash(v1::PaymentMethod m) {
  if (m == v1::PAYMENT_METHOD_UNSPECIFIED) return PaymentMethod::kCash;
  return FromProto(m, "method");
}

// Top-ups and refunds move money through a channel, which the operator must name.
template <typename C, typename R>
Result<C> PaymentCommand(const R& r) {
  WL_ASSIGN_OR_RETURN(C c, OperatorCommand<C>(r));
  WL_RETURN_IF_ERROR(Required(r.idempotency_key(), "idempotency_key"));
  WL_ASSIGN_OR_RETURN(c.method, FromProto(r.method(), "method"));
  c.idempotency_key = r.idempotency_key();
  c.amount_minor = r.amount_minor();
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Public API

std::optional<std::string> NonUtf8Field(const google::protobuf::Message& m) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  auto bad = [](const std::string& s) { return !IsUtf8(s); };
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      std::string scratch;  // Unused unless the field is not stored as a std::string.
      if (!f->is_repeated()) {
        if (bad(r->GetStringReference(m, f, &scratch))) return f->name();
        continue;
      }
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        if (bad(r->GetRepeatedStringReference(m, f, j, &scratch))) {
          return f->name() + "[" + std::to_string(j) + "]";
        }
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!f->is_repeated()) {
        if (!r->HasField(m, f)) continue;
        if (auto inner = NonUtf8Field(r->GetMessage(m, f))) return f->name() + "." + *inner;
        continue;
      }
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        if (auto inner = NonUtf8Field(r->GetRepeatedMessage(m, f, j))) {
          return f->name() + "[" + std::to_string(j) + "]." + *inner;
        }
      }
    }
  }
  return std::nullopt;
}

Encoded EncodeEvent(const Event& e) {
  return std::visit(
      [](const auto& ev) {
        using P = typename WireOf<std::decay_t<decltype(ev)>>::type;
        // One message per type and thread, reused: every event of a batch is encoded on its
        // writer, and a fresh message would allocate each of its strings, sub-messages and legs
        // again. Not cleared first (Clear() would delete the sub-messages): ToWire sets every
        // field the event has, and EveryWireFieldIsSet checks that the event has every field.
        thread_local P p;
        ToWire(ev, &p);
        return Encoded{P::descriptor()->full_name(), p.SerializeAsString()};
      },
      e);
}

Result<Event> DecodeEvent(std::string_view type, std::string_view payload) {
#define WL_CODEC_DECODE(T) \
  if (type == v1::T::descriptor()->full_name()) return Decode<T>(payload);
  WL_CODEC_EVENTS(WL_CODEC_DECODE)
#undef WL_CODEC_DECODE
  std::string shown(type.substr(0, 128));
  if (type == kRejectedType) {
    return InvalidArgument(shown + " records a rejected command, not a ledger event");
  }
  return InvalidArgument("unknown ledger event type \"" + shown + "\"");
}

bool IsLedgerEventType(std::string_view type) {
#define WL_CODEC_IS(T) \
  if (type == v1::T::descriptor()->full_name()) return true;
  WL_CODEC_EVENTS(WL_CODEC_IS)
#undef WL_CODEC_IS
  return false;
}

#undef WL_CODEC_EVENTS

v1::PaymentMethod ToProto(PaymentMethod m) { return EnumToWire(kMethods, m); }
Result<PaymentMethod> FromProto(v1::PaymentMethod m, std::string_view field) {
  return EnumFromWire(kMethods, m, field);
}
v1::Mode ToProto(Mode m) { return EnumToWire(kModes, m); }
Result<Mode> FromProto(v1::Mode m, std::string_view field) {
  return EnumFromWire(kModes, m, field);
}
v1::Level ToProto(Level l) { return EnumToWire(kLevels, l); }
Result<Level> FromProto(v1::Level l, std::string_view field) { return EnumFromWire(kLevels, l, field); }
v1::AccountState ToProto(AccountState s) { return EnumToWire(kStates, s); }
Result<AccountState> FromProto(v1::AccountState s, std::string_view field) {
  return EnumFromWire(kStates, s, field);
}
v1::TxnKind ToProto(TxnKind k) { return EnumToWire(kKinds, k); }

void ToProto(const Account& a, v1::Account* out) {
  ToWire(a, out);
  out->set_account_id(a.id);  // The only field named differently; entries are served separately.
}
void ToProto(const Account& a, v1::AccountBalance* out) {
  out->set_account_id(a.id);
  out->set_balance_minor(a.balance_minor);
  out->set_level(ToProto(a.level));
  out->set_purchase_count(a.purchase_count);
  out->set_supply_cut(a.supply_cut);
}
v1::Account ToProto(const Account& a) {
  v1::Account p;
  ToProto(a, &p);
  return p;
}
v1::StatementEntry ToProto(const StatementEntry& e) { return ToWire<v1::StatementEntry>(e); }
v1::Transaction ToProto(const TxnRecord& t) { return ToWire<v1::Transaction>(t); }
v1::Limits ToProto(const Limits& l) { return ToWire<v1::Limits>(l); }

v1::Posting ToProto(const Posting& p) {
  v1::Posting w;
  Put(p, &w);
  return w;
}

Result<OpenAccount> FromProto(const v1::OpenAccountRequest& r) {
  WL_ASSIGN_OR_RETURN(OpenAccount c, OperatorCommand<OpenAccount>(r));
  WL_ASSIGN_OR_RETURN(c.mode, FromProto(r.mode(), "mode"));
  c.customer_name = r.customer_name();
  c.phones.assign(r.phones().begin(), r.phones().end());
  c.room = r.room();
  c.meters.assign(r.meters().begin(), r.meters().end());
  c.tariff_id = r.tariff_id();
  CopyLimitOverrides(r, &c);
  c.opening_balance_minor = r.opening_balance_minor();
  c.opening_balance_source = r.opening_balance_source();
  return c;
}

Result<AttachMeter> AttachFromProto(const v1::MeterRequest& r) {
  return MeterCommand<AttachMeter>(r);
}

Result<DetachMeter> DetachFromProto(const v1::MeterRequest& r) {
  return MeterCommand<DetachMeter>(r);
}

Result<SetLimits> FromProto(const v1::SetLimitsRequest& r) {
  WL_ASSIGN_OR_RETURN(SetLimits c, OperatorCommand<SetLimits>(r));
  CopyLimitOverrides(r, &c);
  return c;
}

Result<Suspend> FromProto(const v1::SuspendRequest& r) {
  return OperatorCommand<Suspend>(r);
}

Result<Resume> FromProto(const v1::ResumeRequest& r) {
  return OperatorCommand<Resume>(r);
}

Result<TransferOwnership> FromProto(const v1::TransferRequest& r) {
  WL_ASSIGN_OR_RETURN(TransferOwnership c, OperatorCommand<TransferOwnership>(r));
  WL_ASSIGN_OR_RETURN(c.method, MethodOrCash(r.method()));
  c.new_customer_name = r.new_customer_name();
  c.new_phones.assign(r.new_phones().begin(), r.new_phones().end());
  c.settle = r.settle();
  return c;
}

Result<CloseAccount> FromProto(const v1::CloseAccountRequest& r) {
  WL_ASSIGN_OR_RETURN(CloseAccount c, OperatorCommand<CloseAccount>(r));
  WL_ASSIGN_OR_RETURN(c.method, MethodOrCash(r.method()));
  return c;
}

Result<TopUp> FromProto(const v1::TopUpRequest& r) {
  WL_ASSIGN_OR_RETURN(TopUp c, PaymentCommand<TopUp>(r));
  if (r.has_expected_purchase_count()) {
    // A purchase count counts top-ups from 1: any other is a malformed request, not a mismatch.
    WL_RETURN_IF_ERROR(AtLeast(r.expected_purchase_count(), 1, "expected_purchase_count"));
    c.expected_purchase_count = r.expected_purchase_count();
  }
  return c;
}

Result<Refund> FromProto(const v1::RefundRequest& r) {
  return PaymentCommand<Refund>(r);
}

Result<Reverse> FromProto(const v1::ReverseRequest& r) {
  WL_ASSIGN_OR_RETURN(Reverse c, OperatorCommand<Reverse>(r));
  WL_RETURN_IF_ERROR(Required(r.original_txn_id(), "original_txn_id"));
  c.original_txn_id = r.original_txn_id();
  c.idempotency_key = r.idempotency_key();  // Optional: one reversal per original anyway.
  return c;
}

Result<Adjust> FromProto(const v1::AdjustRequest& r) {
  WL_ASSIGN_OR_RETURN(Adjust c, OperatorCommand<Adjust>(r));
  WL_RETURN_IF_ERROR(Required(r.idempotency_key(), "idempotency_key"));
  c.idempotency_key = r.idempotency_key();
  c.amount_minor = r.amount_minor();
  return c;
}

Result<Charge> ChargeFromUsage(billing::v1::UsageCharged* u, std::string txn_id, int64_t time_us) {
  WL_RETURN_IF_ERROR(Required(u->charge_id(), "charge_id"));
  WL_RETURN_IF_ERROR(Required(u->account_id(), "account_id"));
  WL_RETURN_IF_ERROR(AtLeast(u->amount_minor(), 1, "amount_minor"));
  WL_RETURN_IF_ERROR(AtLeast(u->energy_wh(), 0, "energy_wh"));
  // Each id is a heap block when longer than 15 bytes, as the fleet's are: moved, not copied.
  return Charge{std::move(txn_id),
                time_us,
                std::move(*u->mutable_charge_id()),
                std::move(*u->mutable_account_id()),
                u->amount_minor(),
                u->energy_wh(),
                std::move(*u->mutable_meter_id()),
                std::move(*u->mutable_reading_id()),
                std::move(*u->mutable_tariff_id()),
                u->tariff_version()};
}

std::optional<std::string_view> UsageAccountIdOf(std::string_view payload) {
  using google::protobuf::internal::WireFormatLite;
  constexpr int kAccountIdField = billing::v1::UsageCharged::kAccountIdFieldNumber;
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(payload.data()),
                                           static_cast<int>(payload.size()));
  std::optional<std::string_view> account;
  while (uint32_t tag = in.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == kAccountIdField &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      uint32_t size = 0;
      if (!in.ReadVarint32(&size)) return std::nullopt;
      if (size == 0) {  // At the payload's end no buffer is left to point into.
        account = std::string_view();
        continue;
      }
      const void* data = nullptr;
      int available = 0;
      if (!in.GetDirectBufferPointer(&data, &available) || static_cast<uint32_t>(available) < size) {
        return std::nullopt;
      }
      account = std::string_view(static_cast<const char*>(data), size);
      if (!in.Skip(static_cast<int>(size))) return std::nullopt;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return std::nullopt;
    }
  }
  if (!in.ConsumedEntireMessage() || in.CurrentPosition() != static_cast<int>(payload.size())) return std::nullopt;
  return account.value_or(std::string_view());
}

}  // namespace wattledger::ledger::adapters
