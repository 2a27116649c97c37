#!/usr/bin/env python3
"""Checks TinyLM's mixture of experts against Hugging Face `MixtralForCausalLM` (not in CI).

For several seeds and option mixes it writes a TinyLM mixture checkpoint (`tinylm init`), loads
its `model.safetensors` unchanged into `MixtralForCausalLM` (strict: every tensor name and shape
must match), runs both in float64 / float32 and compares
  - the logits of every position, relative to the largest logit (goal 1e-4),
  - the load-balancing loss (`aux_loss`, goal 1e-5 absolute),
  - every parameter's gradient of cross-entropy + router_aux_loss_coef · aux_loss, relative to
    each tensor's largest gradient (goal 1e-4).
The z-loss coefficient is 0 here (Mixtral has none); TinyLM's z-loss is checked by finite
differences in the test suite.

    ~/.cache/tinylm-peers-venv/bin/python Benchmarks/moe_parity.py [--tinylm .build/release/tinylm]
"""
import argparse
import json
import os
import subprocess
import tempfile

import torch
from safetensors.torch import load_file

VARIANTS = [
    dict(name="8 experts, top 2, tied, GQA", seed=0, num_local_experts=8, num_experts_per_tok=2, tied=True, kv=2),
    dict(name="8 experts, top 2, untied, MHA", seed=1, num_local_experts=8, num_experts_per_tok=2, tied=False, kv=4),
    dict(name="8 experts, top 2, tied, MHA, other seed", seed=2, num_local_experts=8, num_experts_per_tok=2, tied=True, kv=4),
    dict(name="4 experts, top 1, untied, GQA", seed=3, num_local_experts=4, num_experts_per_tok=1, tied=False, kv=1),
]
SHAPE = dict(vocab_size=512, context_length=32, d_model=64, n_layers=2, n_heads=4, d_ff=96)


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    a = ap.parse_args()
    from transformers import MixtralForCausalLM
    worst = dict(logits=0.0, aux=0.0, grads=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for v in VARIANTS:
            cfg = dict(SHAPE, norm="rmsnorm", positions="rope", activation="swiglu", bias=False,
                       tied_embeddings=v["tied"], n_kv_heads=v["kv"], init_std=0.1,
                       num_local_experts=v["num_local_experts"], num_experts_per_tok=v["num_experts_per_tok"],
                       d_ff_expert=48, router_aux_loss_coef=0.02, router_z_loss_coef=0.0)
            cfg_path, ckpt = os.path.join(tmp, "cfg.json"), os.path.join(tmp, f"m{v['seed']}")
            json.dump(cfg, open(cfg_path, "w"))
            run([a.tinylm, "init", "--config", cfg_path, "--out", ckpt, "--seed", str(v["seed"])])
            # The checkpoint directory as TinyLM wrote it: its config.json carries Mixtral's fields.
            hf, info = MixtralForCausalLM.from_pretrained(ckpt, output_loading_info=True, attn_implementation="eager",
                                                         experts_implementation="eager")
            problems = {k: v for k, v in info.items() if v and k != "mismatched_keys" or (k == "mismatched_keys" and v)}
            assert not problems, problems
            g = torch.Generator().manual_seed(v["seed"])
            B, T = 2, cfg["context_length"]
            ids = torch.randint(0, cfg["vocab_size"], (B, T), generator=g)

            # Logits (one sequence, float64) against `tinylm logits --all`.
            hf64 = hf.double()
            with torch.no_grad():
                ref = hf64(ids[:1]).logits[0]
            ours = torch.tensor(json.loads(run([a.tinylm, "logits", "--model", ckpt, "--all",
                                                "--ids", ",".join(map(str, ids[0].tolist()))]))["logits"], dtype=torch.float64)
            rel_logits = ((ours.reshape(ref.shape) - ref).abs().max() / ref.abs().max()).item()

            # Loss, aux loss and gradients of the batch (float64 reference).
            hf64.zero_grad()
            out = hf64(ids, labels=ids)
            out.loss.backward()
            grads_file = os.path.join(tmp, "g.safetensors")
            text = run([a.tinylm, "gradients", "--model", ckpt, "--batch", str(B),
                        "--ids", ",".join(map(str, ids.flatten().tolist())), "--out", grads_file])
            aux = float(text.split("aux_loss ")[1].split(";")[0])
            aux_err = abs(aux - out.aux_loss.item())
            ours_g = load_file(grads_file)
            params = dict(hf64.named_parameters())
            f = cfg["d_ff_expert"]

            def reference_gradient(name):
                # Hugging Face keeps each block's experts stacked ([E, 2f, d] gate and up, [E, d, f] down).
                if ".block_sparse_moe.experts." in name:
                    prefix, rest = name.split(".block_sparse_moe.experts.")
                    e, w = rest.split(".")[:2]
                    e = int(e)
                    if w == "w2":
                        return params[prefix + ".mlp.experts.down_proj"].grad[e]
                    stacked = params[prefix + ".mlp.experts.gate_up_proj"].grad[e]
                    return stacked[:f] if w == "w1" else stacked[f:]
                return params[name.replace(".block_sparse_moe.", ".mlp.")].grad

            rel_grads = 0.0
            for name, grad in ours_g.items():
                reference = reference_gradient(name)
                scale = reference.abs().max().item()
                rel = (grad.double() - reference).abs().max().item() / max(scale, 1e-30)
                rel_grads = max(rel_grads, rel)
            # Each block's 3E expert matrices are Hugging Face's two stacked ones.
            stacked = cfg["n_layers"] * (3 * cfg["num_local_experts"] - 2)
            assert len(ours_g) == len(params) + stacked, (len(ours_g), len(params))
            print(f"{v['name']}: logits {rel_logits:.2e}, aux {aux:.6f} vs {out.aux_loss.item():.6f} "
                  f"(|diff| {aux_err:.1e}), {len(ours_g)} gradients: worst {rel_grads:.2e}")
            worst = dict(logits=max(worst["logits"], rel_logits), aux=max(worst["aux"], aux_err),
                         grads=max(worst["grads"], rel_grads))
    ok = worst["logits"] <= 1e-4 and worst["aux"] <= 1e-5 and worst["grads"] <= 1e-4
    print(f"worst: logits {worst['logits']:.2e} (goal 1e-4), aux {worst['aux']:.1e} (goal 1e-5), "
          f"gradients {worst['grads']:.2e} (goal 1e-4): {'PASS' if ok else 'FAIL'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
