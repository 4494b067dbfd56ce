#pragma once

// The moves every open-addressed table here makes (PointerMap, ShardedStringMap, the ledger's
// KeyTable): linear probing in a power-of-two array of slots. `empty(slot)` says whether a slot is
// free; `home(slot)` is where a lookup of the slot's key starts.

#include <cstddef>
#include <utility>
#include <vector>

namespace wattledger::linear_probing {

// Puts `slot` in the first free place from `home` on (growing a table: the slots are moved into
// a larger array).
template <typename Slot, typename Empty>
void Place(std::vector<Slot>& slots, size_t home, Slot slot, Empty empty) {
  const size_t mask = slots.size() - 1;
  size_t i = home;
  while (!empty(slots[i])) i = (i + 1) & mask;
  slots[i] = std::move(slot);
}

// Empties slots[i], whose key is being removed, without tombstones. Backward shift: each later
// slot of the run moves into the hole unless its home lies (cyclically) after the hole, where a
// lookup starting there would no longer pass the hole.
template <typename Slot, typename Empty, typename Home>
void EraseAt(std::vector<Slot>& slots, size_t i, Empty empty, Home home) {
  const size_t mask = slots.size() - 1;
  size_t hole = i;
  for (size_t j = (i + 1) & mask; !empty(slots[j]); j = (j + 1) & mask) {
    if (((j - home(slots[j])) & mask) >= ((j - hole) & mask)) {
      slots[hole] = std::move(slots[j]);
      hole = j;
    }
  }
  slots[hole] = Slot{};
}

}  // namespace wattledger::linear_probing
