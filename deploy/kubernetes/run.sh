#!/usr/bin/env bash
# Runs a sharded ualhunt hunt on Kubernetes: the four Jobs of this folder one after the
# other (Kubernetes has no dependencies between Jobs), each waited for.
#
#   scan-job.yaml     Indexed Job, one pod per shard: the first pass -> /work/partials/p1-K
#   plan-job.yaml     one pod: the context plan from every p1-K     -> /work/context-plan
#   context-job.yaml  Indexed Job: the context pass with that plan  -> /work/partials/p2-K
#   merge-job.yaml    one pod: the report                           -> /work/findings.json
#
# Needs: kubectl for the cluster, an image holding the ualhunt binary as its entrypoint
# (edit `image:`), a claim `ualhunt-archive` holding the archive (ReadOnlyMany), and
# storage.yaml's `ualhunt-work` (ReadWriteMany). To change the shard count, edit
# completions, parallelism and --shard-count in scan-job.yaml and context-job.yaml alike.
#
# Usage: deploy/kubernetes/run.sh [NAMESPACE]
set -euo pipefail
cd "$(dirname "$0")"
ns=(--namespace "${1:-default}")

wait_job() {
  local job=$1
  while :; do
    local done failed
    done=$(kubectl "${ns[@]}" get "job/$job" -o jsonpath='{.status.conditions[?(@.type=="Complete")].status}')
    failed=$(kubectl "${ns[@]}" get "job/$job" -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}')
    if [ "$done" = True ]; then return 0; fi
    if [ "$failed" = True ]; then return 1; fi
    sleep 5
  done
}

kubectl "${ns[@]}" apply -f storage.yaml
for stage in scan plan context merge; do
  kubectl "${ns[@]}" delete job "ualhunt-$stage" --ignore-not-found >/dev/null
  kubectl "${ns[@]}" apply -f "$stage-job.yaml"
  if ! wait_job "ualhunt-$stage"; then
    kubectl "${ns[@]}" logs "job/ualhunt-$stage" --tail=50 >&2 || true
    if [ "$stage" = merge ]; then
      echo "the merge exited non-zero: 1 means no findings, 2 an unreadable input (see its log)" >&2
    else
      echo "stage $stage failed" >&2
    fi
    exit 1
  fi
done
echo "report: /work/findings.json and /work/findings.csv on the ualhunt-work volume"
