#include "cmd/wlctl/format.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>

#include "wattledger/money/money.h"

namespace wattledger::wlctl {

namespace pb = ::wattledger::ledger::v1;
using money::FormatYuan;

namespace {

// The proto's own name for the value, or "unknown(N)" for a value this build does not know
// (a newer server).
template <typename NameFn>
std::string Word(int value, NameFn name_fn, std::string_view prefix) {
  std::string word = EnumWord(name_fn(value), prefix);
  if (word == "unknown") word += "(" + std::to_string(value) + ")";
  return word;
}

Json Strings(const google::protobuf::RepeatedPtrField<std::string>& values) {
  Json out = Json::array();
  for (const std::string& v : values) out.push_back(v);
  return out;
}

Json PostingJson(const pb::Posting& posting) {
  Json legs = Json::array();
  for (const pb::Leg& leg : posting.legs()) {
    legs.push_back({{"system", leg.system()}, {"account", leg.account()},
                    {"delta", FormatYuan(leg.delta_minor())}});
  }
  return legs;
}

std::string Scalar(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_null()) return "";
  return v.dump();
}

// Appends the printable (key, value) pairs of object to rows; nested objects are flattened.
void Flatten(const Json& object, std::vector<std::pair<std::string, std::string>>* rows) {
  for (const auto& [key, value] : object.items()) {
    if (value.is_object()) {
      Flatten(value, rows);
    } else if (value.is_array()) {
      if (!value.empty() && value.front().is_object()) continue;
      std::string joined;
      for (const Json& item : value) {
        if (!joined.empty()) joined += ", ";
        joined += Scalar(item);
      }
      rows->emplace_back(key, joined);
    } else {
      rows->emplace_back(key, Scalar(value));
    }
  }
}

// Decodes one UTF-8 code point at *pos and advances past it; a malformed byte counts as one
// code point of its own so that widths stay finite on bad input.
char32_t NextCodePoint(std::string_view s, size_t* pos) {
  unsigned char lead = static_cast<unsigned char>(s[*pos]);
  int extra = lead < 0x80            ? 0
              : (lead >> 5) == 0x6  ? 1
              : (lead >> 4) == 0xe  ? 2
              : (lead >> 3) == 0x1e ? 3
                                    : -1;
  if (extra <= 0 || *pos + extra >= s.size()) {
    ++*pos;
    return lead;
  }
  char32_t cp = lead & (0x3f >> extra);
  for (int i = 1; i <= extra; ++i) {
    unsigned char cont = static_cast<unsigned char>(s[*pos + i]);
    if ((cont >> 6) != 0x2) {
      ++*pos;
      return lead;
    }
    cp = (cp << 6) | (cont & 0x3f);
  }
  *pos += extra + 1;
  return cp;
}

bool IsWide(char32_t cp) {
  return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0x303e) ||
         (cp >= 0x3041 && cp <= 0x33ff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
         (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0xa000 && cp <= 0xa4cf) ||
         (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
         (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
         (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
         (cp >= 0x20000 && cp <= 0x3fffd);
}

void Pad(std::ostream& out, const std::string& cell, size_t width, bool right) {
  size_t w = DisplayWidth(cell);
  std::string fill(width > w ? width - w : 0, ' ');
  if (right) {
    out << fill << cell;
  } else {
    out << cell << fill;
  }
}

Status BadTime(std::string_view text, std::string_view why) {
  return InvalidArgument("invalid time \"" + std::string(text.substr(0, 40)) + "\": " +
                         std::string(why) +
                         "; expected YYYY-MM-DD (midnight UTC) or RFC 3339 like "
                         "2026-11-01T08:30:00Z or 2026-11-01T16:30:00+08:00");
}

// Reads exactly n digits at *pos.
bool Digits(std::string_view s, size_t* pos, int n, int* value) {
  if (*pos + n > s.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    char c = s[*pos + i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *pos += n;
  *value = v;
  return true;
}

bool Expect(std::string_view s, size_t* pos, char c) {
  if (*pos >= s.size() || s[*pos] != c) return false;
  ++*pos;
  return true;
}

}  // namespace

std::string EnumWord(std::string_view proto_name, std::string_view prefix) {
  if (proto_name.empty()) return "unknown";
  if (proto_name.starts_with(prefix)) proto_name.remove_prefix(prefix.size());
  std::string out(proto_name);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string ModeWord(pb::Mode mode) {
  return Word(mode, [](int v) { return pb::Mode_Name(v); }, "MODE_");
}
std::string StateWord(pb::AccountState state) {
  return Word(state, [](int v) { return pb::AccountState_Name(v); }, "ACCOUNT_STATE_");
}
std::string LevelWord(pb::Level level) {
  return Word(level, [](int v) { return pb::Level_Name(v); }, "LEVEL_");
}
std::string KindWord(pb::TxnKind kind) {
  return Word(kind, [](int v) { return pb::TxnKind_Name(v); }, "TXN_KIND_");
}
std::string MethodWord(pb::PaymentMethod method) {
  return Word(method, [](int v) { return pb::PaymentMethod_Name(v); }, "PAYMENT_METHOD_");
}

Json LimitsJson(const pb::Limits& limits) {
  return {{"credit_limit", FormatYuan(limits.credit_limit_minor())},
          {"alarm1", FormatYuan(limits.alarm1_minor())},
          {"alarm2", FormatYuan(limits.alarm2_minor())},
          {"hoarding_cap", FormatYuan(limits.hoarding_cap_minor())}};
}

Json AccountJson(const pb::Account& a) {
  Json out;
  out["account_id"] = a.account_id();
  out["customer_name"] = a.customer_name();
  out["phones"] = Strings(a.phones());
  out["room"] = a.room();
  out["meters"] = Strings(a.meters());
  out["tariff_id"] = a.tariff_id();
  out["mode"] = ModeWord(a.mode());
  out["state"] = StateWord(a.state());
  out["level"] = LevelWord(a.level());
  out["balance"] = FormatYuan(a.balance_minor());
  out["purchase_count"] = a.purchase_count();
  out["supply_cut"] = a.supply_cut();
  out["limits"] = LimitsJson(a.limits());
  out["opened_txn_id"] = a.opened_txn_id();
  return out;
}

Json MutationJson(const pb::MutationResponse& r) {
  Json out;
  out["txn_id"] = r.txn_id();
  out["duplicate"] = r.duplicate();
  if (r.has_balance()) {
    // A posting's: the account's fields it changes, named as in AccountJson.
    const pb::AccountBalance& b = r.balance();
    out["account"] = {{"account_id", b.account_id()},
                      {"balance", FormatYuan(b.balance_minor())},
                      {"level", LevelWord(b.level())},
                      {"purchase_count", b.purchase_count()},
                      {"supply_cut", b.supply_cut()}};
  } else {
    out["account"] = AccountJson(r.account());
  }
  return out;
}

Json AccountListJson(const pb::ListAccountsResponse& r) {
  Json accounts = Json::array();
  for (const pb::Account& a : r.accounts()) accounts.push_back(AccountJson(a));
  Json out;
  out["accounts"] = std::move(accounts);
  out["next_page_token"] = r.next_page_token();
  return out;
}

namespace {

// A charge's fields of a statement entry: what was charged and how it was rated.
void PutCharge(const pb::StatementEntry& e, Json* j) {
  (*j)["charge_id"] = e.charge_id();
  (*j)["meter_id"] = e.meter_id();
  (*j)["reading_id"] = e.reading_id();
  (*j)["tariff_id"] = e.tariff_id();
  (*j)["tariff_version"] = e.tariff_version();
  (*j)["energy_wh"] = e.energy_wh();
}

}  // namespace

Json StatementJson(const pb::GetStatementResponse& r) {
  Json entries = Json::array();
  for (const pb::StatementEntry& e : r.entries()) {
    Json j;
    j["txn_id"] = e.txn_id();
    j["time"] = FormatTimeUs(e.time_us());
    j["time_us"] = e.time_us();
    j["kind"] = KindWord(e.kind());
    j["amount"] = FormatYuan(e.amount_minor());
    j["balance_after"] = FormatYuan(e.balance_after_minor());
    j["operator_id"] = e.operator_id();
    j["reason"] = e.reason();
    j["method"] = e.method();
    j["idempotency_key"] = e.idempotency_key();
    j["original_txn_id"] = e.original_txn_id();
    j["purchase_count"] = e.purchase_count();
    PutCharge(e, &j);
    entries.push_back(std::move(j));
  }
  Json out;
  out["account_id"] = r.account_id();
  out["opening_balance"] = FormatYuan(r.opening_balance_minor());
  out["closing_balance"] = FormatYuan(r.closing_balance_minor());
  out["unlisted_entries"] = r.unlisted_entries();
  out["unlisted"] = FormatYuan(r.unlisted_minor());
  out["entries"] = std::move(entries);
  return out;
}

Json TransactionJson(const pb::Transaction& t) {
  Json out;
  out["txn_id"] = t.txn_id();
  out["kind"] = KindWord(t.kind());
  out["account_id"] = t.account_id();
  out["time"] = FormatTimeUs(t.time_us());
  out["time_us"] = t.time_us();
  out["amount"] = FormatYuan(t.amount_minor());
  out["operator_id"] = t.operator_id();
  out["reason"] = t.reason();
  out["idempotency_key"] = t.idempotency_key();
  out["original_txn_id"] = t.original_txn_id();
  out["reversed_by"] = t.reversed_by();
  if (t.has_entry()) {
    // What the receipt or the meter's record says, for the kinds that have it.
    const pb::StatementEntry& e = t.entry();
    out["balance_after"] = FormatYuan(e.balance_after_minor());
    if (!e.method().empty()) out["method"] = e.method();
    if (e.purchase_count() != 0) out["purchase_count"] = e.purchase_count();
    if (!e.charge_id().empty()) PutCharge(e, &out);
  }
  out["legs"] = PostingJson(t.posting());
  return out;
}

Json TotalsJson(const pb::LedgerTotalsResponse& t) {
  // Sorted, because protobuf map iteration order is unspecified.
  std::vector<std::pair<std::string, int64_t>> system(t.system_minor().begin(),
                                                      t.system_minor().end());
  std::sort(system.begin(), system.end());
  Json sys = Json::object();
  for (const auto& [name, minor] : system) sys[name] = FormatYuan(minor);
  Json out;
  out["tenant_total"] = FormatYuan(t.tenant_total_minor());
  out["system"] = std::move(sys);
  out["total"] = FormatYuan(t.total_minor());
  out["accounts"] = t.accounts();
  return out;
}

Json VerifyLogJson(const admin::v1::VerifyLogResponse& r) {
  Json heads = Json::array();
  for (uint64_t h : r.heads()) heads.push_back(h);
  Json out;
  out["ok"] = r.ok();
  out["log"] = r.log();
  out["events_checked"] = r.events_checked();
  out["heads"] = std::move(heads);
  out["problem"] = r.problem();
  out["state_digest"] = r.state_digest();
  return out;
}

Json StatusJson(const admin::v1::GetStatusResponse& r) {
  Json services = Json::array();
  for (const admin::v1::ServiceStatus& s : r.services()) {
    services.push_back({{"name", s.name()},
                        {"log", s.log()},
                        {"partitions", s.partitions()},
                        {"events", s.events()}});
  }
  Json out;
  out["version"] = r.version();
  out["bus"] = r.bus();
  out["services"] = std::move(services);
  return out;
}

void PrintJson(const Json& value, std::ostream& out) {
  out << value.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

std::string_view LeadingRule(std::string_view message) {
  size_t colon = message.find(": ");
  if (colon == 0 || colon == std::string_view::npos) return {};
  for (char c : message.substr(0, colon)) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return {};
  }
  return message.substr(0, colon);
}

Json FailureJson(const Failure& failure) {
  Json error;
  error["command"] = failure.what;
  error["code"] = failure.code;
  if (std::string_view rule = LeadingRule(failure.message); !rule.empty()) error["rule"] = rule;
  error["message"] = failure.message;
  Json hints = Json::array();
  for (std::string_view note : failure.notes) {
    constexpr std::string_view kHint = "hint: ";
    if (note.starts_with(kHint)) note.remove_prefix(kHint.size());
    hints.push_back(note);
  }
  error["hints"] = std::move(hints);
  Json json;
  json["error"] = std::move(error);
  return json;
}

void PrintFailure(const Failure& failure, bool json, std::ostream& err) {
  if (json) {
    err << FailureJson(failure).dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
    return;
  }
  err << "wlctl: ";
  if (!failure.what.empty()) err << failure.what << ": ";
  if (failure.code_in_text) {
    err << failure.code;
    if (!failure.message.empty()) err << " ";
  }
  err << failure.message << "\n";
  for (const std::string& note : failure.notes) err << note << "\n";
}

void PrintKeyValues(const Json& object, std::ostream& out) {
  std::vector<std::pair<std::string, std::string>> rows;
  Flatten(object, &rows);
  size_t width = 0;
  for (const auto& row : rows) width = std::max(width, row.first.size());
  for (const auto& [key, value] : rows) {
    out << key << std::string(width - key.size() + 2, ' ') << value << "\n";
  }
}

Table::Table(std::vector<std::string> headers, std::vector<bool> right_aligned)
    : headers_(std::move(headers)), right_aligned_(std::move(right_aligned)) {
  right_aligned_.resize(headers_.size(), false);
}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    widths[c] = DisplayWidth(headers_[c]);
    for (const auto& row : rows_) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t c = 0; c < cells.size(); ++c) {
      bool last = c + 1 == cells.size();
      // The last column is not padded on the right, so lines carry no trailing blanks.
      if (last && !right_aligned_[c]) {
        out << cells[c];
      } else {
        Pad(out, cells[c], widths[c], right_aligned_[c]);
      }
      if (!last) out << "  ";
    }
    out << "\n";
  };
  line(headers_);
  for (const auto& row : rows_) line(row);
}

size_t DisplayWidth(std::string_view utf8) {
  size_t width = 0;
  size_t pos = 0;
  while (pos < utf8.size()) width += IsWide(NextCodePoint(utf8, &pos)) ? 2 : 1;
  return width;
}

std::string FormatTimeUs(int64_t time_us) {
  if (time_us == 0) return "";
  using namespace std::chrono;
  sys_time<microseconds> t{microseconds(time_us)};
  sys_days day = floor<days>(t);
  year_month_day ymd{day};
  hh_mm_ss<microseconds> hms{t - day};
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                static_cast<int>(hms.seconds().count()));
  std::string out = buf;
  if (int64_t frac = hms.subseconds().count(); frac != 0) {
    std::snprintf(buf, sizeof buf, ".%06lld", static_cast<long long>(frac));
    out += buf;
  }
  return out + "Z";
}

Result<int64_t> ParseTimeUs(std::string_view text) {
  size_t pos = 0;
  int y = 0, mo = 0, d = 0;
  if (!Digits(text, &pos, 4, &y) || !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &mo) ||
      !Expect(text, &pos, '-') || !Digits(text, &pos, 2, &d)) {
    return BadTime(text, "no date YYYY-MM-DD at the start");
  }
  using namespace std::chrono;
  year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return BadTime(text, "no such date");
  int64_t seconds = static_cast<int64_t>(sys_days(ymd).time_since_epoch().count()) * 86'400;
  int64_t micros = 0;
  if (pos < text.size()) {
    char sep = text[pos++];
    if (sep != 'T' && sep != 't' && sep != ' ') return BadTime(text, "expected T after the date");
    int h = 0, mi = 0, s = 0;
    if (!Digits(text, &pos, 2, &h) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &mi) ||
        !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &s)) {
      return BadTime(text, "expected the time as HH:MM:SS");
    }
    if (h > 23 || mi > 59 || s > 59) return BadTime(text, "hour, minute or second out of range");
    seconds += h * 3600 + mi * 60 + s;
    if (pos < text.size() && text[pos] == '.') {
      ++pos;
      int digits = 0;
      int64_t scale = 100'000;
      while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
        // Digits past microseconds are accepted and dropped: the ledger stores microseconds.
        if (digits < 6) micros += (text[pos] - '0') * scale;
        scale /= 10;
        ++digits;
        ++pos;
        if (digits > 9) return BadTime(text, "more than 9 fractional digits");
      }
      if (digits == 0) return BadTime(text, "no digits after the decimal point");
    }
    if (pos >= text.size()) return BadTime(text, "no time zone; add Z for UTC");
    char zone = text[pos++];
    if (zone == 'Z' || zone == 'z') {
      // UTC.
    } else if (zone == '+' || zone == '-') {
      int oh = 0, om = 0;
      if (!Digits(text, &pos, 2, &oh) || !Expect(text, &pos, ':') || !Digits(text, &pos, 2, &om) ||
          oh > 23 || om > 59) {
        return BadTime(text, "expected the offset as +HH:MM");
      }
      int64_t offset = oh * 3600 + om * 60;
      seconds -= zone == '+' ? offset : -offset;
    } else {
      return BadTime(text, "expected Z or +HH:MM after the time");
    }
    if (pos != text.size()) return BadTime(text, "unexpected text after the time zone");
  }
  int64_t us = seconds * 1'000'000 + micros;
  if (us < 0) return BadTime(text, "before 1970-01-01");
  return us;
}

}  // namespace wattledger::wlctl
