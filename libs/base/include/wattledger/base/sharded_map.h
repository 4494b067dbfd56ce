#pragma once

// A hash map from string to V that never stops the world to grow.
//
// std::unordered_map rehashes every element when it outgrows its buckets: with a million
// idempotency keys that is tens of milliseconds in which the owning writer decides nothing, and
// every caller waiting on it sees the pause. ShardedStringMap splits the keys over kShards shards
// by the top bits of their hash, so each growth step moves 1/kShards of the slots. The total work
// is the same; the longest pause is kShards times shorter.
//
// The interface is the part of unordered_map that callers use: find/contains/at/emplace/erase,
// size, iteration (shard by shard, in no particular order) and equality. Lookups take string_view.
// As in unordered_map, an element's address is stable until it is erased; iterators are not (an
// emplace may move the slots, and an erase shifts the slots after the erased one back).

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "wattledger/base/linear_probing.h"

namespace wattledger {

// A key with its hash, computed once: the shard is chosen by its top bits and the slot by its
// low ones, so a lookup hashes the text once, not once per level.
struct HashedKey {
  std::string_view text;
  size_t hash;
};

// The hash of every string-keyed table here (ShardedStringMap, the ledger's KeyTable).
struct TransparentStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  size_t operator()(const HashedKey& k) const { return k.hash; }
};

template <typename V, size_t kShards = 256>
class ShardedStringMap {
  static_assert(kShards > 0 && (kShards & (kShards - 1)) == 0, "kShards must be a power of two");

 public:
  using key_type = std::string;
  using mapped_type = V;
  using value_type = std::pair<const std::string, V>;

 private:
  // Each element lives in a node of its own, which never moves: references to it stay valid
  // until it is erased, as in unordered_map. A shard finds its nodes through an open-addressed
  // array of (hash, node) slots, at most three quarters full: a lookup is one slot's cache line
  // and then the node, where unordered_map read its bucket, the node before the bucket's first
  // (libstdc++ keeps that one) and then the node, after a division by its prime bucket count.
  using Node = value_type;
  struct Slot {
    size_t hash = 0;
    Node* node = nullptr;  // Null: empty.
  };
  static bool Empty(const Slot& s) { return s.node == nullptr; }
  struct Shard {
    std::vector<Slot> slots;  // A power of two of them, or none yet.
    size_t used = 0;
  };
  using Shards = std::array<Shard, kShards>;

  template <typename ShardsT, typename Value>
  class Iter {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = typename ShardedStringMap::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;

    Iter() = default;
    Iter(ShardsT* shards, size_t shard, size_t slot) : shards_(shards), shard_(shard), slot_(slot) { SkipEmpty(); }
    // iterator → const_iterator.
    template <typename S2, typename V2>
      requires(std::is_const_v<ShardsT> && !std::is_const_v<S2>)
    Iter(const Iter<S2, V2>& o) : shards_(o.shards_), shard_(o.shard_), slot_(o.slot_) {}  // NOLINT

    reference operator*() const { return *(*shards_)[shard_].slots[slot_].node; }
    pointer operator->() const { return &**this; }
    Iter& operator++() {
      ++slot_;
      SkipEmpty();
      return *this;
    }
    Iter operator++(int) {
      Iter before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const Iter& a, const Iter& b) {
      return a.shard_ == b.shard_ && (a.shard_ == kShards || a.slot_ == b.slot_);
    }

   private:
    template <typename, typename>
    friend class Iter;
    friend class ShardedStringMap;
    void SkipEmpty() {
      while (shard_ < kShards) {
        const auto& slots = (*shards_)[shard_].slots;
        while (slot_ < slots.size() && slots[slot_].node == nullptr) ++slot_;
        if (slot_ < slots.size()) return;
        ++shard_;
        slot_ = 0;
      }
    }
    ShardsT* shards_ = nullptr;
    size_t shard_ = kShards;
    size_t slot_ = 0;
  };

 public:
  using iterator = Iter<Shards, value_type>;
  using const_iterator = Iter<const Shards, const value_type>;

