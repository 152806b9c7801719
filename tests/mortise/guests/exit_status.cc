// Exits with status 42 and links no console: its status must reach `mortise run`, and its symbol
// table must hold none of the console library's code.
#include "tenon/app.h"

extern "C" int64_t tenon_main(void) { return 42; }
