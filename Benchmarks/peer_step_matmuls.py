#!/usr/bin/env python3
"""The floor under an fp32 training step: one step's linear-layer products alone, in PyTorch.

For a config of ../shared/peers/torch_train_bench.py, runs exactly the matrix products of the
step's linear layers (qkv, attention out, MLP up and down in every layer, then the lm head), each
as forward X·Wᵀ, input gradient dY·W and weight gradient dYᵀ·X with the layouts nn.Linear uses,
back to back with torch.mm on the peer's thread count. Nothing else of the step runs: no
attention, norms, GELU, loss or optimizer. The time is what PyTorch's own GEMM library needs for
these products, so a whole step — PyTorch's or TinyLM's — cannot be much faster than it.

Usage (the virtualenv of ../shared/peers/setup.sh):
  $PEERS_VENV/bin/python Benchmarks/peer_step_matmuls.py --config tiny [--peers ../shared/peers]
"""
import argparse
import os
import statistics
import sys
import time


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--peers", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "peers"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.peers))
    import torch
    from torch_train_bench import CONFIGS

    torch.set_num_threads(args.threads)
    vocab, context, d, layers, _, batch = CONFIGS[args.config]
    n = batch * context
    # (inputs, outputs) of every linear layer; the lm head last.
    linears = [(d, 3 * d), (d, d), (d, 4 * d), (4 * d, d)] * layers + [(d, vocab)]
    products = []
    for i, o in linears:
        x, w, dy = torch.randn(n, i), torch.randn(o, i), torch.randn(n, o)
        products += [(x, w.t()), (dy, w), (dy.t(), x)]  # forward, input gradient, weight gradient
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)

    def step():
        for a, b in products:
            torch.mm(a, b)

    for _ in range(3):
        step()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    print(f"{args.config}: the linear products of one step, {flops / 1e9:.2f} GFLOP, torch.mm on "
          f"{args.threads} threads (torch {torch.__version__}): median {median * 1e3:.1f} ms, "
          f"best {best * 1e3:.1f} ms ({flops / best / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
