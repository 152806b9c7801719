// Hostile (QEMU platform): the exit record says "exit", the exit port says "fault".
#include "exit_protocol.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) {
  tenon::abi::ExitRecord* record = hostile::exit_record();
  record->magic = tenon::abi::kExitRecordMagic;
  record->kind = static_cast<uint32_t>(tenon::abi::Hypercall::kExit);
  record->exit.status = 0;
  hostile::write_exit_port(static_cast<uint32_t>(tenon::abi::Hypercall::kFault));
}
