// Manifest and spec validation: every error names file:line:field; the real catalog loads.
#include "manifest.h"
#include "catalog.h"
#include "device.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace tenon::controller {
namespace {

using ::testing::HasSubstr;
using testing::TemporaryDirectory;

constexpr char kValidLibrary[] = R"(name: sched
layer: tenon
summary: Periodic tasks.
archs: [x86_64]
provides: [tasks]
requires: []
conflicts: []
options:
  - name: task_stack_bytes
    type: integer
    default: 4096
    min: 2048
    max: 65536
)";

std::string library_error(const std::string& text) {
  absl::StatusOr<LibraryManifest> manifest = parse_library_manifest(text, "lib/x/library.yaml");
  EXPECT_FALSE(manifest.ok());
  return std::string(manifest.status().message());
}

TEST(ManifestTest, RealCatalogLoadsWithMeasuredFootprints) {
  const Catalog& catalog = testing::real_catalog();
  EXPECT_NE(catalog.find_library(LibraryLayer::kTenon, "sched"), nullptr);
  EXPECT_NE(catalog.find_library(LibraryLayer::kMortise, "loader"), nullptr);
  for (const CatalogLibrary& library : catalog.libraries()) {
    if (library.manifest.layer != LibraryLayer::kTenon) continue;
    EXPECT_TRUE(library.measured) << library.manifest.name;
    EXPECT_GT(library.footprint.text_bytes, 0u) << library.manifest.name;
  }
  ASSERT_NE(catalog.find_app("latency-probe"), nullptr);
  EXPECT_TRUE(catalog.find_app("latency-probe")->measured);
  EXPECT_EQ(catalog.digest().size(), 64u);
}

TEST(ManifestTest, ValidLibraryParses) {
  absl::StatusOr<LibraryManifest> manifest = parse_library_manifest(kValidLibrary, "x.yaml");
  ASSERT_TRUE(manifest.ok()) << manifest.status();
  ASSERT_EQ(manifest->options.size(), 1u);
  EXPECT_EQ(manifest->options[0].default_value.integer, 4096);
  EXPECT_EQ(manifest->options[0].line, 9);
}

TEST(ManifestTest, UnknownKeyNamesFileLineAndField) {
  std::string text = kValidLibrary;
  text.insert(text.find("archs"), "colour: blue\n");
  EXPECT_THAT(library_error(text), HasSubstr("lib/x/library.yaml:4:1: colour: unknown field"));
}

TEST(ManifestTest, MissingFieldIsNamed) {
  std::string text = kValidLibrary;
  text.erase(text.find("provides"), std::string("provides: [tasks]\n").size());
  EXPECT_THAT(library_error(text), HasSubstr("provides: missing required field"));
}

TEST(ManifestTest, DefaultOutsideRangeIsRefused) {
  std::string text = kValidLibrary;
  text.replace(text.find("default: 4096"), 13, "default: 1024");
  EXPECT_THAT(library_error(text),
              HasSubstr("lib/x/library.yaml:11:14: options[0].default: default 1024 is outside "
                        "[2048, 65536]"));
}

TEST(ManifestTest, InvertedRangeIsRefused) {
  std::string text = kValidLibrary;
  text.replace(text.find("min: 2048"), 9, "min: 99999");
  EXPECT_THAT(library_error(text), HasSubstr(":12:10: options[0].min: min 99999 is above max"));
}

TEST(ManifestTest, BadOptionTypeAndValuesAreRefused) {
  std::string text = kValidLibrary;
  text.replace(text.find("type: integer"), 13, "type: float");
  EXPECT_THAT(library_error(text), HasSubstr(":10:11: options[0].type: unknown type 'float'"));
  text = kValidLibrary;
  text.replace(text.find("default: 4096"), 13, "default: 4k");
  EXPECT_THAT(library_error(text), HasSubstr("options[0].default: expected an integer"));
  text = kValidLibrary;
  text.replace(text.find("archs: [x86_64]"), 15, "archs: [riscv]");
  EXPECT_THAT(library_error(text), HasSubstr(":4:9: archs[0]: unknown arch 'riscv'"));
}

TEST(ManifestTest, SelfRequirementIsACycle) {
  std::string text = kValidLibrary;
  text.replace(text.find("requires: []"), 12, "requires: [tasks]");
  EXPECT_THAT(library_error(text), HasSubstr("requires[0]"));
  EXPECT_THAT(library_error(text), HasSubstr("dependency cycle"));
}

TEST(ManifestTest, SyntaxErrorsAndDuplicateKeysAreLocated) {
  EXPECT_THAT(library_error("name: [unclosed\n"), HasSubstr("lib/x/library.yaml:"));
  EXPECT_THAT(library_error("- a\n- b\n"), HasSubstr("(document): the document must be a mapping"));
  std::string text = kValidLibrary;
  text += "name: again\n";
  EXPECT_THAT(library_error(text), HasSubstr(":14:1: name: duplicate key"));
}

