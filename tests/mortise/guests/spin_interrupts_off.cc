// Hostile: spins forever with interrupts disabled; only the time limit can end it.
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  asm volatile("cli; 1: jmp 1b");
  return 0;
}
