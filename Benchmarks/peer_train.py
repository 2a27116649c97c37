#!/usr/bin/env python3
"""The peer for `tinylm bench train`: ../shared/peers/torch_train_bench.py, kept alive.

A line-oriented server so that TinyLM and PyTorch can be measured in alternating rounds under the
same load on a shared machine. argv[1] is the folder holding torch_train_bench.py. Each input line
is a JSON request {config, steps, warmup, threads, amp} (amp: the peer's --amp, bf16 autocast); the answer is one line with the fields of the
peer's own `run()` result that TinyLM reports: tokens/s from the median over clean steps (steps
during which other processes used < 0.1 cores), the clean-step count and the median over all
steps. Nothing of the benchmark is reimplemented here: each round calls the peer's `run()`.
The mixture-of-experts configs (small-moe, small-dense) run hf_moe_train_bench.py's own `main()`
(transformers' Mixtral and the same-size dense Llama), its printout sent to stderr.
"""
import contextlib
import json
import os
import sys
import tempfile

MOE_CONFIGS = ("small-moe", "small-dense")


def run_moe(r):
    import hf_moe_train_bench as moe
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        sys.argv = ["hf_moe_train_bench.py", "--config", r["config"], "--steps", str(r["steps"]),
                    "--warmup", str(r["warmup"]), "--threads", str(r["threads"]), "--json", out.name]
        with contextlib.redirect_stdout(sys.stderr):
            moe.main()
        result = json.load(open(out.name))
    result.setdefault("step_s_median_all", result["step_s_median"])
    result.setdefault("foreign_cores", None)
    return result


def main():
    sys.path.insert(0, os.path.abspath(sys.argv[1]))
    import torch  # noqa: F401  (imported here so that `ready` means the import cost is paid)
    import torch_train_bench as peer

    print(json.dumps({"ready": torch.__version__}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        r = json.loads(line)
        if r["config"] in MOE_CONFIGS:
            result = run_moe(r)
        else:
            result = peer.run(r["config"], r["steps"], r["warmup"], r["threads"], False, bool(r.get("amp", False)))
        print(json.dumps({
            "tokens_per_s": result["tokens_per_s"],
            "step_s_median": result["step_s_median"],
            "step_s_median_all": result["step_s_median_all"],
            "clean_steps": result["clean_steps"],
            "steps": result["steps"],
            "foreign_cores": result["foreign_cores"],
            "waited_for_quiet_s": result["waited_for_quiet_s"],
        }), flush=True)


if __name__ == "__main__":
    main()
