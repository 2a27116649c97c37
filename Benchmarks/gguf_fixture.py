#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf/blocks.gguf with the `gguf` package (llama.cpp's own Python
library): for each block type, raw blocks (`TYPE.raw`) and the reference dequantization
(`TYPE.expected`, F32), and for the types it quantizes, the source floats (`TYPE.source`) whose
quantization is `TYPE.raw`. The Swift tests read it with TinyLM's reader (a file written by the
reference writer) and check the decoders and quantizers bit for bit.

    ~/.cache/tinylm-peers-venv/bin/python Benchmarks/gguf_fixture.py Tests/Fixtures/gguf/blocks.gguf
"""
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
    bf16 = quants.quantize(source, T.BF16)
    w.add_tensor("BF16.source", source)
    w.add_tensor("BF16.raw", bf16, raw_dtype=T.BF16)
    w.add_tensor("BF16.expected", quants.dequantize(bf16, T.BF16).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/Fixtures/gguf/blocks.gguf")
