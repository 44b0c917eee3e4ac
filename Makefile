# Thin wrapper: the real build is CMake with presets (CMakePresets.json).
PREFIX ?= /usr/local
FUZZ_SECONDS ?= 60

.PHONY: all build deps deps-test deps-bench run test bench fuzz install clean format

all: build

build: deps
	cmake --preset release >/dev/null
	cmake --build --preset release

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

deps-bench:
	@scripts/deps.sh bench

run: build
	@scripts/run.sh

test: deps-test
	cmake --preset asan >/dev/null
	cmake --build --preset asan
	ctest --preset asan

bench: build deps-bench
	@bench/run.sh

fuzz: deps
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz
	@scripts/fuzz.sh $(FUZZ_SECONDS)

install: build
	cmake --install build/release --prefix $(PREFIX)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
