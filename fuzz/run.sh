#!/usr/bin/env bash
# Builds the fuzz targets with cargo-afl (stable Rust, AFL++), writes the seed corpora
# from the fixtures, and runs each target for FUZZ_SECONDS (default 20) in turn; then
# prints, per target, executions, time, edges and bitmap coverage, and crashes/hangs
# found. Exits 1 if any crash was found (the inputs are in fuzz/out/TARGET/default/crashes/).
#
#   fuzz/run.sh                          # every target, 20 s each
#   FUZZ_SECONDS=3600 fuzz/run.sh hunt   # one target, an hour
#   FUZZ_RESUME=1 ...                    # go on from fuzz/out/ instead of the seeds
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-20}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(kql rules record document chunk hunt)

if ! command -v cargo-afl >/dev/null 2>&1; then
  cargo install cargo-afl --locked --version 0.18.2
fi
# Builds AFL++ once per rustc version (it says so and fails when already built).
cargo afl config --build >/dev/null 2>&1 || true
cargo afl build --release --locked 2>&1 | tail -1
./seeds.sh

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
  AFL_NO_AFFINITY=1 AFL_QUIET=1
mkdir -p out
summary=()
crashed=0
for t in "${targets[@]}"; do
  input=seeds/$t
  if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -d "out/$t/default" ]; then input=-; else rm -rf "out/$t"; fi
  echo "fuzz: $t for ${seconds}s"
  cargo afl fuzz -i "$input" -o "out/$t" -V "$seconds" -t 10000 -m none "target/release/$t" \
    >"out/$t.log" 2>&1 || { tail -20 "out/$t.log"; exit 1; }
  stats=out/$t/default/fuzzer_stats
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(get saved_crashes)
  summary+=("$(printf '%-9s %9s execs in %4ss (%s/s), edges %s, bitmap %s, corpus %s, crashes %s, hangs %s' \
    "$t" "$(get execs_done)" "$(get run_time)" "$(get execs_per_sec)" "$(get edges_found)" \
    "$(get bitmap_cvg)" "$(get corpus_count)" "$crashes" "$(get saved_hangs)")")
  if [ "$crashes" != 0 ]; then
    crashed=1
    ls "out/$t/default/crashes/"
  fi
done
printf '%s\n' "${summary[@]}"
exit "$crashed"
