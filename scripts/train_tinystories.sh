#!/usr/bin/env bash
# Trains the shipped TinyStories model, Checkpoints/tinystories-3.5m, from ../shared/data
# (about 30 minutes on 2 cores), then evaluates it on the held-out validation file.
set -euo pipefail
cd "$(dirname "$0")/.."
data=../shared/data
[ -d "$data" ] || { echo "error: $data is missing (the shared data beside the repository)"; exit 1; }
swift build -c release
out=${OUT:-runs/tinystories}
mkdir -p "$out"
cat > "$out/config-request.json" <<'JSON'
{"vocab_size": 4096, "context_length": 256, "d_model": 192, "n_layers": 6, "n_heads": 6, "d_ff": 768, "dropout": 0.1}
JSON
# 5% of the stories are held out for validation and early stopping; the eval file is never
# trained on and is only scored at the end.
.build/release/tinylm pretrain --corpus "$data/corpora/tinystories-train.txt" \
  --config "$out/config-request.json" --steps 3000 --batch 16 \
  --lr 2e-3 --min-lr 1e-4 --warmup 100 --weight-decay 0.1 --clip 1 \
  --eval-every 100 --eval-tokens 100000 --save-every 250 --val-fraction 0.05 --patience 8 \
  --seed 1 --out "$out"
.build/release/tinylm eval --model "$out/best" --data "$data/eval/tinystories-valid.txt"
echo "copy $out/best to Checkpoints/ to ship it"
