#!/usr/bin/env bash
# Issue 20, item 12: the memory a zip archive of many tiny entries costs. Writes a zip of
# ENTRIES (default 1,000,000) empty stored entries named `part-NNNNNNN.json` to
# ZIP_DIR (default /tmp/ualhunt-zip-entries) and measures one hunt over it: wall time,
# peak RSS (/usr/bin/time -v) and the peak heap the tool's `--stats` reports. The
# README's zip row in "Resource bounds" comes from here. Needs python3 and GNU time.
#   cargo build --release && scripts/zip-entries.sh
#   ENTRIES=300000 UALHUNT=target/debug/ualhunt scripts/zip-entries.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${UALHUNT:-${CARGO_TARGET_DIR:-target}/release/ualhunt}
dir=${ZIP_DIR:-/tmp/ualhunt-zip-entries}
entries=${ENTRIES:-1000000}
mkdir -p "$dir"
zip="$dir/empty-$entries.zip"
if [ ! -f "$zip" ]; then
  python3 - "$zip" "$entries" <<'PY'
import sys, zipfile
path, n = sys.argv[1], int(sys.argv[2])
with zipfile.ZipFile(path + ".part", "w", zipfile.ZIP_STORED) as z:
    for i in range(n):
        z.writestr(f"part-{i:07}.json", b"")
import os
os.replace(path + ".part", path)
PY
fi
/usr/bin/time -v "$bin" hunt -q --no-context --format json --stats -o /dev/null "$zip" \
  </dev/null >/dev/null 2>"$dir/run.err" || true
wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/run.err")
rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MiB", $2/1024}' "$dir/run.err")
heap=$(grep -o 'peak heap [0-9.]* MiB' "$dir/run.err" | head -1 || true)
inputs=$(awk '/^inputs / {print $2}' "$dir/run.err")
echo "$entries empty entries ($(du -h "$zip" | cut -f1) on disk): $inputs inputs read, wall $wall, peak RSS $rss, $heap"
