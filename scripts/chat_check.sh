#!/usr/bin/env bash
# The chat's acceptance check, as a user sees it: the shipped model and adapter answer four
# questions, once piped (stdin not a terminal) and once in a real terminal (tmux send-keys /
# capture-pane). Exits 1 naming the first expectation that fails.
#
#   scripts/chat_check.sh            # after `make chat` has fetched the model once
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release/tinylm}
MODEL=${MODEL:-$HOME/.cache/tinylm/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
ADAPTER=${ADAPTER:-Checkpoints/smollm2-tools-lora}
ARGS=(chat --model "$MODEL" --adapter "$ADAPTER" --temperature 0)
QUESTIONS=("What is 17 times 23?" "What time is it in Tokyo?" "How many kilometres is 26.2 miles?" "Tell me about the moon.")
[ -x "$BIN" ] || { echo "error: $BIN not built (make build)"; exit 1; }
[ -f "$MODEL" ] || { echo "error: $MODEL missing (make smollm2)"; exit 1; }

check() {  # check NAME TRANSCRIPT
  local name=$1 text=$2 fail=0
  grep -q '→ calculator {"expression": "17 \* 23"}' <<<"$text" || { echo "$name: no calculator call for 17 * 23"; fail=1; }
  grep -q '391' <<<"$text" || { echo "$name: the answer 391 is missing"; fail=1; }
  grep -q '→ current_time {"timezone": "Asia/Tokyo"}' <<<"$text" || { echo "$name: no current_time call for Asia/Tokyo"; fail=1; }
  grep -q '→ unit_convert {"value": 26.2, "from": "mi", "to": "km"}' <<<"$text" || { echo "$name: no unit_convert call for 26.2 mi"; fail=1; }
  # The moon: an answer after the question, and no tool call before the next prompt.
  local moon
  moon=$(awk '/Tell me about the moon/{found=1; next} found' <<<"$text")
  if grep -q '→' <<<"$moon"; then echo "$name: a tool was called for the moon"; fail=1; fi
  [ -n "$(tr -d '[:space:]>' <<<"$moon")" ] || { echo "$name: no answer about the moon"; fail=1; }
  [ $fail = 0 ] && echo "$name: ok"
  return $fail
}

# 1. Piped: one message per line, replies on stdout (tool calls shown as → lines). The moon goes
# last, so everything after the unit_convert exchange's answer is its reply.
piped=$(printf '%s\n' "${QUESTIONS[@]}" | "$BIN" "${ARGS[@]}" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g')
echo "$piped"
convert_line=$(grep -n '→ unit_convert' <<<"$piped" | head -1 | cut -d: -f1 || true)
check piped "$(head -n "$(( ${convert_line:-0} + 1 ))" <<<"$piped"; echo "Tell me about the moon."; tail -n +"$(( ${convert_line:-0} + 2 ))" <<<"$piped")" || exit 1

# 2. A real terminal under tmux.
command -v tmux >/dev/null || { echo "tmux: not installed; skipping the terminal check"; exit 1; }
session=tinylm-chat-check-$$
tmux new-session -d -s "$session" -x 160 -y 60 "$BIN ${ARGS[*]@Q}"
trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT
wait_for() {  # wait_for PATTERN SECONDS
  for _ in $(seq 1 $(( $2 * 4 ))); do
    tmux capture-pane -p -t "$session" -S -200 | grep -q "$1" && return 0
    sleep 0.25
  done
  return 1
}
wait_for '^>' 60 || { echo "terminal: no prompt"; tmux capture-pane -p -t "$session"; exit 1; }
for q in "${QUESTIONS[@]}"; do
  before=$(tmux capture-pane -p -t "$session" -S -200 | grep -c '^>' || true)
  tmux send-keys -t "$session" "$q" Enter
  for _ in $(seq 1 240); do
    now=$(tmux capture-pane -p -t "$session" -S -200 | grep -c '^>' || true)
    [ "$now" -gt "$before" ] && break
    sleep 0.25
  done
done
screen=$(tmux capture-pane -p -t "$session" -S -200)
echo "$screen"
check terminal "$screen"
