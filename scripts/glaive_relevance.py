#!/usr/bin/env python3
"""Appends glaive tool-call conversations to a tool-use training file, with relevance pairs.

    scripts/glaive_relevance.py GLAIVE.json TRAIN.jsonl

GLAIVE.json is ../shared/data/chat/glaive-toolcall-300.json (ShareGPT records: `conversations`
and a `tools` JSON string). The card's recipe already appends the records of at most 1,100
characters; this appends
- the call conversations it left out (longer ones), and
- for up to 100 call conversations whose first message is answered by the call at once, the same
  message with another conversation's tools listed instead (none of their names shares a word of
  four letters or more with the original's), answered with a refusal that names them.

So every foreign schema the model sees called is also seen listed where it does not fit, and the
choice to call depends on the list, not on the request's wording. Deterministic (seeded); the
retraining of 2026-11-28 (second session) used it on `synth-tools --count 2600 --seed 1
--other-tools` lines 1-2,400 plus the short glaive records: 52 longer calls, 73 refusals.
"""
import json
import random
import re
import sys


def size(record):
    return len(record.get("tools", "")) + sum(len(c["value"]) for c in record["conversations"])


def words(name):
    return {w for w in re.split(r"[_\W]+", name.lower()) if len(w) >= 4}


def names(record):
    return [t["name"] for t in json.loads(record["tools"])]


def main(glaive_path, train_path):
    records = json.load(open(glaive_path))
    calls = [r for r in records if any(c["from"] == "function_call" for c in r["conversations"])]
    longer = [r for r in calls if size(r) > 1100]
    rng = random.Random(11)
    swapped, seen = [], set()
    for r in rng.sample(calls, len(calls)):
        if len(swapped) == 100:
            break
        conversation = r["conversations"]
        i = next(k for k, c in enumerate(conversation) if c["from"] == "function_call")
        # One request answered at once by the call: the same request, other tools, a refusal.
        if i != 1 or conversation[0]["value"] in seen:
            continue
        seen.add(conversation[0]["value"])
        json.loads(conversation[i]["value"])  # the call parses
        own = set().union(*(words(n) for n in names(r)))
        others = [o for o in calls if o is not r and not (set().union(*(words(n) for n in names(o))) & own)]
        other = rng.choice(others)
        tools = json.loads(other["tools"])
        if len(tools) == 1:
            d = tools[0]["description"].rstrip(".")
            text = (f"I'm sorry, but I can't help with that. The only function I have is {tools[0]['name']}, "
                    f"which can {d[0].lower() + d[1:]}.")
        else:
            text = ("I'm sorry, but I can't help with that: none of the functions I have ("
                    + ", ".join(t["name"] for t in tools) + ") can do it.")
        pair = {"conversations": conversation[:i] + [{"from": "gpt", "value": text}], "tools": other["tools"]}
        if size(pair) <= 1800:
            swapped.append(pair)
    lines = open(train_path).read().splitlines()
    lines += [json.dumps(r) for r in longer] + [json.dumps(r) for r in swapped]
    open(train_path, "w").write("\n".join(lines) + "\n")
    print(f"{train_path}: {len(longer)} longer calls, {len(swapped)} refusals with other tools, {len(lines)} lines")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
