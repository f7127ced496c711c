#!/usr/bin/env bash
# Headless screenshot of a built page, for checking the book renders offline.
# Usage: tools/screenshot.sh <html file> <out.png> [WIDTHxHEIGHT, default 1280x900]
# Needs Debian's chromium:  apt-get update && apt-get install -y chromium
# --virtual-time-budget gives MathJax time to typeset before the capture.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 <html file> <out.png> [WIDTHxHEIGHT]" >&2
  exit 2
fi
html=$(realpath "$1")
out=$(realpath -m "$2")
size=${3:-1280x900}
[[ -f "$html" ]] || { echo "no such file: $html" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n "$browser" ]] || { echo "chromium not found (apt-get install -y chromium)" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu \
  --disable-background-networking --disable-component-update --disable-sync --no-first-run \
  --user-data-dir="$profile" --window-size="${size/x/,}" --hide-scrollbars \
  --virtual-time-budget=5000 --screenshot="$out" "file://$html" 2>"$profile/stderr" \
  || { cat "$profile/stderr" >&2; exit 1; }
[[ -s "$out" ]] || { echo "no screenshot written" >&2; exit 1; }
echo "$out"
