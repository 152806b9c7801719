// ivc-pong: the echoing end of ivc-ping. Echoes round trips, counts the stream (checking that
// every sequence number arrives once and in order), and exits 0 when ping says it is done and
// nothing was out of order.
#include <stdint.h>

#include "../ivc-ping/pingpong.h"
#include "tenon/console.h"
#include "tenon/ivc.h"

namespace {
using pingpong::Kind;
using pingpong::Message;
}  // namespace

extern "C" int64_t tenon_main(void) {
  const int32_t channel = tenon_ivc_open(pingpong::kChannel);
  if (channel < 0) {
    tenon::console::println("ivc-pong: no channel ", pingpong::kChannel);
    return 2;
  }
  // Waits by doorbell until the first message says how ping waits.
  tenon_ivc_wait wait = TENON_IVC_WAIT_DOORBELL;
  uint64_t next_round_trip = 0, next_stream = 0, errors = 0, peer_errors = 0;
  for (;;) {
    Message message{};
    const int32_t length = tenon_ivc_recv_wait(channel, &message, sizeof message, wait, 0);
    if (length == TENON_IVC_PEER_ERROR) {
      ++peer_errors;
      continue;
    }
    if (length != sizeof message) {
      ++errors;
      continue;
    }
    wait = message.wait == TENON_IVC_WAIT_POLL ? TENON_IVC_WAIT_POLL : TENON_IVC_WAIT_DOORBELL;
    switch (message.kind) {
      case Kind::kRoundTrip:
        if (message.sequence != next_round_trip) ++errors;
        next_round_trip = message.sequence + 1;
        tenon_ivc_send_wait(channel, &message, sizeof message, wait, 0);
        break;
      case Kind::kStream:
      case Kind::kStreamEnd:
        if (message.sequence != next_stream) ++errors;
        next_stream = message.sequence + 1;
        if (message.kind == Kind::kStreamEnd) {
          Message report{next_stream, Kind::kStreamReport, wait, errors, {}};
          tenon_ivc_send_wait(channel, &report, sizeof report, wait, 0);
        }
        break;
      case Kind::kDone:
        tenon::console::println("ivc-pong: round_trips=", next_round_trip, " stream=", next_stream,
                                " errors=", errors, " peer_errors=", peer_errors);
        return errors == 0 && peer_errors == 0 ? 0 : 1;
      default:
        ++errors;
    }
  }
}
