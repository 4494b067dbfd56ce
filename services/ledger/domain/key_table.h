// KeyTable: the idempotency keys and charge ids the ledger has seen, each with what it took
// effect as: its txn and a 64-bit hash of what defines the request (its money fields, a word at a
// time), compared to tell a retry from a different request under the same key. A hash, not the
// text, because every charge keeps one: the text is spelled out again only for the message when a
// key is reused. Never stored: it may differ between builds, and so may CanonicalDump, which
// lists it.
//
// Every top-up, refund and adjustment brings a key, and every charge an id, that must be looked
// up and is nearly always new; the table keeps all of them, so it is one of the ledger's largest
// maps. As a node-based hash map each key was a node, a bucket and (past 15 bytes) its text on
// the heap: about 100-150 bytes, three or four cache misses per lookup and an allocation per
// insert. Here a key is an 8-byte slot in an open-addressed array, and its record (fingerprint,
// key and txn id, one after the other) is appended to chunks (1 KiB at first, doubling to 64 KiB)
// that never move as the table grows. A slot holds 24 bits of the key's hash beside the record's
// place, so a lookup that misses (a new key) reads the run of slots from the key's place to the
// first empty one (a few slots at most three quarters full: usually one cache line, sometimes
// two) and no record but once in 2^24 probes.
//
// Like ShardedStringMap, the keys' slots are spread over kShards shards by their hash, so that
// growing one rehashes 1/kShards of the slots and never stalls the writer for long; growing reads
// only slots, never records, since a slot's place follows from its 24 bits of hash alone. The
// records are not sharded: every insert appends to the same chunk, whose end is in the cache,
// where a chunk per shard meant a cache miss or two per insert (the shard's chunk and its end).
//
// A view returned by find or SortedByKey is valid until the next emplace.
// Thread safety: none, like the Ledger that owns it.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wattledger::ledger {

class KeyTable {
 public:
  struct Entry {
    std::string_view key;
    std::string_view txn_id;
    uint64_t fingerprint = 0;
  };

  KeyTable() = default;
  KeyTable(const KeyTable&) = default;
  KeyTable& operator=(const KeyTable&) = default;
  // The table moved from is left empty.
  KeyTable(KeyTable&& other) noexcept;
  KeyTable& operator=(KeyTable&& other) noexcept;

  std::optional<Entry> find(std::string_view key) const;
  // Starts loading the slot where find(key) or emplace(key) will begin (a software prefetch):
  // called ahead of them, their likely cache miss overlaps other work. Changes nothing.
  void Prefetch(std::string_view key) const;
  bool contains(std::string_view key) const { return find(key).has_value(); }
  // Adds `key`: false, and nothing changes, if it is there already.
  bool emplace(std::string_view key, std::string_view txn_id, uint64_t fingerprint);
  size_t size() const { return size_; }
  // Every entry, sorted by key: what a canonical dump lists.
  std::vector<Entry> SortedByKey() const;
  // Calls fn(entry) for every entry, in no particular order.
  template <typename Fn>
  void ForEach(const Fn& fn) const {
    for (const Shard& s : shards_) {
      for (uint64_t slot : s.slots) {
        if (slot != 0) fn(Read(RefOf(slot)));
      }
    }
  }

  // The same keys with the same txns and fingerprints, however each side placed them.
  friend bool operator==(const KeyTable& a, const KeyTable& b);

  static constexpr size_t kShards = 256;
  static constexpr size_t kChunkBytes = 64 << 10;

 private:
  // A slot is (hash low kTagBits bits) << kRefBits | ref, 0 when empty. ref - 1 is the record's
  // chunk (above kOffsetBits) and its offset in the chunk in 8-byte units (below): 2^40 places of
  // 8 bytes, 8 TiB of records.
  static constexpr unsigned kTagBits = 24;
  static constexpr unsigned kRefBits = 64 - kTagBits;
  static constexpr unsigned kOffsetBits = 13;  // kChunkBytes / 8 offsets.
  static_assert(kChunkBytes / 8 == size_t{1} << kOffsetBits, "an offset in 8-byte units fills kOffsetBits");
  static constexpr uint64_t kMaxChunks = (uint64_t{1} << (kRefBits - kOffsetBits)) - 1;
  struct Shard {
    std::vector<uint64_t> slots;  // A power of two of them, or none yet.
    size_t used = 0;
  };
  static size_t ShardOf(uint64_t hash) { return hash >> (64 - std::countr_zero(kShards)); }
  static uint32_t TagOfHash(uint64_t hash) { return static_cast<uint32_t>(hash & ((uint64_t{1} << kTagBits) - 1)); }
  static uint32_t TagOf(uint64_t slot) { return static_cast<uint32_t>(slot >> kRefBits); }
  static uint64_t RefOf(uint64_t slot) { return slot & ((uint64_t{1} << kRefBits) - 1); }
  Entry Read(uint64_t ref) const;
  // The slot of `key` in `s`, or of the empty slot where it would go.
  size_t Probe(const Shard& s, std::string_view key, uint32_t tag) const;
  static void Grow(Shard& s);
  uint64_t Append(std::string_view key, std::string_view txn_id, uint64_t fingerprint);

  std::array<Shard, kShards> shards_;
  // Records, appended. A chunk holds at most kChunkBytes (an offset must fit kOffsetBits), or one
  // record larger than that alone; its capacity is reserved when it is started and never
  // exceeded, so records never move. (A copied chunk's capacity may be its size, or, copied over
  // an older string, more than kChunkBytes: Append checks both.)
  std::vector<std::string> chunks_;
  size_t size_ = 0;
};

}  // namespace wattledger::ledger
