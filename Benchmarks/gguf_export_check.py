#!/usr/bin/env python3
"""Exports TinyLM checkpoints to GGUF and runs them in llama.cpp (by hand): greedy 64-token
continuations of llama.cpp's `llama-completion` against `tinylm generate --temperature 0` on the
same prompts. f32 files must continue identically; q8_0 files must load and run.

    bash ../shared/peers/build_llamacpp_noamx.sh      # llama-completion without AMX
    python3 Benchmarks/gguf_export_check.py --checkpoint Checkpoints/tinystories-3.5m --checkpoint runs/llama-small
"""
import argparse
import os
import subprocess
import sys
import tempfile

PROMPTS = ["Once upon a time, there was a little girl named Lily.", "Tom had a big red ball.",
           "The sun was shining and the birds", "One day, a cat and a dog", "Mia wanted to bake a cake for her mom."]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", action="append", required=True)
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    ap.add_argument("--llama-bin", default=os.path.expanduser("~/.cache/tinylm-peers-build/llama-noamx/bin"))
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    env = dict(os.environ, LD_LIBRARY_PATH=args.llama_bin)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for ckpt in args.checkpoint:
            for kind in ("f32", "q8_0"):
                gguf = os.path.join(tmp, f"{os.path.basename(ckpt)}-{kind}.gguf")
                print(subprocess.run([args.tinylm, "export", "--model", ckpt, "--out", gguf, "--type", kind],
                                     check=True, capture_output=True, text=True).stdout.strip())
                same = 0
                for prompt in PROMPTS:
                    theirs = subprocess.run([os.path.join(args.llama_bin, "llama-completion"), "-m", gguf, "-p", prompt,
                                             "-n", str(args.tokens), "--temp", "0", "-t", "2", "-no-cnv", "--no-warmup",
                                             "--repeat-penalty", "1"], env=env, check=True, capture_output=True).stdout.decode("utf-8", "replace").strip()
                    ours = subprocess.run([args.tinylm, "generate", "--model", ckpt, "--prompt", prompt, "--max-tokens", str(args.tokens),
                                           "--temperature", "0", "--no-start-token", "--repeat-penalty", "1", "--top-p", "1", "--min-p", "0"],
                                          check=True, capture_output=True).stdout.decode().strip()
                    # llama-completion's printed length varies by a token or two from run to run (it
                    # stops on its own count); the continuations must agree wherever both have text.
                    shorter = min(len(theirs), len(ours))
                    equal = theirs[:shorter] == ours[:shorter] and shorter >= len(prompt) + 100
                    same += equal
                    if kind == "f32" and not equal:
                        print(f"  differs on {prompt!r}:\n    llama.cpp {theirs!r}\n    TinyLM    {ours!r}")
                    if kind == "q8_0":
                        print(f"  q8_0 {prompt[:30]!r}: llama.cpp -> {theirs[len(prompt):len(prompt) + 70]!r}")
                print(f"{ckpt} {kind}: llama.cpp's greedy continuation equals TinyLM's (fp32 checkpoint) on {same} of {len(PROMPTS)} prompts "
                      "(over the shorter of the two, at least 100 characters)")
                if kind == "f32":
                    ok = ok and same == len(PROMPTS)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
