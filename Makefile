# TinyLM: set-up, build, test and run. Every target installs what it needs when it is missing.
SWIFT ?= swift
# Tests build in debug mode with the optimizer on: kernel tests against double-precision
# references are too slow unoptimized, and Swift Testing does not build with `-c release`.
TEST_FLAGS ?= -Xswiftc -O
BIN := .build/release/tinylm

.PHONY: all setup build test chat bench bench-kernels clean

all: build

# libsentencepiece-dev (Debian) is the one system dependency; numpy is only for the GEMM peer.
setup:
	@if ! pkg-config --exists sentencepiece 2>/dev/null; then \
		echo "installing libsentencepiece-dev"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libsentencepiece-dev pkg-config; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "error: swift not found; install Swift 6 from swift.org"; exit 1; }

build: setup
	$(SWIFT) build -c release

test: setup
	$(SWIFT) test $(TEST_FLAGS)

# The main job. Until a trained model ships in Checkpoints/, it runs the kernel benchmark.
chat: build
	$(BIN) bench kernels

bench: bench-kernels

bench-kernels: build
	$(BIN) bench kernels

clean:
	rm -rf .build
