// Hostile: a hypercall number Mortise does not know.
#include "hostile.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  hostile::raw_hypercall(99, 0x1000);
  return 0;
}
