#include "services/ledger/adapters/key_claims.h"

#include <bit>
#include <functional>

#include "wattledger/base/check.h"
#include "wattledger/base/linear_probing.h"

namespace wattledger::ledger::adapters {

namespace {

constexpr size_t kMinSlots = 16;
constexpr unsigned kSeqBits = 48;

// The second hash: FNV-1a over the bytes, then splitmix64's finaliser so that every input bit
// reaches every output bit. Independent of the first (std::hash, a Murmur variant), so that two
// keys whose first hashes agree almost never agree in this one too.
uint64_t SecondHash(std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) h = (h ^ c) * 0x100000001b3ull;
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

// The shard takes the top bits of h1; the slot's place its low bits.
size_t ShardOf(uint64_t h1) { return h1 >> (64 - std::countr_zero(KeyClaims::kShards)); }
size_t HomeOf(uint64_t h1, size_t slots) { return h1 & (slots - 1); }

uint64_t Pack(KeyClaims::Owner o) { return ((uint64_t{o.partition} << kSeqBits) | o.seq) + 1; }
KeyClaims::Owner Unpack(uint64_t packed) {
  const uint64_t v = packed - 1;
  return {static_cast<uint32_t>(v >> kSeqBits), v & ((uint64_t{1} << kSeqBits) - 1)};
}

}  // namespace

size_t KeyClaims::Probe(const Shard& s, uint64_t h1, uint64_t h2) {
  const size_t mask = s.slots.size() - 1;
  size_t i = HomeOf(h1, s.slots.size());
  while (s.slots[i].owner != 0 && (s.slots[i].h1 != h1 || s.slots[i].h2 != h2)) i = (i + 1) & mask;
  return i;
}

std::optional<KeyClaims::Owner> KeyClaims::Claim(std::string_view key, Owner owner) {
  WL_CHECK(owner.partition < kMaxPartitions && owner.seq <= kMaxSeq);
  const uint64_t h1 = std::hash<std::string_view>{}(key);
  const uint64_t h2 = SecondHash(key);
  Shard& s = shards_[ShardOf(h1)];
  std::lock_guard lock(s.mu);
  if ((s.used + 1) * 4 > s.slots.size() * 3) Grow(s);
  Slot& slot = s.slots[Probe(s, h1, h2)];
  if (slot.owner != 0) {
    const Owner holder = Unpack(slot.owner);
    if (holder.partition == owner.partition) return std::nullopt;
    return holder;
  }
  slot = Slot{h1, h2, Pack(owner)};
  s.used++;
  return std::nullopt;
}

std::optional<KeyClaims::Owner> KeyClaims::Holder(std::string_view key) const {
  const uint64_t h1 = std::hash<std::string_view>{}(key);
  const Shard& s = shards_[ShardOf(h1)];
  std::lock_guard lock(s.mu);
  if (s.slots.empty()) return std::nullopt;
  const Slot& slot = s.slots[Probe(s, h1, SecondHash(key))];
  if (slot.owner == 0) return std::nullopt;
  return Unpack(slot.owner);
}

void KeyClaims::DropAbove(uint32_t partition, uint64_t head) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (size_t i = 0; i < s.slots.size();) {
      const Owner o = s.slots[i].owner == 0 ? Owner{} : Unpack(s.slots[i].owner);
      if (s.slots[i].owner == 0 || o.partition != partition || o.seq <= head) {
        ++i;
        continue;
      }
      // The slot after i may move into i: look at i again.
      linear_probing::EraseAt(
          s.slots, i, [](const Slot& slot) { return slot.owner == 0; },
          [&](const Slot& slot) { return HomeOf(slot.h1, s.slots.size()); });
      s.used--;
    }
  }
}

size_t KeyClaims::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    n += s.used;
  }
  return n;
}

void KeyClaims::Grow(Shard& s) {
  std::vector<Slot> old = std::move(s.slots);
  s.slots.assign(old.empty() ? kMinSlots : old.size() * 2, Slot{});
  for (const Slot& slot : old) {
    if (slot.owner == 0) continue;
    linear_probing::Place(s.slots, HomeOf(slot.h1, s.slots.size()), slot,
                          [](const Slot& x) { return x.owner == 0; });
  }
}

}  // namespace wattledger::ledger::adapters
