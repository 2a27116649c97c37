#!/usr/bin/env python3
"""TinyLM's LoRA against Hugging Face PEFT on the same base: a llama GGUF that transformers
dequantizes (e.g. SmolLM2-135M-Instruct), or a Llama-style TinyLM checkpoint directory, which
`LlamaForCausalLM.from_pretrained` loads as it is (`--checkpoint`; `--init` makes a fresh one):

1. an adapter TinyLM wrote (--adapter) loads with PeftModel.from_pretrained, and the logits of
   random ids agree with `tinylm logits --adapter`;
2. an adapter PEFT writes (random A and B) loads in TinyLM with the same agreement;
3. one batch's lora_A / lora_B gradients from `tinylm gradients --adapter` equal PEFT's;
4. `tinylm fuse --type f32` of that adapter gives the logits of base + adapter.

    P=~/.cache/tinylm-peers-venv/bin/python
    $P Benchmarks/peft_parity.py --gguf ~/.cache/tinylm/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --adapter Checkpoints/smollm2-tools-lora
    $P Benchmarks/peft_parity.py --init     # a fresh Llama-style TinyLM checkpoint as the base

Prints the worst relative difference (max |a - b| / max |b| per tensor) of each check and exits 1
when one is above its bound (1e-4; the fused model 1e-5 against TinyLM's own base + adapter).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def tinylm_logits(args, model, ids, adapter=None):
    cmd = [args.tinylm, "logits", "--model", model, "--ids", ",".join(map(str, ids)), "--all"]
    if adapter:
        cmd += ["--adapter", adapter]
    return np.array(json.loads(run(cmd))["logits"], dtype=np.float64)


def relative(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf")
    ap.add_argument("--checkpoint", help="a Llama-style TinyLM checkpoint directory as the base")
    ap.add_argument("--init", action="store_true", help="make a fresh Llama-style TinyLM checkpoint as the base")
    ap.add_argument("--adapter", help="an adapter directory TinyLM wrote for this base")
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    ap.add_argument("--length", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    if not (args.gguf or args.checkpoint or args.init):
        ap.error("give --gguf, --checkpoint or --init")
    with tempfile.TemporaryDirectory() as work:
        if args.init:
            args.checkpoint = os.path.join(work, "base")
            cfg = os.path.join(work, "base.json")
            json.dump(dict(vocab_size=4096, context_length=64, d_model=64, n_layers=3, n_heads=4, n_kv_heads=2, d_ff=160,
                           norm="rmsnorm", positions="rope", activation="swiglu", bias=False, tied_embeddings=False,
                           init_std=0.1), open(cfg, "w"))
            run([args.tinylm, "init", "--config", cfg, "--out", args.checkpoint, "--seed", str(args.seed)])
            if not args.adapter:
                # A TinyLM-trained adapter on it (a few steps at a high rate, so that B is not zero).
                data = os.path.join(work, "data")
                os.makedirs(data)
                with open(os.path.join(data, "train.jsonl"), "w") as f:
                    for line in ["Once upon a time there was a cat.", "The dog ran to the park.", "Lily liked red apples."]:
                        f.write(json.dumps({"text": line}) + "\n")
                args.adapter = os.path.join(work, "tinylm-adapter")
                run([args.tinylm, "lora", "--model", args.checkpoint, "--data", data, "--adapter-path", args.adapter,
                     "--iters", "5", "--rank", "4", "--alpha", "8", "--lr", "1e-2", "--warmup", "0", "--batch", "2"])
        check(args, work)


def check(args, work):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    if args.checkpoint:
        # The checkpoint directory as TinyLM wrote it: its config.json carries Llama's fields.
        source, vocab = args.checkpoint, json.load(open(os.path.join(args.checkpoint, "config.json")))["vocab_size"]

        def base():
            m = AutoModelForCausalLM.from_pretrained(args.checkpoint, dtype=torch.float32)
            m.eval()
            return m
    else:
        directory, name = os.path.split(os.path.abspath(args.gguf))
        source, vocab = args.gguf, 49152

        def base():
            m = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
            m.eval()
            return m
    args.gguf = source

    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, vocab, size=args.length).tolist()
    worst = {}
    # 1. TinyLM's adapter in PEFT.
    if args.adapter:
        peft_model = PeftModel.from_pretrained(base(), args.adapter)
        with torch.no_grad():
            theirs = peft_model(torch.tensor([ids])).logits[0].numpy()
        worst["TinyLM adapter in PEFT: logits"] = relative(tinylm_logits(args, args.gguf, ids, args.adapter), theirs)
    # 2. PEFT's adapter (random A and B) in TinyLM.
    torch.manual_seed(args.seed)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(base(), config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    adapter = os.path.join(work, "peft-random")
    model.save_pretrained(adapter)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits[0].numpy()
    ours = tinylm_logits(args, args.gguf, ids, adapter)
    worst["PEFT adapter in TinyLM: logits"] = relative(ours, theirs)
    # 3. Gradients of one batch (labels = ids: transformers shifts them, as TinyLM's default targets).
    model.train()
    model.zero_grad()
    loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss
    loss.backward()
    out = os.path.join(work, "grads.safetensors")
    run([args.tinylm, "gradients", "--model", args.gguf, "--adapter", adapter, "--ids", ",".join(map(str, ids)), "--out", out])
    grads = load_file(out)
    worst_grad, compared = 0.0, 0
    for n, p in model.named_parameters():
        if p.grad is None or "lora_" not in n:
            continue
        key = n.replace("base_model.model.", "").replace(".default", "")
        worst_grad = max(worst_grad, relative(grads[key], p.grad.numpy()))
        compared += 1
    worst[f"lora_A/lora_B gradients ({compared} tensors)"] = worst_grad
    # 4. Fused: base + adapter merged into f32 matrices.
    if args.checkpoint:
        fused = os.path.join(work, "fused")
        run([args.tinylm, "fuse", "--model", args.gguf, "--adapter", adapter, "--out", fused])
        worst["fused checkpoint vs base + adapter (TinyLM)"] = relative(tinylm_logits(args, fused, ids), ours)
    else:
        fused = os.path.join(work, "fused.gguf")
        run([args.tinylm, "fuse", "--model", args.gguf, "--adapter", adapter, "--out", fused, "--type", "f32"])
        worst["fused f32 GGUF vs base + adapter (TinyLM)"] = relative(tinylm_logits(args, fused, ids), ours)
    ok = True
    for check, value in worst.items():
        bound = 1e-5 if check.startswith("fused") else 1e-4
        ok &= value <= bound
        print(f"{check}: worst relative difference {value:.3g} (bound {bound:g}) {'ok' if value <= bound else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
