#include "services/ledger/domain/types.h"

namespace wattledger::ledger {

std::string_view ModeName(Mode m) {
  switch (m) {
    case Mode::kPrepaid: return "prepaid";
    case Mode::kPostpaid: return "postpaid";
  }
  return "?";
}

std::string_view AccountStateName(AccountState s) {
  switch (s) {
    case AccountState::kOpen: return "open";
    case AccountState::kSuspended: return "suspended";
    case AccountState::kClosed: return "closed";
    case AccountState::kClosedWithArrears: return "closed_with_arrears";
  }
  return "?";
}

std::string_view LevelName(Level l) {
  switch (l) {
    case Level::kNormal: return "normal";
    case Level::kAlarm1: return "alarm1";
    case Level::kAlarm2: return "alarm2";
    case Level::kArrears: return "arrears";
    case Level::kCutoff: return "cutoff";
  }
  return "?";
}

std::string_view PaymentMethodName(PaymentMethod m) {
  switch (m) {
    case PaymentMethod::kCash: return "cash";
    case PaymentMethod::kWechat: return "wechat";
    case PaymentMethod::kAlipay: return "alipay";
    case PaymentMethod::kBank: return "bank";
    case PaymentMethod::kPlatform: return "platform";
  }
  return "?";
}

std::string_view TxnKindName(TxnKind k) {
  switch (k) {
    case TxnKind::kOpen: return "open";
    case TxnKind::kAttachMeter: return "attach_meter";
    case TxnKind::kDetachMeter: return "detach_meter";
    case TxnKind::kSetLimits: return "set_limits";
    case TxnKind::kSuspend: return "suspend";
    case TxnKind::kResume: return "resume";
    case TxnKind::kTransfer: return "transfer";
    case TxnKind::kClose: return "close";
    case TxnKind::kTopUp: return "top_up";
    case TxnKind::kRefund: return "refund";
    case TxnKind::kReversal: return "reversal";
    case TxnKind::kAdjustment: return "adjustment";
    case TxnKind::kCharge: return "charge";
  }
  return "?";
}

std::optional<PaymentMethod> ParsePaymentMethod(std::string_view name) {
  for (PaymentMethod m : {PaymentMethod::kCash, PaymentMethod::kWechat, PaymentMethod::kAlipay,
                          PaymentMethod::kBank, PaymentMethod::kPlatform}) {
    if (PaymentMethodName(m) == name) return m;
  }
  return std::nullopt;
}

std::optional<Mode> ParseMode(std::string_view name) {
  if (name == "prepaid") return Mode::kPrepaid;
  if (name == "postpaid") return Mode::kPostpaid;
  return std::nullopt;
}

std::string_view ChannelAccount(PaymentMethod m) {
  // The channel accounts are named like the methods.
  return PaymentMethodName(m);
}

Level LevelFor(int64_t balance_minor, const Limits& limits) {
  if (balance_minor < -limits.credit_limit_minor) return Level::kCutoff;
  if (balance_minor < 0) return Level::kArrears;
  if (balance_minor <= limits.alarm2_minor) return Level::kAlarm2;
  if (balance_minor <= limits.alarm1_minor) return Level::kAlarm1;
  return Level::kNormal;
}

}  // namespace wattledger::ledger
