#include "services/ledger/domain/snapshot.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "services/ledger/domain/ledger.h"
#include "wattledger/base/check.h"

namespace wattledger::ledger {

// ---- SnapshotWriter ----

SnapshotWriter::SnapshotWriter(std::function<void(std::string_view)> sink, size_t buffer_bytes)
    : sink_(std::move(sink)), buffer_bytes_(std::max<size_t>(buffer_bytes, 64)) {
  buf_.reserve(buffer_bytes_ + 16);
}

void SnapshotWriter::FlushIfFull() {
  if (buf_.size() < buffer_bytes_) return;
  Finish();
}

void SnapshotWriter::U64(uint64_t v) {
  while (v >= 0x80) {
    buf_ += static_cast<char>(v | 0x80);
    v >>= 7;
  }
  buf_ += static_cast<char>(v);
  FlushIfFull();
}

void SnapshotWriter::I64(int64_t v) {
  U64((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63));  // Zigzag.
}

void SnapshotWriter::Byte(uint8_t v) {
  buf_ += static_cast<char>(v);
  FlushIfFull();
}

void SnapshotWriter::Str(std::string_view v) {
  U64(v.size());
  if (v.size() >= buffer_bytes_) {  // Too large to buffer: straight through, after what is buffered.
    Finish();
    written_ += v.size();
    sink_(v);
    return;
  }
  buf_.append(v);
  FlushIfFull();
}

void SnapshotWriter::Finish() {
  if (buf_.empty()) return;
  written_ += buf_.size();
  sink_(buf_);
  buf_.clear();
}

// ---- SnapshotReader ----

SnapshotReader::SnapshotReader(std::function<size_t(char* dst, size_t max)> source, size_t buffer_bytes)
    : source_(std::move(source)), buffer_bytes_(std::max<size_t>(buffer_bytes, 64)) {}

bool SnapshotReader::Fail(std::string what) {
  if (error_.ok()) error_ = DataLoss(std::move(what) + " (at byte " + std::to_string(consumed_) + ")");
  return false;
}

bool SnapshotReader::Fill(size_t want) {
  if (buf_.size() - pos_ >= want) return true;
  buf_.erase(0, pos_);
  pos_ = 0;
  while (buf_.size() < want && !ended_) {
    const size_t have = buf_.size();
    const size_t ask = std::max(want - have, buffer_bytes_);
    buf_.resize(have + ask);
    const size_t got = source_(buf_.data() + have, ask);
    buf_.resize(have + got);
    if (got == 0) ended_ = true;
  }
  return buf_.size() >= want;
}

bool SnapshotReader::U64(uint64_t* v) {
  if (!error_.ok()) return false;
  uint64_t out = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (!Fill(1)) return Fail("the checkpoint ends inside a number");
    const auto byte = static_cast<uint8_t>(buf_[pos_++]);
    consumed_++;
    if (shift == 63 && byte > 1) return Fail("a number is longer than 64 bits");
    out |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = out;
      return true;
    }
  }
  return Fail("a number is longer than 64 bits");
}

bool SnapshotReader::I64(int64_t* v) {
  uint64_t u = 0;
  if (!U64(&u)) return false;
  *v = static_cast<int64_t>((u >> 1) ^ (~(u & 1) + 1));  // Zigzag back.
  return true;
}

bool SnapshotReader::Byte(uint8_t* v) {
  if (!error_.ok()) return false;
  if (!Fill(1)) return Fail("the checkpoint ends early");
  *v = static_cast<uint8_t>(buf_[pos_++]);
  consumed_++;
  return true;
}

bool SnapshotReader::Str(std::string* v, size_t max_bytes) {
  uint64_t n = 0;
  if (!U64(&n)) return false;
  if (n > max_bytes) return Fail("a text of " + std::to_string(n) + " bytes, over the " + std::to_string(max_bytes) + " allowed");
  if (!Fill(static_cast<size_t>(n))) return Fail("the checkpoint ends inside a text");
  v->assign(buf_, pos_, static_cast<size_t>(n));
  pos_ += static_cast<size_t>(n);
  consumed_ += n;
  return true;
}

