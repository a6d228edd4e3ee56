#!/usr/bin/env bash
# Reproduce docs/img/{viz,viz_preview,evaluation_report}.png (headless Chromium).
#
#   bash scripts/screenshots.sh            # from the project root, after `make run`
#
# 1. imports the released splits if not done yet (ingestion --tags released);
# 2. runs the evaluation pipeline on QUESTIONS released questions (default 10 = 2 videos):
#    the two text baselines answered by the packaged SmolLM2 plus an extractive timeline
#    baseline (scripts/extractive_baseline.py, no model), judged by the deterministic
#    token-overlap smoke judge (rl_training.smoke_judge), both served on 127.0.0.1 - real
#    numbers from a real run, not a real judge;
# 3. builds the kedro-viz site with previews (`make viz`'s command), serves it on 127.0.0.1
#    and screenshots it, then screenshots data/08_reporting/evaluation_report.html;
# 4. keeps each PNG under 1 MB (palette quantisation when needed).
# Chromium: `bash scripts/install_system.sh --with-chromium` (Debian package `chromium`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KEDRO=${KEDRO:-.venv/bin/kedro}
QUESTIONS=${QUESTIONS:-10}
OUT=docs/img
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 KEDRO_DISABLE_TELEMETRY=1
export KEDRO_LOGGING_CONFIG=${KEDRO_LOGGING_CONFIG:-conf/logging.yml}
CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$CHROMIUM" ]; then
  echo "Chromium not found: run 'bash scripts/install_system.sh --with-chromium'" >&2
  exit 1
fi
mkdir -p "$OUT"

if [ ! -f data/03_primary/released_qa.parquet ] || [ ! -f data/02_intermediate/released/videos.parquet ]; then
  $KEDRO run --pipelines ingestion --tags released
fi

# The servers' URLs are only known once they listen: expanded inside the command.
X=evaluation.models_under_test.extractive
$PY -m evads_kedro.pipelines.rl_training.smoke_judge -- $PY scripts/extractive_baseline.py -- bash -c '
  '"$KEDRO"' run --pipelines evaluation --params "evaluation.subset.max_questions='"$QUESTIONS"',evaluation.judge.backend.backend=openai,evaluation.judge.backend.base_url=$EVADS_JUDGE_BASE_URL,evaluation.judge.backend.model=smoke-overlap-judge,evaluation.judge.backend.api_key_env=null,evaluation.judge.smoke_test=true,evaluation.progress=false,'"$X"'.timeline=full,'"$X"'.video=none,'"$X"'.concurrency=4,'"$X"'.backend.backend=openai,'"$X"'.backend.base_url=$EVADS_BASELINE_BASE_URL,'"$X"'.backend.model=extractive-timeline-baseline,'"$X"'.backend.api_key_env=null"'

$KEDRO viz build --include-previews

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY -m http.server "$PORT" --bind 127.0.0.1 --directory build >/dev/null 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  $PY -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/api/main')" 2>/dev/null && break
  sleep 0.2
done

shot() {  # shot OUTPUT URL WIDTH HEIGHT
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --screenshot="$1" --window-size="$3,$4" --virtual-time-budget=15000 "$2" >/dev/null 2>&1
  test -s "$1"
}
# A same-origin page that turns off kedro-viz's feature-hint tour (it would cover the graph)
# and picks the light theme, then opens the requested view.
cat > build/_shot.html <<'HTML'
<!DOCTYPE html><html><body><script>
localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false, theme: "light"}));
location.replace("/" + location.search);
</script></body></html>
HTML
PLOT_ID=$($PY -c 'import json; print(next(n["id"] for n in json.load(open("build/api/pipelines/evaluation"))["nodes"] if n["name"] == "evaluation_plot"))')
shot "$OUT/viz.png" "http://127.0.0.1:$PORT/_shot.html?pid=evaluation" 1600 1000
shot "$OUT/viz_preview.png" "http://127.0.0.1:$PORT/_shot.html?pid=evaluation&sid=$PLOT_ID" 1600 1000
shot "$OUT/evaluation_report.png" "file://$PWD/data/08_reporting/evaluation_report.html" 1400 2200

$PY - "$OUT/viz.png" "$OUT/viz_preview.png" "$OUT/evaluation_report.png" <<'EOF'
import os
import sys

from PIL import Image

for path in sys.argv[1:]:
    if os.path.getsize(path) >= 1_000_000:
        Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)
    print(f"{path}: {os.path.getsize(path) / 1e3:.0f} kB")
EOF
