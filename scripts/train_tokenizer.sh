#!/usr/bin/env bash
# Trains the shipped default tokenizer, Tokenizers/tinylm-4k.model, from ../shared/data.
# Deterministic: the same corpus and options give the same model bytes (the sha256 in the card).
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
[ -d "$data" ] || { echo "error: $data is missing (the shared data beside the repository)"; exit 1; }
swift build -c release
# Like Llama 2's: BPE with byte fallback, no normalization and no whitespace collapsing, so
# decoding gives back any input exactly; digits split so numbers tokenize uniformly; the chat
# markers are single tokens. The chat JSON files add the punctuation of tool calls.
.build/release/tinylm tokenizer train \
  --input "$data/corpora/tinystories-train.txt" "$data/chat/glaive-toolcall-300.json" "$data/chat/fastchat-dummy-500.json" \
  --output Tokenizers/tinylm-4k.model \
  --vocab-size 4096 --model-type bpe --byte-fallback --chat-markers \
  --normalization identity --no-remove-extra-whitespaces --split-digits \
  --character-coverage 0.9995 --threads 2 --seed 0