bool SnapshotReader::Count(uint64_t* v, uint64_t max) {
  if (!U64(v)) return false;
  if (*v > max) return Fail("a count of " + std::to_string(*v) + ", over the " + std::to_string(max) + " allowed");
  return true;
}

bool SnapshotReader::AtEnd() {
  if (!error_.ok()) return false;
  if (Fill(1)) return Fail("bytes follow the end of the state");
  return true;
}

// ---- Ledger::Save / Load ----
//
// Every field of the state, in the order the structs declare them. A field added to Account,
// TxnRecord, EntryTxn, Limits, Leg, Posting or LedgerState must be added to both sides here: the
// sizes below stop the build until it is (update them once it is), and the round-trip tests
// compare whole states.

static_assert(sizeof(Account) == 296, "Account changed: save and load the new field below, then update this size");
static_assert(sizeof(TxnRecord) == 272, "TxnRecord changed: save and load the new field below, then update this size");
static_assert(sizeof(EntryTxn) == 48, "EntryTxn changed: save and load the new field below, then update this size");
static_assert(sizeof(Limits) == 32, "Limits changed: save and load the new field below, then update this size");
static_assert(sizeof(Posting) == 24, "Posting changed: save and load the new field below, then update this size");
static_assert(sizeof(LedgerState) == 49392, "LedgerState changed: save and load the new field below, then update this size");
static_assert(sizeof(Leg) == 48, "Leg changed: save and load the new field below, then update this size");

