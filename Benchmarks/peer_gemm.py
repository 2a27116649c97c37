#!/usr/bin/env python3
"""The peer for `tinylm bench kernels`: numpy's matmul (OpenBLAS) on the same shapes.

A line-oriented server so that TinyLM and the peer can be measured in alternation, under the
same load on a shared machine: each input line is a JSON shape {name, transA, transB, m, n, k,
seconds}; the answer is one line with the best GFLOP/s over repetitions lasting `seconds`.
The thread count comes from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, which `tinylm bench
kernels` sets before starting this script. Transposed operands are numpy views, so OpenBLAS
receives them as transpose flags, exactly like sgemm's.
"""
import json
import sys
import time

import numpy as np

_operands = {}


def operands(shape):
    key = (shape["transA"], shape["transB"], shape["m"], shape["n"], shape["k"])
    if key not in _operands:
        m, n, k = shape["m"], shape["n"], shape["k"]
        rng = np.random.default_rng(1)
        a = rng.random((k, m) if shape["transA"] else (m, k), dtype=np.float32) - 0.5
        b = rng.random((n, k) if shape["transB"] else (k, n), dtype=np.float32) - 0.5
        _operands.clear()
        _operands[key] = (a.T if shape["transA"] else a, b.T if shape["transB"] else b,
                          np.empty((m, n), dtype=np.float32))
    return _operands[key]


def gflops(shape):
    a, b, out = operands(shape)
    np.matmul(a, b, out=out)
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 3 or spent < shape.get("seconds", 0.3):
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        t = time.perf_counter() - t
        best, spent, runs = min(best, t), spent + t, runs + 1
    return 2.0 * shape["m"] * shape["n"] * shape["k"] / best / 1e9


def main():
    print(json.dumps({"ready": np.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps({"gflops": gflops(json.loads(line))}), flush=True)


if __name__ == "__main__":
    main()
