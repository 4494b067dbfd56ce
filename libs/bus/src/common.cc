#include "wattledger/bus/bus.h"

namespace wattledger::bus {

void SequenceTracker::Reset(uint32_t partitions, const StartPositionFn& start) {
  last_.assign(partitions, 0);
  start_offsets_.assign(partitions, -1);
  for (uint32_t p = 0; p < partitions; ++p) {
    eventlog::Position pos = start ? start(p) : eventlog::Position{};
    last_[p] = pos.seq;
    start_offsets_[p] = pos.offset;
  }
}

SequenceTracker::Verdict SequenceTracker::Check(uint32_t partition, uint64_t seq) const {
  if (seq <= last_[partition]) return Verdict::kDuplicate;
  if (seq != last_[partition] + 1) return Verdict::kGap;
  return Verdict::kDeliver;
}

Status ValidateEnvelope(const eventlog::Envelope& envelope, uint32_t partition, uint32_t partitions) {
  if (envelope.partition() != partition) {
    return InvalidArgument("envelope says partition " + std::to_string(envelope.partition()) +
                           " but arrived on partition " + std::to_string(partition));
  }
  if (partition >= partitions) {
    return InvalidArgument("partition " + std::to_string(partition) + " out of range");
  }
  if (envelope.seq() == 0) return InvalidArgument("envelope has seq 0");
  if (envelope.type().empty()) return InvalidArgument("envelope has no type");
  if (envelope.hash().size() != eventlog::kHashBytes ||
      eventlog::EventLog::ComputeHash(envelope) != envelope.hash()) {
    return InvalidArgument("envelope " + envelope.event_id() + " hash does not match its content");
  }
  return Status::Ok();
}

}  // namespace wattledger::bus
