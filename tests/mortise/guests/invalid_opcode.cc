// Hostile: executes an undefined instruction.
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  asm volatile("ud2");
  return 0;
}
