#include "services/ledger/domain/entry_txn_index.h"

#include <algorithm>
#include <iterator>

namespace wattledger::ledger {

bool SplitTxnId(std::string_view id, std::string_view* prefix, uint64_t* number) {
  const size_t slash = id.rfind('/');
  if (slash == std::string_view::npos || slash + 1 == id.size() || id.size() - slash - 1 > 19) return false;
  uint64_t n = 0;
  for (char c : id.substr(slash + 1)) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  *prefix = id.substr(0, slash);
  *number = n;
  return true;
}

namespace {

// SplitTxnId for an id whose number has no leading zero: a segment gives its ids back spelled
// that way (SortedById), so "x/007" must not be stored as the 7 of "x/7".
bool SplitCanonicalTxnId(std::string_view id, std::string_view* prefix, uint64_t* number) {
  if (!SplitTxnId(id, prefix, number)) return false;
  return id.size() - prefix->size() == 2 || id[prefix->size() + 1] != '0';
}

// The first segment that starts after `n`.
template <typename Segments>
auto SegmentAfter(Segments& segments, uint64_t n) {
  return std::upper_bound(segments.begin(), segments.end(), n,
                          [](uint64_t v, const auto& segment) { return v < segment.first; });
}

}  // namespace

const EntryTxn* EntryTxnIndex::FindSlot(std::string_view txn_id) const {
  std::string_view text;
  uint64_t n = 0;
  if (!SplitCanonicalTxnId(txn_id, &text, &n)) return nullptr;
  for (const Prefix& prefix : prefixes_) {
    if (prefix.text != text) continue;
    auto next = SegmentAfter(prefix.segments, n);
    if (next == prefix.segments.begin()) return nullptr;
    const Segment& s = *std::prev(next);
    return n - s.first < s.slots.size() ? &s.slots[n - s.first] : nullptr;
  }
  return nullptr;
}

EntryTxn* EntryTxnIndex::ClaimSlot(std::string_view txn_id, bool* taken) {
  std::string_view text;
  uint64_t n = 0;
  if (!SplitCanonicalTxnId(txn_id, &text, &n)) return nullptr;
  auto prefix = std::find_if(prefixes_.begin(), prefixes_.end(), [&](const Prefix& p) { return p.text == text; });
  if (prefix == prefixes_.end()) {
    if (prefixes_.size() == kMaxPrefixes) return nullptr;
    prefix = prefixes_.insert(prefixes_.end(), Prefix{std::string(text), {}});
  }
  std::vector<Segment>& segments = prefix->segments;
  auto next = SegmentAfter(segments, n);
  if (next != segments.begin()) {
    Segment& s = *std::prev(next);
    const uint64_t i = n - s.first;
    if (i < s.slots.size()) {
      *taken = !s.slots[i].account_id.empty();
      if (*taken) return nullptr;
      s.filled++;
      return &s.slots[i];  // A hole.
    }
    // The next segment starts after n, so growing this one up to n cannot reach it.
    const uint64_t gap = i - s.slots.size();
    const uint64_t holes = s.slots.size() - s.filled;
    if (gap <= kMaxGap && holes + gap <= 2 * s.filled + kHoleSlack) {
      while (s.slots.size() <= i) s.slots.push_back(EntryTxn{});
      s.filled++;
      return &s.slots[i];
    }
  }
  if (next != segments.end() && segments.size() >= kMaxSegments) return nullptr;
  auto s = segments.insert(next, Segment{n, {}, 1});
  s->slots.push_back(EntryTxn{});
  return &s->slots[0];
}

size_t EntryTxnIndex::segment_slots() const {
  size_t n = 0;
  for (const Prefix& prefix : prefixes_) {
    for (const Segment& s : prefix.segments) n += s.slots.size();
  }
  return n;
}

const EntryTxn* EntryTxnIndex::find(std::string_view txn_id) const {
  if (const EntryTxn* slot = FindSlot(txn_id); slot != nullptr && !slot->account_id.empty()) return slot;
  if (others_.empty()) return nullptr;
  auto it = others_.find(txn_id);
  return it == others_.end() ? nullptr : &it->second;
}

bool EntryTxnIndex::emplace(std::string_view txn_id, EntryTxn txn) {
  // Only an id no segment can hold is in the hash map (at times within a segment's reach by now).
  if (!others_.empty() && others_.contains(txn_id)) return false;
  EntryTxn* slot = nullptr;
  if (txn.account_id.empty()) {  // It would read as a hole in a segment: the hash map.
    if (const EntryTxn* held = FindSlot(txn_id); held != nullptr && !held->account_id.empty()) return false;
  } else {
    bool taken = false;
    slot = ClaimSlot(txn_id, &taken);
    if (taken) return false;
  }
  if (slot != nullptr) {
    *slot = std::move(txn);
  } else {
    others_.emplace(txn_id, std::move(txn));
  }
  ++size_;
  return true;
}

std::vector<std::pair<std::string, const EntryTxn*>> EntryTxnIndex::SortedById() const {
  std::vector<std::pair<std::string, const EntryTxn*>> out;
  out.reserve(size_);
  ForEach([&](std::string_view id, const EntryTxn& txn) { out.emplace_back(std::string(id), &txn); });
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

bool operator==(const EntryTxnIndex& a, const EntryTxnIndex& b) {
  if (a.size() != b.size()) return false;
  const auto as = a.SortedById();
  const auto bs = b.SortedById();
  return std::equal(as.begin(), as.end(), bs.begin(), bs.end(),
                    [](const auto& x, const auto& y) { return x.first == y.first && *x.second == *y.second; });
}

}  // namespace wattledger::ledger
