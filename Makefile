# TenonOS: the commands a developer and CI use. Everything goes through CMake in build/.
#   make demo   install what is missing, build, run the main job on the embedded defaults
#   make test   install what is missing, build, run every test (ctest)
#   make build | bench | fmt | lint | clean

BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all deps configure build test demo bench fmt lint clean

all: build

deps:
	@bash deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

demo: build
	@bash deploy/demo.sh $(BUILD_DIR)

bench: build
	@bash tests/bench/run.sh $(BUILD_DIR)

FORMAT_SOURCES = $(shell git ls-files '*.cc' '*.h')

fmt:
	@clang-format -i $(FORMAT_SOURCES)

lint: configure
	@clang-tidy -p $(BUILD_DIR) --quiet $(filter %.cc,$(filter-out tenon/% tests/mortise/guests/%,$(FORMAT_SOURCES)))

clean:
	@rm -rf $(BUILD_DIR)
