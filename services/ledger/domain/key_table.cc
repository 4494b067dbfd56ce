#include "services/ledger/domain/key_table.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>

#include "wattledger/base/check.h"
#include "wattledger/base/linear_probing.h"
#include "wattledger/base/sharded_map.h"

namespace wattledger::ledger {

static_assert(sizeof(size_t) == 8, "a shard is chosen by the top bits of a 64-bit hash");

namespace {

constexpr size_t kHeaderBytes = 16;  // fingerprint (8), key length (4), txn id length (4).
constexpr size_t kMinSlots = 16;

// Where a slot with this tag (24 bits of hash) starts its probe in a table of 2^bits slots:
// Fibonacci hashing, so that the place depends on all of the tag, not only on its low bits.
size_t Home(uint32_t tag, unsigned bits) { return static_cast<uint32_t>(tag * 0x9E3779B9u) >> (32 - bits); }

unsigned BitsOf(size_t slots) { return static_cast<unsigned>(std::countr_zero(slots)); }

}  // namespace

KeyTable::KeyTable(KeyTable&& other) noexcept
    : shards_(std::move(other.shards_)),
      chunks_(std::move(other.chunks_)),
      size_(std::exchange(other.size_, 0)) {
  for (Shard& s : other.shards_) s = Shard{};
  other.chunks_.clear();
}

KeyTable& KeyTable::operator=(KeyTable&& other) noexcept {
  if (this != &other) {
    shards_ = std::move(other.shards_);
    chunks_ = std::move(other.chunks_);
    size_ = std::exchange(other.size_, 0);
    for (Shard& s : other.shards_) s = Shard{};
    other.chunks_.clear();
  }
  return *this;
}

KeyTable::Entry KeyTable::Read(uint64_t ref) const {
  const uint64_t at = ref - 1;
  const char* p = chunks_[at >> kOffsetBits].data() + size_t{at & ((1u << kOffsetBits) - 1)} * 8;
  Entry e;
  uint32_t key_len = 0, txn_len = 0;
  std::memcpy(&e.fingerprint, p, 8);
  std::memcpy(&key_len, p + 8, 4);
  std::memcpy(&txn_len, p + 12, 4);
  e.key = std::string_view(p + kHeaderBytes, key_len);
  e.txn_id = std::string_view(p + kHeaderBytes + key_len, txn_len);
  return e;
}

size_t KeyTable::Probe(const Shard& s, std::string_view key, uint32_t tag) const {
  const size_t mask = s.slots.size() - 1;
  for (size_t i = Home(tag, BitsOf(s.slots.size()));; i = (i + 1) & mask) {
    const uint64_t slot = s.slots[i];
    if (slot == 0) return i;
    if (TagOf(slot) == tag && Read(RefOf(slot)).key == key) return i;
  }
}

void KeyTable::Grow(Shard& s) {
  const size_t n = std::max(kMinSlots, s.slots.size() * 2);
  // Home spreads a tag over at most 2^kTagBits places.
  WL_CHECK_MSG(BitsOf(n) <= kTagBits, "a key table shard outgrew 2^24 slots");
  std::vector<uint64_t> slots(n, 0);
  for (uint64_t slot : s.slots) {
    if (slot != 0) linear_probing::Place(slots, Home(TagOf(slot), BitsOf(n)), slot, [](uint64_t x) { return x == 0; });
  }
  s.slots = std::move(slots);
}

uint64_t KeyTable::Append(std::string_view key, std::string_view txn_id, uint64_t fingerprint) {
  WL_CHECK(key.size() <= UINT32_MAX && txn_id.size() <= UINT32_MAX);
  const size_t bytes = (kHeaderBytes + key.size() + txn_id.size() + 7) & ~size_t{7};
  // Both bounds are needed: the capacity, so that a record never moves, and kChunkBytes, so that
  // its offset fits the ref (a copy-assigned chunk may have kept a larger buffer; KeyTableTest.
  // ACopyOverALargerTableKeepsOffsetsInRange fails without it).
  if (chunks_.empty() || chunks_.back().size() + bytes > chunks_.back().capacity() ||
      chunks_.back().size() + bytes > kChunkBytes) {
    WL_CHECK_MSG(chunks_.size() < kMaxChunks, "a key table outgrew its chunks");
    // The first chunks are small (1 KiB, then doubling), so that a ledger with few keys does not
    // hold 64 KiB for them.
    const size_t grown = std::min(kChunkBytes, size_t{1024} << std::min<size_t>(chunks_.size(), 6));
    chunks_.emplace_back().reserve(std::max(bytes, grown));
  }
  std::string& chunk = chunks_.back();
  const size_t offset = chunk.size();
  const auto key_len = static_cast<uint32_t>(key.size());
  const auto txn_len = static_cast<uint32_t>(txn_id.size());
  char header[kHeaderBytes];
  std::memcpy(header, &fingerprint, 8);
  std::memcpy(header + 8, &key_len, 4);
  std::memcpy(header + 12, &txn_len, 4);
  chunk.append(header, kHeaderBytes).append(key).append(txn_id);
  chunk.resize(offset + bytes);  // Pads the next record to 8 bytes.
  return ((uint64_t{chunks_.size() - 1} << kOffsetBits) | (offset / 8)) + 1;
}

std::optional<KeyTable::Entry> KeyTable::find(std::string_view key) const {
  const uint64_t h = TransparentStringHash{}(key);
  const Shard& s = shards_[ShardOf(h)];
  if (s.slots.empty()) return std::nullopt;
  const uint64_t slot = s.slots[Probe(s, key, TagOfHash(h))];
  if (slot == 0) return std::nullopt;
  return Read(RefOf(slot));
}

void KeyTable::Prefetch(std::string_view key) const {
  const uint64_t h = TransparentStringHash{}(key);
  const Shard& s = shards_[ShardOf(h)];
  if (s.slots.empty()) return;
  __builtin_prefetch(&s.slots[Home(TagOfHash(h), BitsOf(s.slots.size()))]);
}

bool KeyTable::emplace(std::string_view key, std::string_view txn_id, uint64_t fingerprint) {
  const uint64_t h = TransparentStringHash{}(key);
  const uint32_t tag = TagOfHash(h);
  Shard& s = shards_[ShardOf(h)];
  if (s.slots.empty()) Grow(s);
  size_t i = Probe(s, key, tag);
  if (s.slots[i] != 0) return false;
  // At most three quarters full, so a probe for a new key reads a few slots, not a long run.
  if ((s.used + 1) * 4 > s.slots.size() * 3) {
    Grow(s);
    i = Probe(s, key, tag);
  }
  s.slots[i] = (uint64_t{tag} << kRefBits) | Append(key, txn_id, fingerprint);
  s.used++;
  size_++;
  return true;
}

std::vector<KeyTable::Entry> KeyTable::SortedByKey() const {
  std::vector<Entry> out;
  out.reserve(size_);
  ForEach([&](const Entry& e) { out.push_back(e); });
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.key < b.key; });
  return out;
}

bool operator==(const KeyTable& a, const KeyTable& b) {
  if (a.size_ != b.size_) return false;
  for (const KeyTable::Shard& s : a.shards_) {
    for (uint64_t slot : s.slots) {
      if (slot == 0) continue;
      const KeyTable::Entry e = a.Read(KeyTable::RefOf(slot));
      const auto other = b.find(e.key);
      if (!other || other->txn_id != e.txn_id || other->fingerprint != e.fingerprint) return false;
    }
  }
  return true;
}

}  // namespace wattledger::ledger
