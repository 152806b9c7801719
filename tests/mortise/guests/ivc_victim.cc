// An IVC endpoint facing a hostile peer (ivc_scribbler): it keeps sending and receiving on
// channel "hostile" for a fixed number of rounds, checks that every result is one the API
// promises and that no receive wrote past the length it returned, and exits 0 when all held.
// The peer errors it saw are counted in its telemetry page.
#include <stdint.h>

#include "tenon/console.h"
#include "tenon/ivc.h"

namespace {
constexpr uint32_t kRounds = 3000;
constexpr uint32_t kCapacity = 24;
constexpr uint8_t kCanary = 0xa5;
}  // namespace

extern "C" int64_t tenon_main(void) {
  const int32_t channel = tenon_ivc_open("hostile");
  if (channel < 0) return 2;
  uint64_t received = 0, sent = 0, peer_errors = 0, broken = 0;
  uint8_t buffer[kCapacity + 16];
  for (uint32_t round = 0; round < kRounds; ++round) {
    for (uint8_t& byte : buffer) byte = kCanary;
    const int32_t got = round % 3 == 2 ? tenon_ivc_recv_wait(channel, buffer, kCapacity,
                                                             TENON_IVC_WAIT_POLL, 20'000)
                                       : tenon_ivc_recv(channel, buffer, kCapacity);
    if (got >= 0) {
      ++received;
      if (static_cast<uint32_t>(got) > kCapacity) {
        ++broken;
      } else {
        for (uint32_t i = static_cast<uint32_t>(got); i < sizeof buffer; ++i) {
          if (buffer[i] != kCanary) ++broken;
        }
      }
    } else if (got == TENON_IVC_PEER_ERROR) {
      ++peer_errors;
    } else if (got != TENON_IVC_WOULD_BLOCK && got != TENON_IVC_TOO_LONG &&
               got != TENON_IVC_TIMED_OUT) {
      ++broken;
    }
    const uint64_t message = round;
    const int32_t status = tenon_ivc_send(channel, &message, sizeof message);
    if (status == TENON_IVC_OK) {
      ++sent;
    } else if (status == TENON_IVC_PEER_ERROR) {
      ++peer_errors;
    } else if (status != TENON_IVC_WOULD_BLOCK) {
      ++broken;
    }
  }
  tenon::console::println("ivc-victim: rounds=", kRounds, " received=", received, " sent=", sent,
                          " peer_errors=", peer_errors, " broken=", broken);
  return broken == 0 ? 0 : 1;
}
