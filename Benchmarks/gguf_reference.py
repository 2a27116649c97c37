#!/usr/bin/env python3
"""Checks TinyLM's GGUF path against Hugging Face transformers loading the same file (by hand).

  1. Tokenizer: ids of `tinylm tokenizer encode --model F.gguf` against the Hugging Face
     tokenizer that transformers builds from the same GGUF, on every line of the given corpora
     and on random Unicode strings; decode(encode(s)) == s; encode speed beside the `tokenizers`
     library, single-threaded, in alternating rounds.
  2. Logits: `tinylm logits --model F.gguf --all` against transformers' model from the same GGUF
     (dequantized to fp32) on prompts of 5 to 200 tokens: max |Δlogit| / max |logit|.

    ~/.cache/tinylm-peers-venv/bin/python Benchmarks/gguf_reference.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf \
        --corpus ../shared/data/corpora/tinyshakespeare.txt ../shared/data/corpora/war-and-peace.txt ../shared/data/eval/botchan.txt
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")


def lines_of(path):
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def random_strings(n, seed):
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\r\x0b\x0c\u00a0\u2003\u3000",
        "àéîõüçñßøåæ", "абвгдежзийклмнопрстуфхцчшщъыьэюя", "αβγδεζηθικλμνξοπρστυφχψω", "中文字符测试日本語ひらがなカタカナ한국어",
        "العربيةעבריתहिन्दीไทย", "😀😃😄😁😆🙂🙃😉👍🏽👨‍👩‍👧‍👦🇫🇷", "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", "'s're've'll'd'm't",
        "١٢٣٤٥٦٧٨٩٠۱۲۳½¼²³", "\x00\x01\x07\x1b\x7f", "<|im_start|><|im_end|><|endoftext|>",
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        s = "".join(rng.choice(rng.choice(pools)) for _ in range(k))
        out.append(s)
    return out


def llama_ids(binary, gguf, text):
    """llama.cpp's ids of the file `text` (special tokens parsed, no BOS)."""
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(binary))
    out = subprocess.run([binary, "-m", gguf, "-f", text, "--ids", "--log-disable", "--no-bos", "--no-escape"],
                         check=True, capture_output=True, env=env).stdout.decode()
    return json.loads(out.strip().splitlines()[-1]) if out.strip() else []


