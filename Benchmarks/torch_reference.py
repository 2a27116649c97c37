#!/usr/bin/env python3
"""Checks TinyLM's math against PyTorch, by hand (not in CI).

For each option mix (norm, positions, activation, grouped-query attention, tied embeddings,
biases) it makes a TinyLM checkpoint with `tinylm init`, loads the safetensors into an
independent PyTorch implementation in float64, and compares
  - the logits of every position (`tinylm logits --all`), relative to the largest logit, and
  - the gradients of one batch's mean cross-entropy (`tinylm gradients`), relative to each
    tensor's largest gradient.
The Llama-style mix is also loaded into Hugging Face `LlamaForCausalLM` by tensor name, which
shows the checkpoints follow its conventions.

    bash ../shared/peers/setup.sh   # SKIP_LLAMA=1 is enough: torch, transformers, safetensors
    ~/.cache/tinylm-peers-venv/bin/python Benchmarks/torch_reference.py [--tinylm .build/release/tinylm]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

VARIANTS = {
    "gpt2 (layernorm, learned, gelu, MHA, tied, biases)":
        dict(norm="layernorm", positions="learned", activation="gelu", n_kv_heads=4, tied_embeddings=True, bias=True),
    "llama (rmsnorm, rope, swiglu, GQA, untied, no biases)":
        dict(norm="rmsnorm", positions="rope", activation="swiglu", n_kv_heads=2, tied_embeddings=False, bias=False),
    "layernorm, rope, gelu, GQA, untied, biases":
        dict(norm="layernorm", positions="rope", activation="gelu", n_kv_heads=1, tied_embeddings=False, bias=True),
    "rmsnorm, learned, swiglu, MHA, tied, biases":
        dict(norm="rmsnorm", positions="learned", activation="swiglu", n_kv_heads=4, tied_embeddings=True, bias=True),
    "layernorm, learned, swiglu, GQA, tied, no biases":
        dict(norm="layernorm", positions="learned", activation="swiglu", n_kv_heads=2, tied_embeddings=True, bias=False),
    "rmsnorm, rope, gelu, MHA, untied, biases":
        dict(norm="rmsnorm", positions="rope", activation="gelu", n_kv_heads=4, tied_embeddings=False, bias=True),
}
BASE = dict(vocab_size=512, context_length=64, d_model=64, n_layers=3, n_heads=4, d_ff=160, init_std=0.1)


def reference_logits(cfg, w, ids):
    """ids: LongTensor [B, T] -> logits [B, T, V] in float64, from the tensors `w`."""
    d, h, kv = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"]
    hd, eps = d // h, cfg.get("norm_eps", 1e-5)
    B, T = ids.shape

    def norm(x, prefix):
        if cfg["norm"] == "layernorm":
            return F.layer_norm(x, (d,), w[prefix + ".weight"], w.get(prefix + ".bias"), eps)
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w[prefix + ".weight"]

    def linear(x, prefix):
        return F.linear(x, w[prefix + ".weight"], w.get(prefix + ".bias"))

    def rope(x):  # [B, heads, T, hd], Hugging Face rotate-half
        inv = cfg.get("rope_theta", 10000.0) ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        angles = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = w["model.embed_tokens.weight"][ids]
    if cfg["positions"] == "learned":
        x = x + w["model.embed_positions.weight"][:T]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(cfg["n_layers"]):
        p = f"model.layers.{i}."
        a = norm(x, p + "input_layernorm")
        q = linear(a, p + "self_attn.q_proj").view(B, T, h, hd).transpose(1, 2)
        k = linear(a, p + "self_attn.k_proj").view(B, T, kv, hd).transpose(1, 2)
        v = linear(a, p + "self_attn.v_proj").view(B, T, kv, hd).transpose(1, 2)
        if cfg["positions"] == "rope":
            q, k = rope(q), rope(k)
        k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        x = x + linear(att.transpose(1, 2).reshape(B, T, h * hd), p + "self_attn.o_proj")
        m = norm(x, p + "post_attention_layernorm")
        if cfg["activation"] == "swiglu":
            m = F.silu(linear(m, p + "mlp.gate_proj")) * linear(m, p + "mlp.up_proj")
        else:
            m = F.gelu(linear(m, p + "mlp.up_proj"), approximate="tanh")
        x = x + linear(m, p + "mlp.down_proj")
    x = norm(x, "model.norm")
    head = w["model.embed_tokens.weight"] if cfg["tied_embeddings"] else w["lm_head.weight"]
    return x @ head.T


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def hf_llama_logits(cfg, directory, ids):
    from transformers import LlamaConfig, LlamaForCausalLM
    hf = LlamaForCausalLM(LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["d_model"], intermediate_size=cfg["d_ff"],
        num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
        num_key_value_heads=cfg["n_kv_heads"], max_position_embeddings=cfg["context_length"],
        rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=cfg["tied_embeddings"],
        attention_bias=False, mlp_bias=False, hidden_act="silu")).double()
    state = {k: v.double() for k, v in load_file(os.path.join(directory, "model.safetensors")).items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    with torch.no_grad():
        return hf(torch.tensor([ids])).logits[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    ap.add_argument("--write-fixture", metavar="DIR",
                    help="write the golden fixture the Swift tests check without Python (then stop)")
    args = ap.parse_args()
    if args.write_fixture:
        write_fixture(args, args.write_fixture)
        return
    torch.manual_seed(0)
    worst_logits = worst_grads = 0.0
    print(f"{'variant':56s} {'logits rel':>11s} {'grads rel':>11s} {'loss tinylm':>12s} {'loss torch':>12s}")
    for name, options in VARIANTS.items():
        cfg = dict(BASE, **options)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "config.json"), "w") as f:
                json.dump(cfg, f)
            ckpt = os.path.join(tmp, "ckpt")
            run([args.tinylm, "init", "--config", os.path.join(tmp, "config.json"), "--out", ckpt, "--seed", "7"])
            w = {k: v.double() for k, v in load_file(os.path.join(ckpt, "model.safetensors")).items()}

            # Logits of every position of one sequence.
            ids = torch.randint(0, cfg["vocab_size"], (cfg["context_length"],)).tolist()
            ours = torch.tensor(json.loads(run([args.tinylm, "logits", "--model", ckpt, "--all",
                                                "--ids", ",".join(map(str, ids))]))["logits"], dtype=torch.float64)
            ref = reference_logits(cfg, w, torch.tensor([ids]))[0]
            rel_logits = ((ours - ref).abs().max() / ref.abs().max()).item()
            if cfg["norm"] == "rmsnorm" and cfg["positions"] == "rope" and cfg["activation"] == "swiglu" and not cfg["bias"]:
                try:
                    hf = hf_llama_logits(cfg, ckpt, ids)
                    print(f"  Hugging Face LlamaForCausalLM on the same file: max |hf - reference| / max|logit| = "
                          f"{((hf - ref).abs().max() / ref.abs().max()).item():.2e}")
                except ImportError:
                    print("  (transformers not installed: Hugging Face check skipped)")

            # Gradients of one batch of 2 sequences.
            B, T = 2, cfg["context_length"]
            batch = torch.randint(0, cfg["vocab_size"], (B, T))
            targets = torch.cat([batch[:, 1:], torch.full((B, 1), -1)], 1)
            grads_file = os.path.join(tmp, "grads.safetensors")
            out = run([args.tinylm, "gradients", "--model", ckpt, "--batch", str(B),
                       "--ids", ",".join(map(str, batch.flatten().tolist())),
                       "--targets", ",".join(map(str, targets.flatten().tolist())), "--out", grads_file])
            our_loss = float(out.split()[1].rstrip(";"))
            ours_g = load_file(grads_file)
            params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
            logits = reference_logits(cfg, params, batch)
            loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1), ignore_index=-1)
            loss.backward()
            # Relative to each tensor's largest gradient, floored at 1e-3 of the model's largest:
            # some gradients are exactly 0 in exact arithmetic (a key bias shifts every score of a
            # row equally, which softmax ignores), and float32 rounding is all that is left there.
            top = max(p.grad.abs().max().item() for p in params.values())
            rel_grads = max(((ours_g[k].double() - p.grad).abs().max() / max(p.grad.abs().max().item(), 1e-3 * top)).item()
                            for k, p in params.items())
        worst_logits, worst_grads = max(worst_logits, rel_logits), max(worst_grads, rel_grads)
        print(f"{name:56s} {rel_logits:11.2e} {rel_grads:11.2e} {our_loss:12.6f} {loss.item():12.6f}")
    ok = worst_logits < 1e-4 and worst_grads < 1e-4
    print(f"worst: logits {worst_logits:.2e}, gradients {worst_grads:.2e} -> {'PASS' if ok else 'FAIL'} (tolerance 1e-4)")
    ok = training_check(args) and ok
    sys.exit(0 if ok else 1)


def decays(name):
    """TinyLM's AdamW default: weight decay on linear weights only."""
    return name.endswith("proj.weight") or name == "lm_head.weight"


