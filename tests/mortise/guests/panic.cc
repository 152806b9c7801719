// Fails an assertion: the instance stops with the panic message.
#include "tenon/panic.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  volatile int answer = 41;
  TENON_ASSERT(answer == 42);
  return 0;
}