def run(cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, check=True, capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--tinylm", default=".build/release/tinylm")
    ap.add_argument("--corpus", nargs="*", default=[])
    ap.add_argument("--random", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-logits", action="store_true")
    ap.add_argument("--pre-tokenizer", help="passed to tinylm tokenizer encode (transformers splits smollm files by gpt2's rule)")
    ap.add_argument("--llama-tokenize", help="llama.cpp's llama-tokenize binary: also compare with llama.cpp's ids")
    args = ap.parse_args()
    from transformers import AutoTokenizer
    directory, name = os.path.split(os.path.abspath(args.gguf))
    hf = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    backend = hf.backend_tokenizer
    ok = True

    # 1. Tokenizer parity.
    sets = [(p, lines_of(p)) for p in args.corpus] + [("random Unicode", random_strings(args.random, 7))]
    with tempfile.TemporaryDirectory() as tmp:
        for label, lines in sets:
            path = os.path.join(tmp, "lines.txt")
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write("\n".join(lines) + "\n")
            extra = ["--pre-tokenizer", args.pre_tokenizer] if args.pre_tokenizer else []
            ours = run([args.tinylm, "tokenizer", "encode", "--model", args.gguf, path] + extra).stdout.decode().split("\n")[:-1]
            ours = [[int(x) for x in line.split()] for line in ours]
            theirs = [e.ids for e in backend.encode_batch(lines, add_special_tokens=False)]
            if args.llama_tokenize:
                # llama.cpp reads a prompt file as one text: compare chunks of 100 lines, joined by
                # newlines, each encoded whole by both (NUL bytes, which a C string cannot carry, left out).
                chunks = ["\n".join(l.replace("\x00", "") for l in lines[i:i + 100]) for i in range(0, len(lines), 100)]
                ours, theirs = [], []
                for chunk in chunks:
                    chunk_path = os.path.join(tmp, "chunk.txt")
                    with open(chunk_path, "w", encoding="utf-8", newline="") as f:
                        f.write(chunk)
                    ours.append([int(x) for x in run([args.tinylm, "tokenizer", "encode", "--model", args.gguf, "--whole-file", chunk_path] + extra).stdout.split()])
                    theirs.append(llama_ids(args.llama_tokenize, args.gguf, chunk_path))
                label += " (llama.cpp, chunks of 100 lines)"
            mismatches = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
            ids_path = os.path.join(tmp, "ids.txt")
            with open(ids_path, "w") as f:
                f.write("\n".join(" ".join(map(str, ids)) for ids in ours) + "\n")
            back = run([args.tinylm, "tokenizer", "decode", "--model", args.gguf, ids_path]).stdout.decode("utf-8").split("\n")[:-1]
            originals = chunks if args.llama_tokenize else lines
            roundtrip = 0 if args.llama_tokenize else sum(1 for a, b in zip(back, originals) if a != b) + abs(len(back) - len(originals))
            same = len(ours) == len(theirs) and not mismatches
            ok = ok and same and roundtrip == 0
            print(f"{label}: {len(lines)} lines, {sum(map(len, theirs))} tokens: "
                  f"{'identical ids' if same else f'{len(mismatches)} lines differ (first: {mismatches[:3]})'}; "
                  f"decode(encode(s)) != s on {roundtrip} lines")
            for i in mismatches[:2]:
                print(f"   {lines[i]!r}\n   ours   {ours[i][:30]}\n   theirs {theirs[i][:30]}")

        # Speed, single thread, alternating rounds, on the largest corpus.
        if args.corpus:
            big = max(args.corpus, key=os.path.getsize)
            lines = lines_of(big)
            nbytes = sum(len(l.encode()) for l in lines)
            ratios = []
            for r in range(args.rounds):
                err = run([args.tinylm, "tokenizer", "encode", "--model", args.gguf, "--stats", big]).stderr.decode()
                ours = float(err.split(" in ")[1].split(" s")[0])
                start = time.perf_counter()
                backend.encode_batch(lines, add_special_tokens=False)
                theirs = time.perf_counter() - start
                ratios.append(theirs / ours)
                print(f"round {r + 1}: TinyLM {ours:.3f} s ({nbytes / ours / 1e6:.2f} MB/s), tokenizers {theirs:.3f} s "
                      f"({nbytes / theirs / 1e6:.2f} MB/s): {theirs / ours:.2f}x")
            ratios.sort()
            print(f"encode speed, median of rounds: {ratios[len(ratios) // 2]:.2f}x the tokenizers library (one thread)")

    # 2. Logits against transformers.
    if not args.skip_logits:
        import torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads(2)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
        model.eval()
        texts = ["What is the capital of France?", "Once upon a time, there was a little robot who",
                 "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
                 "<|im_start|>user\nTell me about the moon.<|im_end|>\n<|im_start|>assistant\n",
                 " ".join(["The quick brown fox jumps over the lazy dog."] * 20)]
        worst = 0.0
        for text in texts:
            ids = hf(text, add_special_tokens=False).input_ids[:200]
            if len(ids) < 5:
                ids = ids + ids[:5 - len(ids)]
            out = run([args.tinylm, "logits", "--model", args.gguf, "--all", "--ids", ",".join(map(str, ids))]).stdout
            ours = torch.tensor(json.loads(out)["logits"], dtype=torch.float64)
            with torch.no_grad():
                theirs = model(torch.tensor([ids])).logits[0].double()
            rel = ((ours - theirs).abs().max() / theirs.abs().max()).item()
            same_argmax = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
            worst = max(worst, rel)
            print(f"{len(ids):4d} tokens: max |Δlogit| / max |logit| = {rel:.2e}, argmax agrees on {same_argmax:.0%}")
        print(f"worst {worst:.2e} -> {'PASS' if worst <= 1e-4 else 'FAIL'} (tolerance 1e-4)")
        ok = ok and worst <= 1e-4
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