def lr_at(step, max_lr, min_lr, warmup, total):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def learnable_batches(g, steps, B, T, V):
    """Batches of a repeating pattern with a random start, so the loss really moves."""
    batches = []
    for _ in range(steps):
        start = torch.randint(0, 50, (B, 1), generator=g)
        seq = (start + torch.arange(T + 1) * 7) % V
        batches.append(dict(ids=seq[:, :-1].flatten().tolist(), targets=seq[:, 1:].flatten().tolist()))
    return batches


def adamw_losses(cfg, w, batches, hp, total, B, T):
    """torch.optim.AdamW on the tensors `w` (requiring grad), TinyLM's groups and schedule, global-norm
    clipping: the loss of each batch before its step."""
    groups = [dict(params=[p for k, p in w.items() if decays(k)], weight_decay=hp["weight_decay"]),
              dict(params=[p for k, p in w.items() if not decays(k)], weight_decay=0.0)]
    opt = torch.optim.AdamW(groups, lr=hp["lr"], betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for step, batch in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, hp["lr"], hp["min_lr"], hp["warmup"], total)
        ids = torch.tensor(batch["ids"]).view(B, T)
        targets = torch.tensor(batch["targets"]).view(B, T)
        loss = F.cross_entropy(reference_logits(cfg, w, ids).reshape(-1, cfg["vocab_size"]), targets.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), hp["clip"])
        opt.step()
        losses.append(loss.item())
    return losses


