// Hostile: jumps into a no-execute page (a `ret` written into a stack buffer).
#include <stdint.h>

#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  volatile uint8_t code[16] = {0xc3};
  auto* function = reinterpret_cast<void (*)()>(const_cast<uint8_t*>(code));
  function();
  return 0;
}
