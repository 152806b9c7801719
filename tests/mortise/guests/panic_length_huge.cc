// Hostile (QEMU platform): a panic record whose message length runs far past the record.
#include "exit_protocol.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  tenon::abi::ExitRecord* record = hostile::exit_record();
  record->magic = tenon::abi::kExitRecordMagic;
  record->kind = static_cast<uint32_t>(tenon::abi::Hypercall::kPanic);
  record->panic_length = ~0ull;
  hostile::write_exit_port(static_cast<uint32_t>(tenon::abi::Hypercall::kPanic));
}
