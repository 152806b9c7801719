// The freestanding world: images are static, fully resolved, free of libc, and carry exactly the
// code of the micro-libraries they were linked with; each archive exports only its list.
#include <array>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "shell_command.h"

namespace {

std::string run(const std::string& command) {
  return tenon::test_support::run_shell(command).output;
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> result;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) {
    if (!line.empty()) result.insert(line);
  }
  return result;
}

// Global symbols an image or archive defines, by name.
std::set<std::string> defined_globals(const std::string& path) {
  return lines(run("nm --defined-only --extern-only --format=just-symbols " + path));
}

std::set<std::string> exports_of(const std::string& library_folder) {
  std::ifstream file(std::string(TENON_SOURCE_DIR) + "/tenon/" + library_folder + "/exports.syms");
  std::set<std::string> names;
  for (std::string line; std::getline(file, line);) {
    if (!line.empty()) names.insert(line);
  }
  return names;
}

const std::string kHello = std::string(TENON_IMAGE_DIR) + "/hello.elf";
const std::string kExitStatus = std::string(TEST_GUEST_DIR) + "/exit_status.elf";

TEST(FreestandingToolchainTest, ImagesHaveNoUndefinedSymbols) {
  for (const std::string& image : {kHello, kExitStatus}) {
    EXPECT_EQ(run("nm --undefined-only " + image), "") << image;
  }
}

TEST(FreestandingToolchainTest, ImagesAreStaticWithoutInterpreterOrLibc) {
  for (const std::string& image : {kHello, kExitStatus}) {
    const std::string headers = run("readelf -lW " + image);
    EXPECT_NE(headers.find("EXEC"), std::string::npos) << headers;
    EXPECT_EQ(headers.find("INTERP"), std::string::npos) << headers;
    EXPECT_EQ(headers.find("DYNAMIC"), std::string::npos) << headers;
    EXPECT_NE(headers.find("NOTE"), std::string::npos) << "the ABI note is missing\n" << headers;
    for (const char* libc_symbol : {"printf", "malloc", "__libc_start_main", "_init", "abort"}) {
      EXPECT_EQ(defined_globals(image).count(libc_symbol), 0u) << image << ": " << libc_symbol;
    }
  }
}

TEST(MicroLibraryTest, ImageCarriesOnlyTheLibrariesItPicked) {
  const std::set<std::string> console = exports_of("lib/console");
  ASSERT_FALSE(console.empty());
  const std::set<std::string> hello_symbols = defined_globals(kHello);
  EXPECT_EQ(hello_symbols.count("tenon_console_print"), 1u) << "hello links the console";
  const std::set<std::string> minimal_symbols = defined_globals(kExitStatus);
  for (const std::string& symbol : console) {
    EXPECT_EQ(minimal_symbols.count(symbol), 0u) << "exit_status did not pick console: " << symbol;
  }
  // No local function of the console library either: its whole object stayed out.
  EXPECT_EQ(run("nm " + kExitStatus + " | grep -c string_length"), "0\n");
  for (const std::string& symbol : exports_of("lib/panic")) {
    EXPECT_EQ(minimal_symbols.count(symbol), 0u) << symbol;
  }
}

TEST(MicroLibraryTest, ArchivesExportExactlyTheirList) {
  for (const char* folder : {"arch/x86_64", "plat/mortise", "lib/console", "lib/panic"}) {
    std::string name = folder;
    name = name == "arch/x86_64"    ? "arch-x86_64"
           : name == "plat/mortise" ? "plat-mortise"
                                    : name.substr(4);
    const std::string archive = std::string(TENON_ARCHIVE_DIR) + "/lib" + name + ".a";
    EXPECT_EQ(defined_globals(archive), exports_of(folder)) << archive;
  }
}

}  // namespace
