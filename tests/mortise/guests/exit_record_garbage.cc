// Hostile (QEMU platform): ends through the exit port without a valid exit record.
#include "exit_protocol.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  hostile::exit_record()->magic = 0x12345678;
  hostile::write_exit_port(static_cast<uint32_t>(tenon::abi::Hypercall::kExit));
}