namespace {

constexpr uint8_t kStateFormat = 1;

void SaveStrings(SnapshotWriter& out, const std::vector<std::string>& v) {
  out.U64(v.size());
  for (const std::string& s : v) out.Str(s);
}

bool LoadStrings(SnapshotReader& in, std::vector<std::string>* v) {
  uint64_t n = 0;
  if (!in.Count(&n, 1 << 16)) return false;
  v->resize(static_cast<size_t>(n));
  for (std::string& s : *v) {
    if (!in.Str(&s)) return false;
  }
  return true;
}

template <typename E>
bool LoadEnum(SnapshotReader& in, E* v, E last, std::string_view what) {
  uint8_t b = 0;
  if (!in.Byte(&b)) return false;
  if (b > static_cast<uint8_t>(last)) return in.Fail(std::string(what) + " " + std::to_string(b) + " is not one this build knows");
  *v = static_cast<E>(b);
  return true;
}

bool LoadBool(SnapshotReader& in, bool* v) {
  uint8_t b = 0;
  if (!in.Byte(&b)) return false;
  if (b > 1) return in.Fail("a flag of " + std::to_string(b));
  *v = b == 1;
  return true;
}

void SaveAccount(SnapshotWriter& out, const Account& a) {
  out.Str(a.id);
  SaveStrings(out, a.meters);
  out.Byte(static_cast<uint8_t>(a.mode));
  out.Byte(static_cast<uint8_t>(a.state));
  out.I64(a.limits.credit_limit_minor);
  out.I64(a.limits.alarm1_minor);
  out.I64(a.limits.alarm2_minor);
  out.I64(a.limits.hoarding_cap_minor);
  out.I64(a.balance_minor);
  out.I64(a.purchase_count);
  out.Byte(static_cast<uint8_t>(a.level));
  out.Byte(a.supply_cut ? 1 : 0);
  out.U64(a.last_entry_seq);
  out.I64(a.latest_entry_time_us);
  out.Str(a.customer_name);
  SaveStrings(out, a.phones);
  out.Str(a.room);
  out.Str(a.tariff_id);
  out.Str(a.opened_txn_id);
  out.U64(a.owner_since_seq);
}

bool LoadAccount(SnapshotReader& in, Account* a) {
  return in.Str(&a->id) && LoadStrings(in, &a->meters) && LoadEnum(in, &a->mode, Mode::kPostpaid, "mode") &&
         LoadEnum(in, &a->state, AccountState::kClosedWithArrears, "account state") &&
         in.I64(&a->limits.credit_limit_minor) && in.I64(&a->limits.alarm1_minor) &&
         in.I64(&a->limits.alarm2_minor) && in.I64(&a->limits.hoarding_cap_minor) && in.I64(&a->balance_minor) &&
         in.I64(&a->purchase_count) && LoadEnum(in, &a->level, Level::kCutoff, "level") &&
         LoadBool(in, &a->supply_cut) && in.U64(&a->last_entry_seq) && in.I64(&a->latest_entry_time_us) &&
         in.Str(&a->customer_name) && LoadStrings(in, &a->phones) && in.Str(&a->room) && in.Str(&a->tariff_id) &&
         in.Str(&a->opened_txn_id) && in.U64(&a->owner_since_seq);
}

void SaveTxn(SnapshotWriter& out, const TxnRecord& t) {
  out.Str(t.txn_id);
  out.Byte(static_cast<uint8_t>(t.kind));
  out.Str(t.account_id);
  out.I64(t.time_us);
  out.I64(t.amount_minor);
  out.Str(t.operator_id);
  out.Str(t.reason);
  out.Str(t.idempotency_key);
  out.Str(t.original_txn_id);
  out.Str(t.reversed_by);
  out.U64(t.posting.legs.size());
  for (const Leg& l : t.posting.legs) {
    out.Byte(l.system ? 1 : 0);
    out.Str(l.account);
    out.I64(l.delta_minor);
  }
}

bool LoadTxn(SnapshotReader& in, TxnRecord* t) {
  uint64_t legs = 0;
  if (!(in.Str(&t->txn_id) && LoadEnum(in, &t->kind, TxnKind::kCharge, "txn kind") && in.Str(&t->account_id) &&
        in.I64(&t->time_us) && in.I64(&t->amount_minor) && in.Str(&t->operator_id) && in.Str(&t->reason) &&
        in.Str(&t->idempotency_key) && in.Str(&t->original_txn_id) && in.Str(&t->reversed_by) &&
        in.Count(&legs, 1 << 10))) {
    return false;
  }
  t->posting.legs.resize(static_cast<size_t>(legs));
  for (Leg& l : t->posting.legs) {
    if (!(LoadBool(in, &l.system) && in.Str(&l.account) && in.I64(&l.delta_minor))) return false;
  }
  return true;
}

void SaveKeys(SnapshotWriter& out, const KeyTable& keys) {
  out.U64(keys.size());
  keys.ForEach([&](const KeyTable::Entry& e) {
    out.Str(e.key);
    out.Str(e.txn_id);
    out.U64(e.fingerprint);
  });
}

bool LoadKeys(SnapshotReader& in, KeyTable* keys, std::string_view what) {
  uint64_t n = 0;
  if (!in.Count(&n)) return false;
  std::string key;
  std::string txn;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t fingerprint = 0;
    if (!(in.Str(&key) && in.Str(&txn) && in.U64(&fingerprint))) return false;
    if (!keys->emplace(key, txn, fingerprint)) return in.Fail(std::string(what) + " '" + key + "' is held twice");
  }
  return true;
}

