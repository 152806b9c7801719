// Hostile: console write with a length that wraps any address arithmetic.
#include "hostile.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  static const char text[] = "x";
  tenon::abi::ConsoleWriteArgs args{reinterpret_cast<uint64_t>(text), ~0ull - 8, 0};
  hostile::raw_hypercall(tenon::abi::Hypercall::kConsoleWrite, &args);
  return 0;
}
