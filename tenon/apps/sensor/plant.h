// The messages of sensor and ivc-control over their channel "plant" (fixed point, 16 fractional
// bits: the LibOS has no floating point).
#pragma once

#include <stdint.h>

namespace plant {

inline constexpr char kChannel[] = "plant";
inline constexpr int64_t kOne = 1 << 16;

struct Reading {  // sensor -> control, every millisecond
  uint64_t sequence;
  int64_t output;  // the plant's output
};

struct Command {  // control -> sensor, every millisecond
  uint64_t sequence;
  int64_t control;  // the actuator setting
};

}  // namespace plant
