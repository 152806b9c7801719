// console: text and integer output on top of the platform's console primitive.
#include "tenon/console.h"

#include "tenon/platform.h"

namespace {
uint64_t string_length(const char* text) {
  uint64_t length = 0;
  while (text[length] != '\0') ++length;
  return length;
}
}  // namespace

extern "C" uint64_t tenon_console_write(const char* data, uint64_t length) {
  return tenon_platform_console_write(data, length);
}

extern "C" void tenon_console_print(const char* text) {
  tenon_platform_console_write(text, string_length(text));
}

extern "C" void tenon_console_print_u64(uint64_t value) {
  char digits[20];
  int count = 0;
  do {
    digits[sizeof(digits) - 1 - count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  tenon_platform_console_write(digits + sizeof(digits) - count, count);
}

extern "C" void tenon_console_print_i64(int64_t value) {
  if (value < 0) {
    tenon_platform_console_write("-", 1);
    tenon_console_print_u64(0 - static_cast<uint64_t>(value));
    return;
  }
  tenon_console_print_u64(static_cast<uint64_t>(value));
}

extern "C" void tenon_console_print_hex(uint64_t value) {
  static const char kHexDigits[] = "0123456789abcdef";
  char text[18] = {'0', 'x'};
  for (int i = 0; i < 16; ++i) text[2 + i] = kHexDigits[(value >> (60 - 4 * i)) & 0xf];
  tenon_platform_console_write(text, sizeof(text));
}