  ShardedStringMap() = default;
  ~ShardedStringMap() { clear(); }
  ShardedStringMap(const ShardedStringMap& other) : size_(other.size_) {
    // Slot for slot, each node copied: the copy finds every key where the original does. If a
    // copy throws, the nodes copied so far are freed (no destructor runs for this one).
    try {
      for (size_t s = 0; s < kShards; ++s) {
        const Shard& from = other.shards_[s];
        Shard& to = shards_[s];
        to.slots.resize(from.slots.size());
        to.used = from.used;
        for (size_t i = 0; i < from.slots.size(); ++i) {
          if (from.slots[i].node != nullptr) to.slots[i] = {from.slots[i].hash, new Node(*from.slots[i].node)};
        }
      }
    } catch (...) {
      clear();
      throw;
    }
  }
  ShardedStringMap& operator=(const ShardedStringMap& other) {
    if (this != &other) {
      ShardedStringMap copy(other);
      *this = std::move(copy);
    }
    return *this;
  }
  // A map moved from is empty.
  ShardedStringMap(ShardedStringMap&& other) noexcept
      : shards_(std::exchange(other.shards_, {})), size_(std::exchange(other.size_, 0)) {}
  ShardedStringMap& operator=(ShardedStringMap&& other) noexcept {
    if (this != &other) {
      clear();
      shards_ = std::exchange(other.shards_, {});
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }

  iterator begin() { return {&shards_, 0, 0}; }
  iterator end() { return {&shards_, kShards, 0}; }
  const_iterator begin() const { return {&shards_, 0, 0}; }
  const_iterator end() const { return {&shards_, kShards, 0}; }

  iterator find(std::string_view key) {
    const HashedKey k = Hash(key);
    const size_t s = ShardOf(k);
    const size_t i = Find(shards_[s], k);
    return i == kNone ? end() : iterator(&shards_, s, i);
  }
  const_iterator find(std::string_view key) const {
    const HashedKey k = Hash(key);
    const size_t s = ShardOf(k);
    const size_t i = Find(shards_[s], k);
    return i == kNone ? end() : const_iterator(&shards_, s, i);
  }
  bool contains(std::string_view key) const { return find(key) != end(); }
  V& at(std::string_view key) { return AtImpl(*this, key); }
  const V& at(std::string_view key) const { return AtImpl(*this, key); }

  template <typename K, typename... Args>
  std::pair<iterator, bool> emplace(K&& key, Args&&... args) {
    std::string text(std::forward<K>(key));
    const HashedKey k = Hash(text);
    const size_t s = ShardOf(k);
    Shard& shard = shards_[s];
    size_t i = Probe(shard, k);
    if (i != kNone && shard.slots[i].node != nullptr) return {iterator(&shards_, s, i), false};
    if ((shard.used + 1) * 4 > shard.slots.size() * 3) {
      Grow(shard);
      i = Probe(shard, k);
    }
    shard.slots[i] = {k.hash, new Node(std::piecewise_construct, std::forward_as_tuple(std::move(text)),
                                       std::forward_as_tuple(std::forward<Args>(args)...))};
    shard.used++;
    size_++;
    return {iterator(&shards_, s, i), true};
  }
  size_t erase(std::string_view key) {
    const HashedKey k = Hash(key);
    Shard& shard = shards_[ShardOf(k)];
    const size_t i = Find(shard, k);
    if (i == kNone) return 0;
    delete shard.slots[i].node;
    const size_t mask = shard.slots.size() - 1;
    linear_probing::EraseAt(shard.slots, i, Empty, [mask](const Slot& s) { return s.hash & mask; });
    shard.used--;
    --size_;
    return 1;
  }

  // Starts loading the slot where a lookup of `key` begins (a software prefetch), for a caller
  // that knows a key a little before it looks it up. Changes nothing.
  void PrefetchSlot(std::string_view key) const {
    const HashedKey k = Hash(key);
    const Shard& shard = shards_[ShardOf(k)];
    if (!shard.slots.empty()) __builtin_prefetch(&shard.slots[k.hash & (shard.slots.size() - 1)]);
  }
  // Starts loading the element of `key`: after PrefetchSlot(key), once that had time to arrive,
  // this reads the run of slots from there (cached: four to a line) for the key's hash, without
  // reading any element's key. Changes nothing; returns the address of the first element in the
  // run whose slot holds the key's hash (the key's own, unless another key has the same 64-bit
  // hash), or null if none of the first kPrefetchRun slots does.
  const value_type* PrefetchElement(std::string_view key) const {
    const HashedKey k = Hash(key);
    const Shard& shard = shards_[ShardOf(k)];
    if (shard.slots.empty()) return nullptr;
    const size_t mask = shard.slots.size() - 1;
    for (size_t n = 0, i = k.hash & mask; n < kPrefetchRun; ++n, i = (i + 1) & mask) {
      const Slot& slot = shard.slots[i];
      if (slot.node == nullptr) return nullptr;
      if (slot.hash == k.hash) {
        __builtin_prefetch(slot.node);
        return slot.node;
      }
    }
    return nullptr;
  }
  static constexpr size_t kPrefetchRun = 16;

  // Kept, not summed over the shards: empty() is on hot paths, and the sum touched every shard.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() {
    for (Shard& shard : shards_) {
      for (Slot& slot : shard.slots) delete slot.node;
      shard = Shard{};
    }
    size_ = 0;
  }
  // Equal keys with equal values, whatever the order they were added in.
  friend bool operator==(const ShardedStringMap& a, const ShardedStringMap& b) {
    if (a.size_ != b.size_) return false;
    for (const auto& [key, value] : a) {
      auto it = b.find(key);
      if (it == b.end() || !(it->second == value)) return false;
    }
    return true;
  }