def training_check(args, steps=20):
    """20 AdamW steps (warmup + cosine, clipping, weight decay) from the same weights on the same
    batches: TinyLM's losses against PyTorch's torch.optim.AdamW in float64."""
    cfg = dict(BASE, **VARIANTS["gpt2 (layernorm, learned, gelu, MHA, tied, biases)"])
    hp = dict(lr=3e-3, min_lr=3e-4, warmup=5, weight_decay=0.1, clip=1.0)
    B, T = 4, 32
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "config.json"), "w") as f:
            json.dump(cfg, f)
        ckpt = os.path.join(tmp, "ckpt")
        run([args.tinylm, "init", "--config", os.path.join(tmp, "config.json"), "--out", ckpt, "--seed", "3"])
        batches = learnable_batches(torch.Generator().manual_seed(5), steps, B, T, cfg["vocab_size"])
        with open(os.path.join(tmp, "batches.json"), "w") as f:
            json.dump(dict(batch=B, length=T, steps=batches), f)
        ours = json.loads(run([args.tinylm, "train-steps", "--model", ckpt, "--batches", os.path.join(tmp, "batches.json"),
                               "--lr", str(hp["lr"]), "--min-lr", str(hp["min_lr"]), "--warmup", str(hp["warmup"]),
                               "--weight-decay", str(hp["weight_decay"]), "--clip", str(hp["clip"])]))
        w = {k: v.double().clone().requires_grad_(True) for k, v in load_file(os.path.join(ckpt, "model.safetensors")).items()}
    theirs = adamw_losses(cfg, w, batches, hp, steps, B, T)
    worst = max(abs(a - b) / abs(b) for a, b in zip(ours, theirs))
    print(f"\n20 AdamW steps (lr {hp['lr']}, warmup {hp['warmup']}, cosine to {hp['min_lr']}, clip {hp['clip']}, wd {hp['weight_decay']}):")
    for i in (0, 4, 9, 14, 19):
        print(f"  step {i + 1:2d}: tinylm {ours[i]:.6f}  torch {theirs[i]:.6f}")
    print(f"worst relative loss difference {worst:.2e} -> {'PASS' if worst < 1e-4 else 'FAIL'} (tolerance 1e-4)")
    return worst < 1e-4


