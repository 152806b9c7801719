// Tenon exit: end the instance with a status (0 is success). The app's tenon_main return value
// is passed here too.
#pragma once

#include <stdint.h>

extern "C" [[noreturn]] void tenon_exit(int64_t status);
