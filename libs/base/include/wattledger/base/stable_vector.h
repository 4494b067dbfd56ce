#pragma once

// An append-only sequence whose elements never move.
//
// std::vector moves every element when it outgrows its capacity: for an account with a million
// statement entries that is a pause of tens of milliseconds on the partition's writer, for every
// command queued behind it. StableVector keeps its elements in chunks of doubling size (by default
// 4, 8, 16, ...; FirstBits sets the first chunk to 1 << FirstBits); appending allocates at most a
// new chunk and never touches the elements already there. Memory stays within about twice the
// elements, as with a vector; indexing is two shifts away.

#include <bit>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace wattledger {

template <typename T, unsigned FirstBits = 2>
class StableVector {
  static constexpr unsigned kFirstBits = FirstBits;  // The first chunk holds 1 << kFirstBits elements.

  // Element i lives in chunk ChunkOf(i) at OffsetOf(i): chunk k holds 1 << (k + kFirstBits).
  static size_t ChunkOf(size_t i) {
    return static_cast<size_t>(std::bit_width(i + (size_t{1} << kFirstBits))) - kFirstBits - 1;
  }
  static size_t OffsetOf(size_t i, size_t chunk) {
    return i + (size_t{1} << kFirstBits) - (size_t{1} << (chunk + kFirstBits));
  }

  template <typename Owner, typename Value>
  class Iter {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using pointer = Value*;
    using reference = Value&;
    Iter() = default;
    Iter(Owner* owner, size_t i) : owner_(owner), i_(i) {}
    reference operator*() const { return (*owner_)[i_]; }
    pointer operator->() const { return &(*owner_)[i_]; }
    Iter& operator++() {
      ++i_;
      return *this;
    }
    Iter operator++(int) {
      Iter before = *this;
      ++i_;
      return before;
    }
    friend bool operator==(const Iter& a, const Iter& b) { return a.i_ == b.i_; }

   private:
    Owner* owner_ = nullptr;
    size_t i_ = 0;
  };

 public:
  using value_type = T;
  using iterator = Iter<StableVector, T>;
  using const_iterator = Iter<const StableVector, const T>;

  StableVector() = default;
  StableVector(std::initializer_list<T> items) {
    for (const T& t : items) push_back(t);
  }
  // A copied std::vector gets capacity == size; each chunk of the copy is reserved in full again,
  // so that appending to the copy does not move its elements either.
  StableVector(const StableVector& other) : size_(other.size_) {
    chunks_.reserve(other.chunks_.size());
    for (size_t k = 0; k < other.chunks_.size(); ++k) {
      chunks_.emplace_back();
      chunks_.back().reserve(size_t{1} << (k + kFirstBits));
      chunks_.back().insert(chunks_.back().end(), other.chunks_[k].begin(), other.chunks_[k].end());
    }
  }
  StableVector(StableVector&& other) noexcept
      : chunks_(std::move(other.chunks_)), size_(std::exchange(other.size_, 0)) {
    other.chunks_.clear();
  }
  StableVector& operator=(const StableVector& other) {
    if (this != &other) *this = StableVector(other);
    return *this;
  }
  StableVector& operator=(StableVector&& other) noexcept {
    if (this == &other) return *this;
    chunks_ = std::move(other.chunks_);
    other.chunks_.clear();
    size_ = std::exchange(other.size_, 0);
    return *this;
  }

  void push_back(T value) {
    const size_t chunk = ChunkOf(size_);
    if (chunk == chunks_.size()) {
      chunks_.emplace_back();
      chunks_.back().reserve(size_t{1} << (chunk + kFirstBits));  // Filled, never grown: no move.
    }
    chunks_[chunk].push_back(std::move(value));
    ++size_;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T& operator[](size_t i) { return chunks_[ChunkOf(i)][OffsetOf(i, ChunkOf(i))]; }
  const T& operator[](size_t i) const { return chunks_[ChunkOf(i)][OffsetOf(i, ChunkOf(i))]; }
  T& at(size_t i) { return i < size_ ? (*this)[i] : OutOfRange(i); }
  const T& at(size_t i) const { return i < size_ ? (*this)[i] : OutOfRange(i); }
  T& back() { return chunks_.back().back(); }
  const T& back() const { return chunks_.back().back(); }

  iterator begin() { return {this, 0}; }
  iterator end() { return {this, size_}; }
  const_iterator begin() const { return {this, 0}; }
  const_iterator end() const { return {this, size_}; }

  friend bool operator==(const StableVector& a, const StableVector& b) {
    if (a.size_ != b.size_) return false;
    for (size_t i = 0; i < a.size_; ++i) {
      if (!(a[i] == b[i])) return false;
    }
    return true;
  }

 private:
  [[noreturn]] T& OutOfRange(size_t i) const {
    throw std::out_of_range("StableVector::at: index " + std::to_string(i) + " of " + std::to_string(size_));
  }

  std::vector<std::vector<T>> chunks_;
  size_t size_ = 0;
};

}  // namespace wattledger
