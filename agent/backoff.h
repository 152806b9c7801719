// Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, base * 2^n)], so
// a fleet of agents that lost the controller at once does not come back at once.
#pragma once

#include <cstdint>

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace tenon::agent {

class Backoff {
 public:
  Backoff(absl::Duration base, absl::Duration cap) : base_(base), cap_(cap) {}

  // The next wait; each call doubles the ceiling up to the cap.
  absl::Duration next();
  // The ceiling the next call draws under (for logs and tests).
  absl::Duration ceiling() const;
  void reset() { attempt_ = 0; }

 private:
  absl::Duration base_;
  absl::Duration cap_;
  uint32_t attempt_ = 0;
  absl::BitGen random_;
};

// The un-jittered exponential delay base * 2^attempt, capped: for restarts, where a person reads
// "restart in 4s" and expects the numbers to grow predictably.
absl::Duration capped_exponential(absl::Duration base, absl::Duration cap, uint32_t attempt);

}  // namespace tenon::agent
