// Hostile: console write whose buffer lies past the end of guest memory.
#include "hostile.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  tenon::abi::ConsoleWriteArgs args{0x7fff0000, 16, 0};
  hostile::raw_hypercall(tenon::abi::Hypercall::kConsoleWrite, &args);
  return 0;
}
