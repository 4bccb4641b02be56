#!/usr/bin/env bash
# scripts/bench-rules.sh: every published KQL query rule in one pass, beside the built-in
# rule alone, over the same archive; then each rule's records evaluated per GB.
#
# Usage: scripts/bench-rules.sh [ARCHIVE]
#   ARCHIVE   a JSON lines archive (default: generate 1 GiB with `ualhunt generate
#             --size 1G --seed 42 --rate 0` into target/bench-data/, as scripts/bench.sh)
# Environment:
#   RULES=../shared/corpus/elastic-rules   the rule files (Elastic's, not in this project)
#   BENCH_RUNS=7                            timed runs per command (hyperfine, alternated
#                                           by hyperfine's own order: one command at a time)
#   UALHUNT=PATH                            a ualhunt binary (default: cargo build --release)
# Needs hyperfine (apt-get install hyperfine). Prints hyperfine's table, the ratio of the
# medians, and the per-rule lines of `--stats`.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RULES=${RULES:-$ROOT/../shared/corpus/elastic-rules}
RUNS=${BENCH_RUNS:-7}
[[ -d $RULES ]] || { echo "bench-rules: no rule directory $RULES" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "bench-rules: hyperfine is missing" >&2; exit 2; }
if [[ -z ${UALHUNT:-} ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
  UALHUNT=$ROOT/target/release/ualhunt
fi
ARCHIVE=${1:-}
if [[ -z $ARCHIVE ]]; then
  ARCHIVE=$ROOT/target/bench-data/nofind-1G.jsonl
  if [[ ! -s $ARCHIVE ]]; then
    mkdir -p "$(dirname "$ARCHIVE")"
    "$UALHUNT" generate --size 1G --seed 42 --rate 0 -o "$ARCHIVE.tmp"
    mv "$ARCHIVE.tmp" "$ARCHIVE"
  fi
fi
cat "$ARCHIVE" >/dev/null # warm the page cache
json=$(mktemp)
trap 'rm -f "$json"' EXIT
# --no-context: the context pass runs only for bypass findings; both sides skip it.
hyperfine -N -w 2 -r "$RUNS" -i --export-json "$json" \
  -n "built-in rule" "$UALHUNT hunt -q --no-context $ARCHIVE" \
  -n "40 published rules" "$UALHUNT hunt -q --no-context --rules $RULES $ARCHIVE"
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
one, many = (x["median"] for x in r)
print(f"median: built-in {one:.3f} s, 40 rules {many:.3f} s, ratio {many / one:.2f}x")
PY
echo
echo "per rule (ualhunt hunt --stats --rules ...):"
"$UALHUNT" hunt -q --stats --no-context --rules "$RULES" "$ARCHIVE" 2>&1 >/dev/null |
  sed -n '/^prefilter\|^selectivity\|^wall time\|^rules /p; /evaluated (/p'
