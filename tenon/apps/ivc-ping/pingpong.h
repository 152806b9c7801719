// The messages of ivc-ping and ivc-pong over their channel "pingpong".
#pragma once

#include <stdint.h>

namespace pingpong {

inline constexpr char kChannel[] = "pingpong";

enum class Kind : uint32_t {
  kRoundTrip = 1,     // ping -> pong, echoed back unchanged
  kStream = 2,        // ping -> pong, not answered
  kStreamEnd = 3,     // the last stream message; pong answers with kStreamReport
  kStreamReport = 4,  // pong -> ping: sequence = stream messages received in order
  kDone = 5,          // ping -> pong: pong reports and exits
};

struct Message {
  uint64_t sequence;
  Kind kind;
  uint32_t wait;      // the tenon_ivc_wait the sender uses, so pong waits the same way
  uint64_t errors;    // kStreamReport: messages out of order or malformed
  uint8_t filler[8];  // brings the message to 32 bytes
};
static_assert(sizeof(Message) == 32);

}  // namespace pingpong
