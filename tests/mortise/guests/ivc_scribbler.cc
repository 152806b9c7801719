// A hostile IVC endpoint: writes pseudo-random values over every part of channel "hostile"'s
// shared region (its own side, the peer's indices and slots alike) and rings the peer's
// doorbell, forever. It never calls the ivc library: it takes the region from the boot info.
#include <stdint.h>

#include "tenon/abi.h"
#include "tenon/platform.h"

extern "C" int64_t tenon_main(void) {
  const tenon::abi::BootInfo* boot_info = tenon_platform_boot_info();
  if (boot_info->ivc_channel_count == 0) return 2;
  const tenon::abi::IvcChannelInfo& channel = boot_info->ivc_channels[0];
  auto* words = reinterpret_cast<volatile uint64_t*>(channel.region_address);
  const uint64_t word_count = tenon::abi::kIvcRegionBytes / sizeof(uint64_t);
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (uint64_t round = 0;; ++round) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    // Mostly the control lines and slot lengths (where validation matters), sometimes anywhere.
    uint64_t index = state % word_count;
    if ((state >> 40) % 2 == 0) index = (state >> 20) % 32;
    // Small values look plausible (an index a little ahead, a length a little too long).
    words[index] = (state >> 60) < 8 ? (state >> 50) % 200 : state;
    if (round % 64 == 0) {
      const uint8_t value = 1;
      asm volatile("outb %0, %1" : : "a"(value), "Nd"(channel.doorbell_port) : "memory");
    }
  }
}
