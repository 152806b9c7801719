// hello: the smallest useful Tenon app - prints to the console and exits.
#include "tenon/app.h"
#include "tenon/console.h"
#include "tenon/time.h"

extern "C" int64_t tenon_main(void) {
  tenon::console::println("Hello from Tenon! booted in ", tenon::time::now_ns(), " ns");
  return 0;
}
