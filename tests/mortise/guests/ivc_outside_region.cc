// Writes just past its channel's shared region, inside the IVC window: there is no memory
// there, so Mortise must stop this instance (and only it).
#include <stdint.h>

#include "tenon/abi.h"
#include "tenon/platform.h"

extern "C" int64_t tenon_main(void) {
  const tenon::abi::BootInfo* boot_info = tenon_platform_boot_info();
  if (boot_info->ivc_channel_count == 0) return 2;
  const tenon::abi::IvcChannelInfo& channel = boot_info->ivc_channels[0];
  *reinterpret_cast<volatile uint64_t*>(channel.region_address + channel.region_size) = 1;
  return 0;
}
