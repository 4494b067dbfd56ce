// KeyClaims: which partition used each idempotency key, over every partition of the ledger.
//
// The domain keeps the keys of its own partition, and answers a key it has seen with the first
// result (or refuses it with other details). An account of another partition would not see that
// key, so a payment's key used for a second tenant there would be taken as a new payment. Each
// new key is therefore claimed here when its request is decided: a key another partition holds
// is refused (`idempotency_key_reused`, naming the txn that used it) before anything is written,
// like a meter another partition owns (MeterClaims).
//
// A claim is kept as 128 bits of the key's hash (two independent 64-bit hashes) and its owner
// (partition and the seq of the txn that used the key), 24 bytes in an open-addressed array with
// at most three quarters of its slots used (and at least three eighths, as it doubles): 32 to 64
// bytes a key, not the key's text, which its partition keeps. Two keys share 128 bits of hash
// about once in 2^128 pairs, so with a billion keys (about 2^59 pairs) the chance that any two do
// is about one in 2^69; such a pair would be refused as the same key.
//
// The slots are spread over kShards shards by hash, each with its own lock, so that the writers
// of different partitions rarely wait for each other, and growing a shard rehashes 1/kShards of
// the claims. Thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace wattledger::ledger::adapters {

class KeyClaims {
 public:
  struct Owner {
    uint32_t partition = 0;
    uint64_t seq = 0;  // Of the txn that used the key: its id is ledger/<partition>/<seq>.
    bool operator==(const Owner&) const = default;
  };

  // Partitions and seqs an Owner can hold: partitions below 2^16, seqs below 2^48 - 1 (packed
  // in 64 bits, plus one so that no owner packs to 0, the empty slot's).
  static constexpr uint32_t kMaxPartitions = 1u << 16;
  static constexpr uint64_t kMaxSeq = (uint64_t{1} << 48) - 2;

  // Claims `key` for `owner`. nullopt when the key was free (now owner's) or already held by
  // owner's partition; otherwise the owner that holds it, and nothing changes.
  std::optional<Owner> Claim(std::string_view key, Owner owner);

  // What `partition` holds once its state is rebuilt from the log up to `head` (at start, and
  // after a failed batch): it claims `keys`, each with the seq of its txn, and gives up its
  // claims above `head`, those of batches that were not written. In that order, so that a key
  // the log holds is never free in between for another partition's writer to take. A key
  // another partition holds stays that partition's. `keys` calls its argument with (key, seq)
  // for each key.
  template <typename ForEachKey>
  void ResetPartition(uint32_t partition, uint64_t head, const ForEachKey& keys) {
    keys([&](std::string_view key, uint64_t seq) { Claim(key, Owner{partition, seq}); });
    DropAbove(partition, head);
  }

  // Who holds `key`, if anyone.
  std::optional<Owner> Holder(std::string_view key) const;
  size_t size() const;

  static constexpr size_t kShards = 1024;

 private:
  struct Slot {
    uint64_t h1 = 0;
    uint64_t h2 = 0;
    uint64_t owner = 0;  // partition << 48 | seq, + 1; 0 when the slot is empty.
  };
  struct Shard {
    mutable std::mutex mu;
    std::vector<Slot> slots;  // A power of two of them, or none yet.
    size_t used = 0;
  };

  void DropAbove(uint32_t partition, uint64_t head);
  // The slot holding the key with these hashes, or the empty one where it would go.
  static size_t Probe(const Shard& s, uint64_t h1, uint64_t h2);
  static void Grow(Shard& s);

  std::array<Shard, kShards> shards_;
};

}  // namespace wattledger::ledger::adapters