// What a fold makes sure of as it goes and Invariants() does not check: what each txn, key and
// reversal names is there, and each txn's legs sum to zero. (A txn naming no account would crash
// the first Decide that looked it up.)
Status ReferencesHold(const LedgerState& s) {
  auto account = [&](std::string_view id) { return s.accounts.contains(id); };
  auto txn = [&](std::string_view id) { return s.txns.contains(id) || s.entry_txns.contains(id); };
  for (const auto& [id, t] : s.txns) {
    if (!account(t.account_id)) return DataLoss("txn " + id + " names account " + t.account_id + ", which is not held");
    __int128 sum = 0;
    for (const Leg& l : t.posting.legs) {
      if (l.system ? !s.system_balances.contains(l.account) : !account(l.account)) {
        return DataLoss("txn " + id + " posts to " + (l.system ? "system account " : "account ") + l.account +
                        ", which is not held");
      }
      sum += l.delta_minor;
    }
    if (sum != 0) return DataLoss("the legs of txn " + id + " do not sum to zero");
    if (!t.reversed_by.empty() && !txn(t.reversed_by)) {
      return DataLoss("txn " + id + " is reversed by " + t.reversed_by + ", which is not held");
    }
  }
  Status bad;
  s.entry_txns.ForEach([&](std::string_view id, const EntryTxn& t) {
    if (bad.ok() && !account(t.account_id)) {
      bad = DataLoss("entry txn " + std::string(id) + " names account " + t.account_id + ", which is not held");
    }
  });
  WL_RETURN_IF_ERROR(bad);
  for (const KeyTable* keys : {&s.idempotency_keys, &s.charges}) {
    keys->ForEach([&](const KeyTable::Entry& e) {
      if (bad.ok() && !txn(e.txn_id)) {
        bad = DataLoss("key '" + std::string(e.key) + "' took effect as txn " + std::string(e.txn_id) +
                       ", which is not held");
      }
    });
    WL_RETURN_IF_ERROR(bad);
  }
  for (const auto& [id, by] : s.entry_reversed_by) {
    if (!txn(by)) return DataLoss("entry txn " + id + " is reversed by " + by + ", which is not held");
  }
  return Status::Ok();
}

}  // namespace

void Ledger::Save(SnapshotWriter& out) const {
  out.Byte(kStateFormat);
  out.U64(state_.accounts.size());
  for (const auto& [id, a] : state_.accounts) SaveAccount(out, a);
  out.U64(state_.system_balances.size());
  for (const auto& [name, balance] : state_.system_balances) {
    out.Str(name);
    out.I64(balance);
  }
  out.U64(state_.meter_owner.size());
  for (const auto& [meter, owner] : state_.meter_owner) {
    out.Str(meter);
    out.Str(owner);
  }
  out.U64(state_.txns.size());
  for (const auto& [id, t] : state_.txns) SaveTxn(out, t);
  out.U64(state_.entry_txns.size());
  state_.entry_txns.ForEach([&](std::string_view id, const EntryTxn& t) {
    out.Str(id);
    out.Str(t.account_id);
    out.I64(t.amount_minor);
    out.Byte(t.system);
    out.Byte(t.kind);
  });
  out.U64(state_.entry_reversed_by.size());
  for (const auto& [id, by] : state_.entry_reversed_by) {
    out.Str(id);
    out.Str(by);
  }
  SaveKeys(out, state_.idempotency_keys);
  SaveKeys(out, state_.charges);
  out.I64(state_.total_minor);
  out.I64(state_.tenant_total_minor);
}

