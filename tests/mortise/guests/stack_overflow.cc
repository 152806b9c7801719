// Hostile: unbounded recursion runs the stack into its guard page.
#include <stdint.h>

#include "tenon/app.h"

namespace {
volatile uint64_t depth_limit = ~0ull;  // never reached; hides the recursion from the compiler

[[gnu::noinline]] uint64_t recurse(uint64_t depth) {
  volatile uint8_t frame[256];
  frame[0] = static_cast<uint8_t>(depth);
  if (depth == depth_limit) return frame[0];
  return recurse(depth + 1) + frame[0];
}
}  // namespace

extern "C" int64_t tenon_main(void) { return static_cast<int64_t>(recurse(0)); }
