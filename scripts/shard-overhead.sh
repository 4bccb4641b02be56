#!/usr/bin/env bash
# Measures what sharding costs on one machine: a sharded run (first stage on N shards
# one after the other, context plan, second stage, merge) against one run over the same
# archive, with hyperfine. The shards run in turn, each with every core, so the figure is
# the pure overhead (planning, writing and reading partials, merging), not a speed-up.
#
# Usage: scripts/shard-overhead.sh [SIZE] [SHARD COUNTS...]   (default 1G, 1 4 16)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1G}
shift || true
counts=("${@:-1 4 16}")
read -r -a counts <<<"${counts[*]}"
bin=$PWD/target/release/ualhunt
[ -x "$bin" ] || cargo build --release --locked
work=${BENCH_DIR:-/tmp/ualhunt-shard-bench}
mkdir -p "$work"
archive=$work/find-$size.jsonl
[ -s "$archive" ] || "$bin" generate --size "$size" --seed 42 --rate 0.00001 -o "$archive"
cat >"$work/sharded.sh" <<SCRIPT
#!/usr/bin/env bash
# sharded.sh N: the whole sharded run on this machine, shards one after the other.
set -euo pipefail
n=\$1
parts=$work/parts-\$n
rm -rf "\$parts"; mkdir -p "\$parts"
for k in \$(seq 0 \$((n - 1))); do
  "$bin" hunt -q --shard "\$k/\$n" --partial "\$parts/p1-\$k" "$archive"
done
"$bin" merge --context-plan "\$parts/plan" "\$parts"/p1-* 2>/dev/null
for k in \$(seq 0 \$((n - 1))); do
  "$bin" hunt -q --shard "\$k/\$n" --context-from "\$parts/plan" --partial "\$parts/p2-\$k" "$archive"
done
"$bin" merge --format json -o "\$parts/merged.json" "\$parts"/p1-* "\$parts"/p2-* || [ \$? = 1 ]
SCRIPT
chmod +x "$work/sharded.sh"
"$bin" hunt -q --format json -o "$work/single.json" "$archive" || [ $? = 1 ]
cmds=("$bin hunt -q --format json -o /dev/null $archive")
names=("one run")
for n in "${counts[@]}"; do
  "$work/sharded.sh" "$n"
  cmp "$work/single.json" "$work/parts-$n/merged.json"
  cmds+=("$work/sharded.sh $n")
  names+=("$n shards")
done
args=()
for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
hyperfine -N -i -w 1 -r "${BENCH_RUNS:-5}" --export-markdown "$work/overhead.md" "${args[@]}"
cat "$work/overhead.md"
