// Tenon console: text output to the instance console (micro-library `console`).
#pragma once

#include <stdint.h>

extern "C" {
// Writes `length` bytes; returns the number accepted by the platform.
uint64_t tenon_console_write(const char* data, uint64_t length);
// Writes a NUL-terminated string.
void tenon_console_print(const char* text);
void tenon_console_print_i64(int64_t value);
void tenon_console_print_u64(uint64_t value);
void tenon_console_print_hex(uint64_t value);
}

namespace tenon::console {
inline void print(const char* text) { tenon_console_print(text); }
inline void print(int64_t value) { tenon_console_print_i64(value); }
inline void print(uint64_t value) { tenon_console_print_u64(value); }
inline void print(int value) { tenon_console_print_i64(value); }
inline void print(unsigned value) { tenon_console_print_u64(value); }
inline void print_hex(uint64_t value) { tenon_console_print_hex(value); }

// print("a", 1, "b") writes each argument in turn.
template <typename... Args>
inline void println(const Args&... args) {
  (print(args), ...);
  print("\n");
}
}  // namespace tenon::console