Result<std::unique_ptr<Ledger>> Ledger::Load(SnapshotReader& in, LedgerConfig config) {
  auto ledger = std::make_unique<Ledger>(config);
  LedgerState& s = ledger->state_;
  auto failed = [&]() -> Status {
    WL_CHECK(!in.error().ok());
    return in.error();
  };
  uint8_t format = 0;
  if (!in.Byte(&format)) return failed();
  if (format != kStateFormat) {
    in.Fail("state format " + std::to_string(format) + ", where this build writes " + std::to_string(kStateFormat));
    return failed();
  }
  uint64_t n = 0;
  if (!in.Count(&n)) return failed();
  for (uint64_t i = 0; i < n; ++i) {
    Account a;
    if (!LoadAccount(in, &a)) return failed();
    const std::string key = a.id;
    if (!in.error().ok() || !s.accounts.emplace(key, std::move(a)).second) {
      in.Fail("account " + key + " is held twice");
      return failed();
    }
  }
  // Every system account, and no other.
  if (!in.Count(&n, std::size(sys::kAll))) return failed();
  for (uint64_t i = 0; i < n; ++i) {
    std::string name;
    int64_t balance = 0;
    if (!(in.Str(&name) && in.I64(&balance))) return failed();
    auto it = s.system_balances.find(name);
    if (it == s.system_balances.end()) in.Fail("unknown system account '" + name + "'");
    else if (std::exchange(it->second, balance) != 0) in.Fail("system account " + name + " is held twice");
    if (!in.error().ok()) return failed();
  }
  if (!in.Count(&n)) return failed();
  for (uint64_t i = 0; i < n; ++i) {
    std::string meter;
    std::string owner;
    if (!(in.Str(&meter) && in.Str(&owner))) return failed();
    if (!s.meter_owner.emplace(meter, std::move(owner)).second) {
      in.Fail("meter " + meter + " is held twice");
      return failed();
    }
  }
  if (!in.Count(&n)) return failed();
  for (uint64_t i = 0; i < n; ++i) {
    TxnRecord t;
    if (!LoadTxn(in, &t)) return failed();
    const std::string key = t.txn_id;
    if (!s.txns.emplace(key, std::move(t)).second) {
      in.Fail("txn " + key + " is held twice");
      return failed();
    }
  }
  if (!in.Count(&n)) return failed();
  std::string id;
  for (uint64_t i = 0; i < n; ++i) {
    EntryTxn t;
    if (!(in.Str(&id) && in.Str(&t.account_id) && in.I64(&t.amount_minor) && in.Byte(&t.system) &&
          in.Byte(&t.kind))) {
      return failed();
    }
    if (t.system >= std::size(sys::kAll)) in.Fail("entry txn " + id + " names system account " + std::to_string(t.system));
    else if (t.kind > static_cast<uint8_t>(TxnKind::kCharge)) in.Fail("entry txn " + id + " is of kind " + std::to_string(t.kind));
    else if (t.account_id.empty()) in.Fail("entry txn " + id + " names no account");
    else if (s.txns.contains(id) || !s.entry_txns.emplace(id, std::move(t))) in.Fail("txn " + id + " is held twice");
    if (!in.error().ok()) return failed();
  }
  if (!in.Count(&n)) return failed();
  for (uint64_t i = 0; i < n; ++i) {
    std::string by;
    if (!(in.Str(&id) && in.Str(&by))) return failed();
    if (!s.entry_txns.contains(id)) in.Fail("a reversal of " + id + ", which is not an entry txn");
    else if (!s.entry_reversed_by.emplace(id, std::move(by)).second) in.Fail("entry txn " + id + " is reversed twice");
    if (!in.error().ok()) return failed();
  }
  if (!LoadKeys(in, &s.idempotency_keys, "idempotency key") || !LoadKeys(in, &s.charges, "charge id") ||
      !in.I64(&s.total_minor) || !in.I64(&s.tenant_total_minor) || !in.AtEnd()) {
    return failed();
  }
  // The marks follow from the txns: each was raised by the txn ids recorded, and only by them.
  for (const auto& [txn_id, t] : s.txns) ledger->RaiseTxnIdMark(txn_id);
  s.entry_txns.ForEach([&](std::string_view txn_id, const EntryTxn&) { ledger->RaiseTxnIdMark(txn_id); });
  if (Status held = ledger->Invariants(); !held.ok()) {
    return DataLoss("the checkpoint's state breaks an invariant: " + held.message());
  }
  if (Status held = ReferencesHold(s); !held.ok()) return DataLoss("the checkpoint's state does not hold together: " + held.message());
  return ledger;
}

std::string SaveToString(const Ledger& ledger, size_t buffer_bytes) {
  std::string bytes;
  SnapshotWriter out([&](std::string_view chunk) { bytes.append(chunk); }, buffer_bytes);
  ledger.Save(out);
  out.Finish();
  return bytes;
}

Result<std::unique_ptr<Ledger>> LoadFromString(std::string_view bytes, const LedgerConfig& config,
                                               size_t buffer_bytes) {
  size_t at = 0;
  SnapshotReader in(
      [&](char* dst, size_t max) {
        const size_t n = std::min(max, bytes.size() - at);
        std::memcpy(dst, bytes.data() + at, n);
        at += n;
        return n;
      },
      buffer_bytes);
  return Ledger::Load(in, config);
}

}  // namespace wattledger::ledger
