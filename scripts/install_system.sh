#!/usr/bin/env bash
# Debian packages the project needs, installed only when absent:
#   ffmpeg (whisper's audio decoding, sample-video muxing), espeak-ng (sample voiceovers),
#   fonts-noto-cjk (Chinese captions in the sample videos).
# Optional: --with-chromium also installs chromium (headless screenshots, scripts/screenshots.sh);
# `make run` never passes it.
set -euo pipefail
need=()
if [ "${1:-}" = "--with-chromium" ]; then
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
[ -f /usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc ] || need+=(fonts-noto-cjk)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "Installing Debian packages: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
