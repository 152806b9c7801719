// Hostile: a hypercall whose argument block address lies past the end of guest memory.
#include "hostile.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  hostile::raw_hypercall(static_cast<uint16_t>(tenon::abi::Hypercall::kExit), 0xfffffff0u);
  return 0;
}
