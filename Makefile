# brisk — the two commands a newcomer needs:
#   make run    install missing Debian packages, build (Release), run the default model
#   make test   install, build, run the whole suite (Release+assertions, ASan+UBSan, fuzz smoke)
JOBS ?= $(shell nproc)
BUILD := build
BRISK_TESTDATA ?= $(abspath ../shared/testdata)
export BRISK_TESTDATA
DEFAULT_MODEL := models/brisk-default.gguf
PROMPT ?= The meaning of life is

.PHONY: all setup build run default-model test test-release test-asan fuzz-smoke fuzz clean format bench bench-kernels bench-serve soak compression-table

all: build

setup:
	@bash scripts/setup.sh

build: setup
	@cmake --preset release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# The default model is brisk's own: a 6.8M-parameter llama trained from scratch on English text
# from Debian packages (configs/default.conf), committed under models/. `make default-model`
# retrains it (about an hour on 2 cores).
run: build
	@./$(BUILD)/brisk run -p "$(PROMPT)" -n 64 --temp 0.8 --top-p 0.95 --seed 1

default-model: build
	@bash scripts/train_default.sh $(BUILD)/brisk

test: test-release test-asan fuzz-smoke

test-release: build
	@ctest --preset release -j$(JOBS)

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@ctest --preset asan -j$(JOBS)

# libFuzzer targets for every parser, a short run each under ASan (clang).
fuzz-smoke: setup
	@cmake --preset fuzz >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	@ctest --preset fuzz

# Speed benchmarks (not part of `make test`): the TinyLlama-shaped models of docs/PERFORMANCE.md
# and the per-kernel micro-benchmarks.
bench: build
	@bash scripts/bench_speed.sh $(BUILD)/brisk

# The serving benchmark (brisk serve + brisk bench-serve at 1/8/16/32 streams).
bench-serve: build
	@bash scripts/bench_serve.sh $(BUILD)/brisk

# A bounded soak of the server (SOAK_SECONDS, default 600): mixed load, hang-ups, no leak.
soak: build
	@bash scripts/soak_serve.sh $(BUILD)/brisk

# docs/COMPRESSION.md: every compression method on the default model (~15 min on 2 cores).
compression-table: build
	@scripts/compression_table.sh $(BUILD)/brisk

bench-kernels: build
	@cmake --build $(BUILD) --target bench_kernels
	@./$(BUILD)/bench_kernels

clean:
	rm -rf $(BUILD) build-asan build-fuzz

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.h')