  static size_t ShardOf(std::string_view key) { return ShardOf(Hash(key)); }
  static size_t ShardOf(const HashedKey& key) {
    // The top bits: a shard's slots are chosen by the low ones.
    constexpr unsigned kBits = std::countr_zero(kShards);
    if constexpr (kBits == 0) {
      return 0;
    } else {
      return static_cast<size_t>(key.hash >> (sizeof(size_t) * 8 - kBits));
    }
  }

 private:
  static constexpr size_t kNone = SIZE_MAX;
  static HashedKey Hash(std::string_view key) { return {key, TransparentStringHash{}(key)}; }

  // The slot holding `k`, or kNone if the shard has none.
  static size_t Find(const Shard& shard, const HashedKey& k) {
    const size_t i = Probe(shard, k);
    return i == kNone || shard.slots[i].node == nullptr ? kNone : i;
  }

  // The slot holding `k`, or the empty slot where it would go; kNone if the shard has no slots.
  static size_t Probe(const Shard& shard, const HashedKey& k) {
    if (shard.slots.empty()) return kNone;
    const size_t mask = shard.slots.size() - 1;
    for (size_t i = k.hash & mask;; i = (i + 1) & mask) {
      const Slot& slot = shard.slots[i];
      if (slot.node == nullptr) return i;
      if (slot.hash == k.hash && slot.node->first == k.text) return i;
    }
  }

  // Twice the slots (16 at first): growing a shard moves only its slots, never its nodes.
  static void Grow(Shard& shard) {
    std::vector<Slot> old = std::exchange(shard.slots, std::vector<Slot>(std::max<size_t>(16, 2 * shard.slots.size())));
    const size_t mask = shard.slots.size() - 1;
    for (const Slot& slot : old) {
      if (!Empty(slot)) linear_probing::Place(shard.slots, slot.hash & mask, slot, Empty);
    }
  }

  template <typename Self>
  static auto& AtImpl(Self& self, std::string_view key) {
    auto it = self.find(key);
    if (it == self.end()) throw std::out_of_range("ShardedStringMap::at: no key " + std::string(key));
    return it->second;
  }

  Shards shards_;
  size_t size_ = 0;
};

}  // namespace wattledger
