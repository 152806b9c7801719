// Hostile (QEMU platform): writes a value to the exit port that names no way to end.
#include "exit_protocol.h"
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) { hostile::write_exit_port(99); }
