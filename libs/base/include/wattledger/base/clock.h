// Clock is injected wherever time matters, so tests decide what "now" is.
#pragma once

#include <atomic>
#include <cstdint>

namespace wattledger {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time in Unix microseconds.
  virtual int64_t NowMicros() const = 0;
};

// SystemClock reads the real wall clock. Thread-safe.
class SystemClock final : public Clock {
 public:
  int64_t NowMicros() const override;
  static SystemClock* Default();
};

// ManualClock only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_us = 1'700'000'000'000'000) : now_us_(start_us) {}
  int64_t NowMicros() const override { return now_us_.load(std::memory_order_relaxed); }
  void AdvanceMicros(int64_t delta_us) { now_us_.fetch_add(delta_us, std::memory_order_relaxed); }
  void SetMicros(int64_t now_us) { now_us_.store(now_us, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_us_;
};

}  // namespace wattledger
