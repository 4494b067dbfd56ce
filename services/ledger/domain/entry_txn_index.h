// EntryTxnIndex: the ledger's entry transactions (see EntryTxn) by txn id.
//
// There is one per transaction the ledger ever accepted, so it is the ledger's largest map: as a
// hash map, a node per id (the node, its bucket and the id's text: about 150 bytes) and a cache
// miss or two on every insert. But the adapter's ids are "<log>/<partition>/<seq>", and the seq
// only grows. So for each id prefix (up to kMaxPrefixes of them) the index keeps segments: arrays
// indexed by the number after the last '/', each from the number it started at. An id a little
// past a segment's end continues it, with a hole (an empty account id) for each number skipped:
// a seq also counts rejected commands and the events that are not entry txns. A segment grows
// over at most kMaxGap holes at a time, and only while its holes stay at most twice its txns
// (plus kHoleSlack), so sparse ids cost no more than about three slots each; an id further on
// starts a new segment. Ids come in ascending order, so new segments come at the end; one that
// would go between two others is made only while the prefix has fewer than kMaxSegments. Every
// other id (not of that form, a number with a leading zero, between segments past that limit, a
// prefix past kMaxPrefixes, an empty account id) goes to a hash map. Where an id lives depends
// only on the ids added before it, so a replay of the same history builds the same layout;
// equality compares contents, not layouts.
//
// Thread safety: none, like the Ledger that owns it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "wattledger/base/sharded_map.h"
#include "wattledger/base/stable_vector.h"

namespace wattledger::ledger {

// A transaction that keeps only what decisions need of it: charges, top-ups, refunds and
// adjustments whose posting is the two legs their amount implies (the amount on the tenant, its
// negation on `system`). These are the bulk of all transactions; the rest of each (time,
// operator, reason, key) is on its event in the log.
struct EntryTxn {
  std::string account_id;  // Never empty for a txn (account ids are not).
  int64_t amount_minor = 0;  // Signed change of the tenant balance.
  uint8_t system = 0;  // Index into sys::kAll.
  uint8_t kind = 0;    // A TxnKind.
  bool operator==(const EntryTxn&) const = default;
};

// "<prefix>/<number>": the prefix and the number, if the id is of that form (the number at most
// 19 digits, so it fits). `007` and `7` are both 7.
bool SplitTxnId(std::string_view id, std::string_view* prefix, uint64_t* number);

class EntryTxnIndex {
 public:
  static constexpr size_t kMaxPrefixes = 16;
  static constexpr size_t kMaxSegments = 64;  // Per prefix, for a segment between two others.
  static constexpr uint64_t kMaxGap = 4096;
  static constexpr uint64_t kHoleSlack = 8;

  const EntryTxn* find(std::string_view txn_id) const;
  bool contains(std::string_view txn_id) const { return find(txn_id) != nullptr; }
  // Adds `txn` (its account id not empty) under `txn_id`: false, and nothing changes, if the id
  // is there already.
  bool emplace(std::string_view txn_id, EntryTxn txn);
  size_t size() const { return size_; }
  // Every (id, txn), sorted by id: what a canonical dump lists.
  std::vector<std::pair<std::string, const EntryTxn*>> SortedById() const;
  // Calls fn(id, txn) for every txn: each prefix's segments in ascending order, then the ids in
  // the hash map in no particular order. Added in this order to an empty index, the ids come in
  // ascending order per prefix, as the adapter's do, so a loaded checkpoint's index is about as
  // compact as a fold's (not always the same: segments made out of order may be laid out anew).
  template <typename Fn>
  void ForEach(const Fn& fn) const {
    std::string id;
    for (const Prefix& prefix : prefixes_) {
      for (const Segment& s : prefix.segments) {
        for (size_t i = 0; i < s.slots.size(); ++i) {
          if (s.slots[i].account_id.empty()) continue;
          id.assign(prefix.text).append("/").append(std::to_string(s.first + i));
          fn(std::string_view(id), s.slots[i]);
        }
      }
    }
    for (const auto& [other, txn] : others_) fn(std::string_view(other), txn);
  }
  // How many ids live in the hash map rather than in a segment, and how many slots (txns and
  // holes) the segments have, over every prefix (for tests).
  size_t outside_segments() const { return others_.size(); }
  size_t segment_slots() const;

  // The same ids with the same txns, however each side stores them.
  friend bool operator==(const EntryTxnIndex& a, const EntryTxnIndex& b);

 private:
  // The txns "<prefix>/<first + i>" for i < slots.size().
  struct Segment {
    uint64_t first = 0;
    StableVector<EntryTxn> slots;
    uint64_t filled = 0;  // Slots that hold a txn; the rest are holes.
  };
  struct Prefix {
    std::string text;
    std::vector<Segment> segments;  // By first; they do not overlap.
  };
  // The slot that holds or would hold `txn_id`, or null if the id belongs to the hash map.
  const EntryTxn* FindSlot(std::string_view txn_id) const;
  // The slot for a txn emplace adds under `txn_id`: a hole, or a slot it makes by growing a
  // segment or starting one, counted as filled. Null: the hash map, or (*taken) a segment holds
  // a txn under that id already.
  EntryTxn* ClaimSlot(std::string_view txn_id, bool* taken);

  std::vector<Prefix> prefixes_;
  ShardedStringMap<EntryTxn> others_;
  size_t size_ = 0;
};

}  // namespace wattledger::ledger
