// panic: report a broken invariant to the hypervisor, which stops the instance with the message.
#include "tenon/panic.h"

#include <stdint.h>

#include "tenon/platform.h"

extern "C" [[noreturn]] void tenon_panic(const char* message) {
  uint64_t length = 0;
  while (message[length] != '\0') ++length;
  tenon_platform_panic(message, length);
}
