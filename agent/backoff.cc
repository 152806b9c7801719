// See backoff.h.
#include "backoff.h"

#include <algorithm>

namespace tenon::agent {

absl::Duration capped_exponential(absl::Duration base, absl::Duration cap, uint32_t attempt) {
  absl::Duration delay = base;
  for (uint32_t i = 0; i < attempt && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

absl::Duration Backoff::ceiling() const { return capped_exponential(base_, cap_, attempt_); }

absl::Duration Backoff::next() {
  const absl::Duration ceiling_now = ceiling();
  if (attempt_ < 64) ++attempt_;
  const double fraction = absl::Uniform(random_, 0.0, 1.0);
  return ceiling_now * fraction;
}

}  // namespace tenon::agent
