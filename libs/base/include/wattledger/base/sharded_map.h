#pragma once

// A hash map from string to V that never stops the world to grow.
//
// std::unordered_map rehashes every element when it outgrows its buckets: with a million
// idempotency keys that is tens of milliseconds in which the owning writer decides nothing, and
// every caller waiting on it sees the pause. ShardedStringMap splits the keys over kShards inner
// maps by the top bits of their hash, so each growth step rehashes 1/kShards of the elements. The
// total work is the same; the longest pause is kShards times shorter.
//
// The interface is the part of unordered_map that callers use: find/contains/at/emplace/erase,
// size, iteration (shard by shard, in no particular order) and equality. Lookups take string_view.

#include <array>
#include <cstddef>
#include <functional>
#include <bit>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace wattledger {

// A key with its hash, computed once: the shard is chosen by its top bits and the inner map
// buckets by the whole of it, so a lookup hashes the text once, not once per level.
struct HashedKey {
  std::string_view text;
  size_t hash;
};

struct TransparentStringHash {
  using is_transparent = void;
  // Deliberately not noexcept: libstdc++ then stores each element's hash next to it (see
  // __cache_default), so walking a bucket compares stored hashes instead of hashing every key it
  // passes, and growing a shard does not hash its keys again. Without it, a lookup that missed in
  // a map of millions of transaction ids hashed several of them.
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  size_t operator()(const HashedKey& k) const { return k.hash; }
};

struct TransparentStringEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
  bool operator()(const HashedKey& a, std::string_view b) const noexcept { return a.text == b; }
  bool operator()(std::string_view a, const HashedKey& b) const noexcept { return a == b.text; }
};

template <typename V, size_t kShards = 256>
class ShardedStringMap {
  static_assert(kShards > 0 && (kShards & (kShards - 1)) == 0, "kShards must be a power of two");
  using Inner = std::unordered_map<std::string, V, TransparentStringHash, TransparentStringEqual>;
#ifdef __GLIBCXX__
  static_assert(std::__cache_default<std::string, TransparentStringHash>::value,
                "the inner maps must keep each element's hash (see TransparentStringHash)");
#endif
  using Shards = std::array<Inner, kShards>;

  template <typename ShardsT, typename InnerIt, typename Value>
  class Iter {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = typename Inner::value_type;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;

    Iter() = default;
    Iter(ShardsT* shards, size_t shard, InnerIt it) : shards_(shards), shard_(shard), it_(it) { SkipEmpty(); }
    // iterator → const_iterator.
    template <typename S2, typename I2, typename V2>
      requires(std::is_const_v<ShardsT> && !std::is_const_v<S2>)
    Iter(const Iter<S2, I2, V2>& o) : shards_(o.shards_), shard_(o.shard_), it_(o.it_) {}  // NOLINT

    reference operator*() const { return *it_; }
    pointer operator->() const { return &*it_; }
    Iter& operator++() {
      ++it_;
      SkipEmpty();
      return *this;
    }
    Iter operator++(int) {
      Iter before = *this;
      ++*this;
      return before;
    }
    friend bool operator==(const Iter& a, const Iter& b) {
      return a.shard_ == b.shard_ && (a.shard_ == kShards || a.it_ == b.it_);
    }

   private:
    template <typename, typename, typename>
    friend class Iter;
    friend class ShardedStringMap;
    void SkipEmpty() {
      while (shard_ < kShards && it_ == (*shards_)[shard_].end()) {
        if (++shard_ < kShards) it_ = (*shards_)[shard_].begin();
      }
    }
    ShardsT* shards_ = nullptr;
    size_t shard_ = kShards;
    InnerIt it_{};
  };

 public:
  using key_type = std::string;
  using mapped_type = V;
  using value_type = typename Inner::value_type;
  using iterator = Iter<Shards, typename Inner::iterator, value_type>;
  using const_iterator = Iter<const Shards, typename Inner::const_iterator, const value_type>;

  ShardedStringMap() = default;
  ShardedStringMap(const ShardedStringMap&) = default;
  ShardedStringMap& operator=(const ShardedStringMap&) = default;
  ShardedStringMap(ShardedStringMap&& other) noexcept
      : shards_(std::move(other.shards_)), size_(std::exchange(other.size_, 0)) {
    other.clear();
  }
  ShardedStringMap& operator=(ShardedStringMap&& other) noexcept {
    if (this != &other) {
      shards_ = std::move(other.shards_);
      size_ = std::exchange(other.size_, 0);
      other.clear();
    }
    return *this;
  }

  iterator begin() { return {&shards_, 0, shards_[0].begin()}; }
  iterator end() { return {&shards_, kShards, {}}; }
  const_iterator begin() const { return {&shards_, 0, shards_[0].begin()}; }
  const_iterator end() const { return {&shards_, kShards, {}}; }

  iterator find(std::string_view key) {
    const HashedKey k = Hash(key);
    const size_t s = ShardOf(k);
    auto it = shards_[s].find(k);
    return it == shards_[s].end() ? end() : iterator(&shards_, s, it);
  }
  const_iterator find(std::string_view key) const {
    const HashedKey k = Hash(key);
    const size_t s = ShardOf(k);
    auto it = shards_[s].find(k);
    return it == shards_[s].end() ? end() : const_iterator(&shards_, s, it);
  }
  bool contains(std::string_view key) const {
    const HashedKey k = Hash(key);
    return shards_[ShardOf(k)].contains(k);
  }
  V& at(std::string_view key) { return AtImpl(*this, key); }
  const V& at(std::string_view key) const { return AtImpl(*this, key); }

  template <typename K, typename... Args>
  std::pair<iterator, bool> emplace(K&& key, Args&&... args) {
    std::string k(std::forward<K>(key));
    const size_t s = ShardOf(k);
    auto [it, inserted] = shards_[s].try_emplace(std::move(k), std::forward<Args>(args)...);
    size_ += inserted ? 1 : 0;
    return {iterator(&shards_, s, it), inserted};
  }
  size_t erase(std::string_view key) {
    const HashedKey k = Hash(key);
    Inner& inner = shards_[ShardOf(k)];
    auto it = inner.find(k);
    if (it == inner.end()) return 0;
    inner.erase(it);
    --size_;
    return 1;
  }

  // Kept, not summed over the shards: empty() is on hot paths, and the sum touched every shard.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() {
    for (Inner& inner : shards_) inner.clear();
    size_ = 0;
  }
  // Keys land in the same shard whatever the map's history, so shard-wise equality is equality.
  bool operator==(const ShardedStringMap&) const = default;

  static size_t ShardOf(std::string_view key) { return ShardOf(Hash(key)); }
  static size_t ShardOf(const HashedKey& key) {
    // The top bits: the inner map takes the hash modulo its (prime) bucket count.
    constexpr unsigned kBits = std::countr_zero(kShards);
    if constexpr (kBits == 0) {
      return 0;
    } else {
      return static_cast<size_t>(key.hash >> (sizeof(size_t) * 8 - kBits));
    }
  }

 private:
  static HashedKey Hash(std::string_view key) { return {key, TransparentStringHash{}(key)}; }

  template <typename Self>
  static auto& AtImpl(Self& self, std::string_view key) {
    const HashedKey k = Hash(key);
    auto& inner = self.shards_[ShardOf(k)];
    auto it = inner.find(k);
    if (it == inner.end()) throw std::out_of_range("ShardedStringMap::at: no key " + std::string(key));
    return it->second;
  }

  Shards shards_;
  size_t size_ = 0;
};

}  // namespace wattledger