// Cross-file checks on a synthetic catalog written to a temporary tree.
class CatalogValidationTest : public ::testing::Test {
 protected:
  std::string load_error() {
    CatalogPaths paths;
    paths.source_root = directory_.path();
    paths.archive_root = directory_.path() + "/build";
    paths.allow_missing_archives = true;
    absl::StatusOr<Catalog> catalog = Catalog::load(paths);
    EXPECT_FALSE(catalog.ok());
    return std::string(catalog.status().message());
  }
  void library(const std::string& name, const std::string& provides, const std::string& requires_,
               const std::string& conflicts = "") {
    directory_.write("tenon/lib/" + name + "/library.yaml",
                     "name: " + name + "\nlayer: tenon\nsummary: s\narchs: [x86_64]\nprovides: [" +
                         provides + "]\nrequires: [" + requires_ + "]\nconflicts: [" + conflicts +
                         "]\noptions: []\n");
  }
  TemporaryDirectory directory_;
};

TEST_F(CatalogValidationTest, RequirementNobodyProvides) {
  library("a", "alpha", "gamma");
  EXPECT_THAT(
      load_error(),
      HasSubstr("tenon/lib/a/library.yaml:6: requires[0]: no tenon library provides 'gamma'"));
}

TEST_F(CatalogValidationTest, ConflictNamingAnUnknownLibrary) {
  library("a", "alpha", "", "nonexistent");
  EXPECT_THAT(load_error(), HasSubstr("tenon/lib/a/library.yaml:7: conflicts[0]: conflicts with "
                                      "'nonexistent', which is not a tenon library"));
}

TEST_F(CatalogValidationTest, DependencyCycleIsNamed) {
  library("a", "alpha", "beta");
  library("b", "beta", "gamma");
  library("c", "gamma", "alpha");
  EXPECT_THAT(load_error(), HasSubstr("dependency cycle: a -> b -> c -> a"));
}

TEST_F(CatalogValidationTest, DuplicateLibraryNames) {
  library("a", "alpha", "");
  directory_.write("tenon/lib/other/library.yaml",
                   "name: a\nlayer: tenon\nsummary: s\narchs: [x86_64]\nprovides: [x]\n"
                   "requires: []\nconflicts: []\noptions: []\n");
  EXPECT_THAT(load_error(), HasSubstr("library 'a' is already declared by"));
}

TEST_F(CatalogValidationTest, LayerMustMatchItsTree) {
  directory_.write("mortise/lib/m/library.yaml",
                   "name: m\nlayer: tenon\nsummary: s\narchs: [x86_64]\nprovides: [x]\n"
                   "requires: []\nconflicts: []\noptions: []\n");
  EXPECT_THAT(load_error(),
              HasSubstr("mortise/lib/m/library.yaml:2: layer: a manifest under mortise/"));
}

TEST_F(CatalogValidationTest, AppNeedNobodyProvides) {
  library("a", "alpha", "");
  directory_.write("tenon/apps/x/app.yaml", "name: x\nneeds: [alpha, ivc]\ntasks: []\n");
  EXPECT_THAT(load_error(),
              HasSubstr("tenon/apps/x/app.yaml:2: needs[1]: no tenon library provides 'ivc'"));
}

TEST(AppSpecTest, TaskErrorsNameTheField) {
  auto error = [](const std::string& text) {
    absl::StatusOr<AppSpec> spec = parse_app_spec(text, "app.yaml");
    EXPECT_FALSE(spec.ok());
    return std::string(spec.status().message());
  };
  EXPECT_THAT(error("program: p\ntasks:\n  - name: t\n    period_ns: 0\n    wcet_ns: 1\n"),
              HasSubstr("app.yaml:4:16: tasks[0].period_ns: the period must be between"));
  EXPECT_THAT(error("program: p\ntasks:\n  - name: t\n    period_ns: 10\n    wcet_ns: 1\n"
                    "    relative_deadline_ns: 20\n"),
              HasSubstr("app.yaml:6:27: tasks[0].relative_deadline_ns: the deadline 20 ns is "
                        "beyond the period 10 ns"));
  EXPECT_THAT(error("program: p\ntasks:\n  - name: t\n    period_ns: 10\n    wcet_ns: -1\n"),
              HasSubstr("tasks[0].wcet_ns: expected a non-negative integer"));
  EXPECT_THAT(error("program: p\nscheduler: round-robin\n"),
              HasSubstr("app.yaml:2:12: scheduler: unknown scheduler 'round-robin'"));
  EXPECT_THAT(error("summary: no program\n"), HasSubstr("name: missing required field"));
  EXPECT_THAT(error("program: p\ntasks:\n  - name: averyveryverylongname\n    period_ns: 1\n"
                    "    wcet_ns: 1\n"),
              HasSubstr("tasks[0].name: task names are 1..15 characters"));
}

TEST(DeviceProfileTest, ErrorsNameTheField) {
  absl::StatusOr<DeviceProfile> device =
      parse_device_profile("arch: x86_64\ncores: 2\nmemory_bytes: lots\n", "d.yaml");
  ASSERT_FALSE(device.ok());
  EXPECT_THAT(device.status().message(),
              HasSubstr("d.yaml:3:15: memory_bytes: expected a non-negative"));
  device = parse_device_profile("arch: x86_64\nmemory_bytes: 1\n", "d.yaml");
  EXPECT_THAT(device.status().message(), HasSubstr("cores: missing required field"));
}

}  // namespace
}  // namespace tenon::controller
