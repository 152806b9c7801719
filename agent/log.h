// One line per event on stderr, each with a UTC timestamp, safe to call from any thread.
#pragma once

#include <string_view>

namespace tenon::agent {

void log_line(std::string_view text);

}  // namespace tenon::agent
