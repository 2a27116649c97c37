#!/usr/bin/env python3
"""The peer for `tinylm bench kernels`: numpy's matmul (OpenBLAS) on the same shapes.

A line-oriented server so that TinyLM and the peer can be measured in alternation, under the
same load on a shared machine: each input line is a JSON shape {name, transA, transB, m, n, k,
seconds}; the answer is one line with the best GFLOP/s over repetitions lasting `seconds`.
A line {shapes: [...], repeats} instead runs all those shapes back to back, each on operands of
its own, and answers with the best and median seconds of `repeats` runs.
The thread count comes from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, which `tinylm bench
kernels` sets before starting this script. Transposed operands are numpy views, so OpenBLAS
receives them as transpose flags, exactly like sgemm's.
"""
import json
import sys
import time

import numpy as np

_operands = {}


def new_operands(shape, rng):
    """Random A and B of a shape (transposed ones as views) and an output matrix."""
    m, n, k = shape["m"], shape["n"], shape["k"]
    a = rng.random((k, m) if shape["transA"] else (m, k), dtype=np.float32) - 0.5
    b = rng.random((n, k) if shape["transB"] else (k, n), dtype=np.float32) - 0.5
    return a.T if shape["transA"] else a, b.T if shape["transB"] else b, np.zeros((m, n), dtype=np.float32)


def operands(shape):
    key = (shape["transA"], shape["transB"], shape["m"], shape["n"], shape["k"])
    if key not in _operands:
        _operands.clear()
        _operands[key] = new_operands(shape, np.random.default_rng(1))
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


_sequences = {}


def sequence_seconds(request):
    """A list of shapes run back to back, each on operands of its own: best and median seconds."""
    key = json.dumps(request["shapes"])
    if key not in _sequences:
        _sequences.clear()
        _operands.clear()
        rng = np.random.default_rng(1)
        _sequences[key] = [new_operands(shape, rng) for shape in request["shapes"]]
    runs = _sequences[key]

    def run():
        for a, b, out in runs:
            np.matmul(a, b, out=out)

    run()
    times = []
    for _ in range(max(1, request.get("repeats", 10))):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    times.sort()
    return {"best": times[0], "median": times[len(times) // 2]}


def main():
    print(json.dumps({"ready": np.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip():
            request = json.loads(line)
            if "shapes" in request:
                print(json.dumps(sequence_seconds(request)), flush=True)
            else:
                print(json.dumps({"gflops": gflops(request)}), flush=True)


if __name__ == "__main__":
    main()