FIXTURE_BASE = dict(vocab_size=256, context_length=16, d_model=32, n_layers=2, n_heads=4, d_ff=80, init_std=0.1)
FIXTURE_MIXES = {
    "gpt2": VARIANTS["gpt2 (layernorm, learned, gelu, MHA, tied, biases)"],
    "llama": VARIANTS["llama (rmsnorm, rope, swiglu, GQA, untied, no biases)"],
}


def write_fixture(args, directory):
    """For two option mixes: a TinyLM checkpoint (config.json, model.safetensors from `tinylm
    init`) and reference.safetensors holding, from the float64 PyTorch implementation above, the
    logits of one sequence (`logits` [T, V]), one batch's gradient of every tensor (`grad.NAME`),
    and in its metadata the ids, the batch, its loss, and 10 AdamW steps' batches and losses."""
    from safetensors.torch import save_file
    for mix, options in FIXTURE_MIXES.items():
        cfg = dict(FIXTURE_BASE, **options)
        out = os.path.join(directory, mix)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(cfg, f)
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = os.path.join(tmp, "ckpt")
            run([args.tinylm, "init", "--config", os.path.join(out, "config.json"), "--out", ckpt, "--seed", "11"])
            with open(os.path.join(ckpt, "model.safetensors"), "rb") as src, open(os.path.join(out, "model.safetensors"), "wb") as dst:
                dst.write(src.read())
        w = {k: v.double() for k, v in load_file(os.path.join(out, "model.safetensors")).items()}
        g = torch.Generator().manual_seed(13)
        V, T = cfg["vocab_size"], cfg["context_length"]
        ids = torch.randint(0, V, (T,), generator=g)
        logits = reference_logits(cfg, w, ids[None])[0]
        B = 2
        batch = torch.randint(0, V, (B, T), generator=g)
        targets = torch.cat([batch[:, 1:], torch.full((B, 1), -1)], 1)
        targets[0, 3] = -1  # a masked position inside a row
        params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        loss = F.cross_entropy(reference_logits(cfg, params, batch).reshape(-1, V), targets.reshape(-1), ignore_index=-1)
        loss.backward()
        tensors = {"logits": logits.float().contiguous()}
        tensors.update({"grad." + k: p.grad.float().contiguous() for k, p in params.items()})
        # 10 AdamW steps (warmup 3, cosine, clipping, weight decay) on learnable batches.
        hp = dict(lr=3e-3, min_lr=3e-4, warmup=3, weight_decay=0.1, clip=1.0, steps=10)
        steps = learnable_batches(g, hp["steps"], B, T, V)
        w2 = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        losses = adamw_losses(cfg, w2, steps, hp, hp["steps"], B, T)
        meta = dict(ids=ids.tolist(), batch=B, batch_ids=batch.flatten().tolist(), batch_targets=targets.flatten().tolist(),
                    loss=loss.item(), adamw=dict(hp, batches=steps, losses=losses),
                    made_by=f"Benchmarks/torch_reference.py --write-fixture (torch {torch.__version__}, float64)")
        save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"reference": json.dumps(meta)})
        print(f"{out}: loss {loss.item():.6f}, AdamW losses {losses[0]:.4f} .. {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
