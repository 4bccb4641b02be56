#!/usr/bin/env bash
# scripts/bench-rules.sh: every published rule in one pass, beside the built-in rule
# alone, over the same archive; then the same without the rules whose prefilter literal
# is frequent in that archive, and the `type = "query"` rules alone; then per rule the
# candidates its literals gave per GB, and its matches.
#
# Usage: scripts/bench-rules.sh [ARCHIVE]
#   ARCHIVE   a JSON lines archive (default: generate 1 GiB with `ualhunt generate
#             --size 1G --seed 42 --rate 0` into target/bench-data/, as scripts/bench.sh)
# Environment:
#   RULES=../shared/corpus/elastic-rules   the rule files (Elastic's, not in this project)
#   SIGMA=../shared/corpus/sigma-m365      Sigma rules run beside all of RULES in one
#                                           more timed command, "Elastic's rules + the
#                                           Sigma corpus", reported against "Elastic's
#                                           rules alone" (target <= 1.2x; SIGMA= leaves
#                                           it out)
#   BENCH_RUNS=7                            timed runs per command (hyperfine, alternated
#                                           by hyperfine's own order: one command at a time)
#   FREQUENT=1                              percent of the archive's lines above which a
#                                           rule's searched literals count as frequent
#   UALHUNT=PATH                            a ualhunt binary (default: cargo build --release)
# Needs hyperfine and rg. Prints hyperfine's table, the ratios of the medians, which rules
# have frequent literals (with the share of lines holding one), and the per-rule lines of
# `--stats`.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RULES=${RULES:-$ROOT/../shared/corpus/elastic-rules}
RUNS=${BENCH_RUNS:-7}
SIGMA=${SIGMA-$ROOT/../shared/corpus/sigma-m365}
[[ -d $RULES ]] || { echo "bench-rules: no rule directory $RULES" >&2; exit 2; }
for tool in hyperfine rg; do
  command -v "$tool" >/dev/null || { echo "bench-rules: $tool is missing" >&2; exit 2; }
done
FREQUENT=${FREQUENT:-1}
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
rare=$(mktemp -d)
trap 'rm -rf "$json" "$rare"' EXIT

# Rules whose prefilter literals are frequent here: the share of the archive's lines that
# hold one of them (rg), a `RecordType` literal counted as the lines of that type (it is
# read per record, not searched, but every such record is a candidate).
lines=$(rg -c '' "$ARCHIVE")
echo "rules with frequent literals (over $FREQUENT % of $lines lines):"
for file in "$RULES"/*.toml; do
  listing=$("$UALHUNT" rules --rules "$file" 2>/dev/null) || continue
  literals=$(printf '%s\n' "$listing" | sed -n 's/^  prefilter: *//p')
  [[ -n $literals ]] || continue # not run (another rule type)
  args=()
  while IFS= read -r lit; do
    args+=(-e "$lit")
  done < <(printf '%s\n' "$literals" | python3 -c '
import re, sys
text = sys.stdin.read()
for m, any_case in re.findall(r"\"((?:[^\"\\\\]|\\\\.)*)\"( \(any case\))?", text):
    lit = m.encode().decode("unicode_escape")
    escaped = "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in lit)
    print(("(?i)" if any_case else "") + escaped)
for n in re.findall(r"RecordType (\d+)", text):
    print(chr(34) + "RecordType" + chr(34) + r":\s*" + n + r"\b")')
  hits=0
  if ((${#args[@]})); then
    hits=$(rg -c "${args[@]}" "$ARCHIVE" || true)
  fi
  if (( ${hits:-0} * 100 > lines * FREQUENT )); then
    printf '  %5.1f %%  %s\n' "$(python3 -c "print(${hits:-0} * 100 / $lines)")" "$(basename "$file")"
  else
    cp "$file" "$rare/"
  fi
done
kept=$(ls "$rare" | wc -l)
# The `type = "query"` rules alone (issue 19's 1.5x row).
query=$(mktemp -d)
trap 'rm -rf "$json" "$rare" "$query"' EXIT
grep -l '^type = "query"' -- "$RULES"/*.toml | xargs -r cp -t "$query" --
queries=$(ls "$query" | wc -l)

# --no-context: the context pass runs only for bypass findings; all sides skip it.
sigma_cmd=()
if [[ -n $SIGMA && -d $SIGMA ]]; then
  sigma_cmd=(-n "Elastic's $(ls "$RULES"/*.toml | wc -l) rule files + the Sigma corpus" \
    "$UALHUNT hunt -q --no-context --rules $RULES --rules $SIGMA $ARCHIVE")
fi
hyperfine -N -w 2 -r "$RUNS" -i --export-json "$json" \
  -n "built-in rule" "$UALHUNT hunt -q --no-context $ARCHIVE" \
  -n "rules with rare literals ($kept files)" "$UALHUNT hunt -q --no-context --rules $rare $ARCHIVE" \
  -n "Elastic's $(ls "$RULES"/*.toml | wc -l) rule files alone" "$UALHUNT hunt -q --no-context --rules $RULES $ARCHIVE" \
  -n "the $queries query rules" "$UALHUNT hunt -q --no-context --rules $query $ARCHIVE" \
  "${sigma_cmd[@]}"
python3 - "$json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
one, rare, many, queries = (x["median"] for x in r[:4])
cpu = [x["user"] + x["system"] for x in r]
print(f"median: built-in {one:.3f} s, rare-literal rules {rare:.3f} s ({rare / one:.2f}x), "
      f"all rules {many:.3f} s ({many / one:.2f}x)")
print(f"CPU (user + system, mean): built-in {cpu[0]:.3f} s, rare-literal rules {cpu[1]:.3f} s "
      f"({cpu[1] / cpu[0]:.2f}x), all rules {cpu[2]:.3f} s ({cpu[2] / cpu[0]:.2f}x)")
print(f"median: query rules {queries:.3f} s ({queries / one:.2f}x built-in; target 1.5x), "
      f"all rules {many / one:.2f}x built-in (targets 2.5x and 3x)")
if len(r) > 4:
    both = r[4]["median"]
    print(f"median: Elastic's rules + the Sigma corpus {both:.3f} s ({both / many:.2f}x "
          f"Elastic's rules alone; target <= 1.2x); CPU {cpu[4]:.3f} s ({cpu[4] / cpu[2]:.2f}x)")
PY
echo
echo "per rule (ualhunt hunt --stats --rules ...): candidates its literals gave (evaluated,"
echo "per GB of the archive), records it matched, events reported:"
"$UALHUNT" hunt -q --stats --no-context --rules "$RULES" "$ARCHIVE" 2>&1 >/dev/null |
  sed -n '/^prefilter\|^selectivity\|^wall time\|^trigger look\|^rules /p; /evaluated (/p'
