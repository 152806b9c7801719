// Hostile: writes to a reserved guest page that is not mapped.
#include <stdint.h>

#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  *reinterpret_cast<volatile uint64_t*>(0x3000) = 1;
  return 0;
}
