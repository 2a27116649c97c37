#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf/blocks.gguf with the `gguf` package (llama.cpp's own Python
library): for each block type, raw blocks (`TYPE.raw`) and the reference dequantization
(`TYPE.expected`, F32), and for the types it quantizes, the source floats (`TYPE.source`) whose
quantization is `TYPE.raw`. The Swift tests read it with TinyLM's reader (a file written by the
reference writer) and check the decoders and quantizers bit for bit.

    ~/.cache/tinylm-peers-venv/bin/python Benchmarks/gguf_fixture.py Tests/Fixtures/gguf/blocks.gguf
"""
import ctypes
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType as T, GGUFWriter
from gguf import quants


def main(path):
    rng = np.random.default_rng(20261126)
    w = GGUFWriter(path, "tinylm-fixture")
    w.add_string("fixture.note", "raw blocks and their reference dequantization")
    # Values with the cases quantizers get wrong: zeros, ties for the max, tiny and huge values.
    source = rng.standard_normal((4, 256)).astype(np.float32)
    source[0, :32] = 0
    source[1, 0:32:4] = 3.0
    source[1, 1:32:4] = -3.0
    source[2, :64] *= 1e-30
    source[3, :32] *= 1e30
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1):
        raw = quants.quantize(source, qtype)
        w.add_tensor(f"{qtype.name}.source", source)
        w.add_tensor(f"{qtype.name}.raw", raw, raw_dtype=qtype)
        w.add_tensor(f"{qtype.name}.expected", quants.dequantize(raw, qtype).astype(np.float32))
    for qtype, block_bytes in ((T.Q4_K, 144), (T.Q6_K, 210)):
        raw = rng.integers(0, 256, size=(2, 2 * block_bytes), dtype=np.uint8)
        # Finite fp16 scales: random bytes with the exponent kept below the all-ones pattern.
        scale_offsets = [0, 2] if qtype == T.Q4_K else [208]
        for row in range(2):
            for b in range(2):
                for off in scale_offsets:
                    raw[row, b * block_bytes + off + 1] &= 0x3B
        w.add_tensor(f"{qtype.name}.raw", raw, raw_dtype=qtype)
        w.add_tensor(f"{qtype.name}.expected", quants.dequantize(raw, qtype).astype(np.float32))
    for qtype, dtype in ((T.F16, np.float16),):
        values = source.astype(dtype)
        w.add_tensor(f"{qtype.name}.raw", values)
        w.add_tensor(f"{qtype.name}.expected", values.astype(np.float32))
    # 100 tensors of 256 values, one per row, each with its hard case: the quantizers must give
    # the same bytes as the reference on every one.
    hard = hard_tensors(rng)
    w.add_tensor("hard.source", hard)
    for qtype in (T.Q8_0, T.Q4_0, T.Q4_1):
        w.add_tensor(f"hard.{qtype.name}", quants.quantize(hard, qtype), raw_dtype=qtype)
    # Q4_K: gguf-py has no quantizer; ggml's own C reference (quantize_row_q4_K_ref) through
    # ctypes, from the llama.cpp libraries ../shared/peers/build_llamacpp_noamx.sh builds.
    lib = os.path.expanduser(os.environ.get("GGML_BASE", "~/.cache/tinylm-peers-build/llama-noamx/bin/libggml-base.so"))
    ggml = ctypes.CDLL(lib)
    k_source = np.ascontiguousarray(hard[:, :].reshape(-1))
    k_raw = np.zeros(k_source.size // 256 * 144, dtype=np.uint8)
    ggml.quantize_row_q4_K_ref(k_source.ctypes.data_as(ctypes.c_void_p), k_raw.ctypes.data_as(ctypes.c_void_p),
                               ctypes.c_int64(k_source.size))
    w.add_tensor("hard.Q4_K", k_raw.reshape(hard.shape[0], -1), raw_dtype=T.Q4_K)
    bf16 = quants.quantize(source, T.BF16)
    w.add_tensor("BF16.source", source)
    w.add_tensor("BF16.raw", bf16, raw_dtype=T.BF16)
    w.add_tensor("BF16.expected", quants.dequantize(bf16, T.BF16).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path)


def hard_tensors(rng):
    """100 rows of 256 floats: Gaussians at many scales, and rows with zeros, ties for the largest
    magnitude (same and opposite sign), denormals, ±1e30, values near the float maximum, constant
    blocks, and single spikes."""
    rows = []
    for i in range(100):
        x = (rng.standard_normal(256) * 10.0 ** rng.integers(-6, 7)).astype(np.float32)
        case = i % 10
        if case == 0:
            x[: 32 * rng.integers(1, 8)] = 0
        elif case == 1:
            m = np.float32(abs(x).max() * 2)
            x[0:256:16] = m
            x[1:256:32] = -m
        elif case == 2:
            x = (rng.standard_normal(256) * 1e-39).astype(np.float32)  # denormals
        elif case == 3:
            x[::7] = np.float32(1e30) * np.sign(rng.standard_normal(x[::7].shape)).astype(np.float32)
        elif case == 4:
            x = (rng.uniform(-1, 1, 256) * 1e37).astype(np.float32)
        elif case == 5:
            x[:] = np.float32(rng.standard_normal())  # constant
        elif case == 6:
            x[:] = 0
            x[rng.integers(0, 256)] = np.float32(rng.standard_normal() * 100)
        elif case == 7:
            x = np.abs(x)  # all positive: Q4_1's minimum is not 0
        elif case == 8:
            x = -np.abs(x)
        rows.append(x.astype(np.float32))
    return np.stack(rows)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/gguf/blocks.gguf")
