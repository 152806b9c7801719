// Tenon panic (micro-library `panic`): stop the instance with a message when an invariant breaks.
#pragma once

extern "C" [[noreturn]] void tenon_panic(const char* message);

#define TENON_STRINGIFY_DETAIL(x) #x
#define TENON_STRINGIFY(x) TENON_STRINGIFY_DETAIL(x)
#define TENON_ASSERT(condition)                                                              \
  do {                                                                                       \
    if (!(condition))                                                                        \
      tenon_panic(__FILE__ ":" TENON_STRINGIFY(__LINE__) ": assertion failed: " #condition); \
  } while (0)
