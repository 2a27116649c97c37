#!/usr/bin/env python3
"""An adapter exported with `tinylm export-adapter` runs in llama.cpp (by hand): greedy
continuations of `llama-completion --lora` on an f32 base against `tinylm generate --adapter` on
the same base and prompts; they must agree (over the shorter of the two printed texts).

    bash ../shared/peers/build_llamacpp_noamx.sh
    python3 Benchmarks/lora_gguf_check.py --gguf ~/.cache/tinylm/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --adapter Checkpoints/smollm2-tools-lora
"""
import argparse
import os
import subprocess
import sys
import tempfile

PROMPTS = ["The capital of France is", "Once upon a time, a little robot", "To make a cup of tea, you"]


def run(cmd, env=None):
    return subprocess.run(cmd, check=True, capture_output=True, env=env).stdout.decode("utf-8", "replace").strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="the base (any type; an f32 copy is made)")
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    ap.add_argument("--llama-bin", default=os.path.expanduser("~/.cache/tinylm-peers-build/llama-noamx/bin"))
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()
    env = dict(os.environ, LD_LIBRARY_PATH=args.llama_bin)
    same = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base-f32.gguf")
        lora = os.path.join(tmp, "adapter.gguf")
        print(run([args.tinylm, "quantize", "--model", args.gguf, "--type", "f32", "--embeddings", "f32", "--out", base]))
        print(run([args.tinylm, "export-adapter", "--model", base, "--adapter", args.adapter, "--out", lora]))
        for prompt in PROMPTS:
            theirs = run([os.path.join(args.llama_bin, "llama-completion"), "-m", base, "--lora", lora, "-p", prompt,
                          "-n", str(args.tokens), "--temp", "0", "-t", "2", "-no-cnv", "--no-warmup", "--repeat-penalty", "1",
                          "-ctk", "f32", "-ctv", "f32"], env)
            ended = theirs.endswith("[end of text]")
            theirs = theirs.removesuffix("[end of text]").rstrip()
            ours = run([args.tinylm, "generate", "--model", base, "--adapter", args.adapter, "--prompt", prompt,
                        "--max-tokens", str(args.tokens), "--temperature", "0", "--repeat-penalty", "1", "--top-p", "1", "--min-p", "0",
                        "--no-start-token"])
            shorter = min(len(theirs), len(ours))
            # Both stopped at the end-of-text token with the same text, or both ran on and agree
            # over the shorter printed text (llama-completion's printed length varies by a token).
            equal = theirs == ours if ended else theirs[:shorter] == ours[:shorter] and shorter >= len(prompt) + 40
            same += equal
            print(f"{'same' if equal else 'DIFFERENT'}: {prompt!r}\n  llama.cpp {theirs!r}\n  TinyLM    {ours!r}")
    print(f"llama.cpp with the exported adapter continues like TinyLM with the adapter on {same} of {len(PROMPTS)} prompts")
    sys.exit(0 if same == len(PROMPTS) else 1)


if __name__ == "__main__":
    main()
