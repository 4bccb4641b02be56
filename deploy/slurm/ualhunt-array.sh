#!/usr/bin/env bash
# Submits a sharded ualhunt run to Slurm: four jobs chained with afterok dependencies.
#
#   1. scan     an array of SHARDS tasks:  ualhunt hunt --shard auto --partial p1-ID
#   2. plan     one task:                  ualhunt merge --context-plan context-plan p1-*
#   3. context  an array of SHARDS tasks:  ualhunt hunt --shard auto --context-from context-plan --partial p2-ID
#               (each task returns at once when the findings need no context pass)
#   4. merge    one task:                  ualhunt merge [--format/-o/--export] p1-* p2-*
#
# The archive and PARTS must be on a file system every node sees (the tasks read the
# same paths; each task finds the inputs itself and reads only its share).
#
# Usage: deploy/slurm/ualhunt-array.sh [HUNT OPTIONS] PATH...
#   e.g. SHARDS=16 PARTS=/scratch/hunt1 OUT=/scratch/hunt1/findings.json \
#        deploy/slurm/ualhunt-array.sh --since 2024-01-01 /archive/ual/2024
#
# Environment:
#   SHARDS       number of array tasks per stage (default 4)
#   PARTS        directory for partials, the context plan and logs (default ./ualhunt-parts)
#   OUT          the report (default $PARTS/findings.json)
#   FORMAT       its format (default json)
#   MERGE_ARGS   more merge options, e.g. "--export csv=/scratch/f.csv --stats"
#   UALHUNT      the ualhunt binary, as the nodes see it (default: ualhunt on PATH)
#   SBATCH_ARGS  options for every sbatch, e.g. "--partition=forensics --time=02:00:00"
#   WAIT=1       wait for the merge job to end (sbatch --wait) and exit with its status
#
# Hunt options that change the findings (--since, --until, --allow, --no-context,
# --context-window, --keep-duplicates, --no-prefilter, --max-line-size) go to both
# stages; --threads and --chunk-size may too. The merge checks that every partial comes
# from the same options and inputs.
set -euo pipefail

SHARDS=${SHARDS:-4}
PARTS=${PARTS:-$PWD/ualhunt-parts}
FORMAT=${FORMAT:-json}
UALHUNT=${UALHUNT:-ualhunt}
OUT=${OUT:-$PARTS/findings.$FORMAT}
read -r -a sbatch_args <<<"${SBATCH_ARGS:-}"
read -r -a merge_args <<<"${MERGE_ARGS:-}"

if [ "$#" -eq 0 ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
mkdir -p "$PARTS/logs"
PARTS=$(cd "$PARTS" && pwd)

# One quoted command line (the tasks run it through sh -c).
q() {
  local s
  s=$(printf '%q ' "$@")
  printf '%s' "${s% }"
}
hunt=$(q "$UALHUNT" hunt -q --shard auto "$@")

submit() { sbatch --parsable "${sbatch_args[@]}" "$@" | cut -d';' -f1; }

scan=$(submit --job-name=ualhunt-scan --array="0-$((SHARDS - 1))" \
  --output="$PARTS/logs/scan-%a.log" \
  --wrap="$hunt --partial $(q "$PARTS")/p1-\$SLURM_ARRAY_TASK_ID")
plan=$(submit --job-name=ualhunt-plan --dependency="afterok:$scan" \
  --output="$PARTS/logs/plan.log" \
  --wrap="$(q "$UALHUNT" merge --context-plan "$PARTS/context-plan") $(q "$PARTS")/p1-*")
context=$(submit --job-name=ualhunt-context --array="0-$((SHARDS - 1))" \
  --dependency="afterok:$plan" --output="$PARTS/logs/context-%a.log" \
  --wrap="$hunt --context-from $(q "$PARTS/context-plan") --partial $(q "$PARTS")/p2-\$SLURM_ARRAY_TASK_ID")
merge_cmd="$(q "$UALHUNT" merge --format "$FORMAT" -o "$OUT" "${merge_args[@]}") $(q "$PARTS")/p1-* $(q "$PARTS")/p2-*"
echo "submitted: scan array $scan, context plan $plan, context array $context" >&2
if [ "${WAIT:-0}" = 1 ]; then
  # The merge exits 0 with findings, 1 without, 2 when an input could not be read.
  set +e
  sbatch --wait --parsable "${sbatch_args[@]}" --job-name=ualhunt-merge \
    --dependency="afterok:$context" --output="$PARTS/logs/merge.log" --wrap="$merge_cmd" >/dev/null
  status=$?
  echo "merge job ended with status $status; report: $OUT" >&2
  exit "$status"
fi
merge=$(submit --job-name=ualhunt-merge --dependency="afterok:$context" \
  --output="$PARTS/logs/merge.log" --wrap="$merge_cmd")
echo "merge job $merge writes $OUT" >&2
echo "$merge"
