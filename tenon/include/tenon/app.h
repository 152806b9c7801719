// The application entry point: every Tenon app defines tenon_main; its return value becomes the
// instance's exit status.
#pragma once

#include <stdint.h>

extern "C" int64_t tenon_main(void);
