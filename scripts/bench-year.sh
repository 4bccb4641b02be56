#!/usr/bin/env bash
# scripts/bench-year.sh: the year-long case of issue 19: how much of a year-long
# archive the context pass reads.
#
# Usage: scripts/bench-year.sh [-h|--help]   (options come from the environment)
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: scripts/bench-year.sh [-h|--help]

Generates a time-ordered archive spanning 365 days with two closed bypass periods
of a few days and no other bypass event (`ualhunt generate --scenarios 365
--plot two-periods --rate 0`), plain, gzip (one member, `ualhunt generate --gzip`)
and, where the `zstd` command is found, zstd in one frame and in frames of 16 MiB
(`split --filter`), runs `ualhunt hunt --stats` on each and prints the share of the archive's
(decompressed) bytes the context pass read (target: at most 10 %; for a compressed
file the bytes inflated from a seek point up to each stretch count as read), with
the wall times of the run and of its context pass. A byte share does not depend on
how busy the machine is; the times do (measure them on a quiet machine).

Environment:
  YEAR_SIZE=2G          uncompressed size of the archive (K/M/G suffix = KiB/MiB/GiB)
  YEAR_DIR=target/bench-year
                        where the archives are written (kept between runs; a
                        relative path is taken from the current directory)
  YEAR_HORIZON=7d       --context-horizon
  UALHUNT=PATH          use this binary instead of building target/release/ualhunt

Exit status: 0 on success, 2 on any error.
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

log() { printf '[bench-year] %s\n' "$*" >&2; }
die() { printf '[bench-year] error: %s\n' "$*" >&2; exit 2; }

size="${YEAR_SIZE:-2G}"
dir="${YEAR_DIR:-target/bench-year}"
horizon="${YEAR_HORIZON:-7d}"
[[ "$size" =~ ^[0-9]+[KMG]?$ ]] || die "YEAR_SIZE must be a number with an optional K/M/G suffix: $size"

if [[ -n "${UALHUNT:-}" ]]; then
  bin="$UALHUNT"
else
  log "cargo build --release"
  cargo build --release --quiet || die "cargo build failed"
  bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/ualhunt"
fi
[[ -x "$bin" ]] || die "no ualhunt binary at $bin"

mkdir -p "$dir"
plain="$dir/year-$size.jsonl"
gz="$plain.gz"
if [[ ! -s "$plain" ]]; then
  log "generating $plain ($size over 365 days, two bypass periods)"
  "$bin" generate --size "$size" --scenarios 365 --plot two-periods --rate 0 -o "$plain.tmp" 2>"$dir/storyline-$size.txt" \
    || die "ualhunt generate failed"
  mv "$plain.tmp" "$plain"
fi
if [[ ! -s "$gz" ]]; then
  log "generating $gz"
  "$bin" generate --size "$size" --scenarios 365 --plot two-periods --rate 0 --gzip -o "$gz.tmp" 2>/dev/null \
    || die "ualhunt generate --gzip failed"
  mv "$gz.tmp" "$gz"
fi

# Prints one table row for an archive.
row() {
  local name="$1" file="$2" stats rc=0
  stats="$("$bin" hunt --stats --context-horizon "$horizon" --format json -o /dev/null "$file" 2>&1 >/dev/null)" || rc=$?
  # 0: findings; 1: none. Both are runs that worked.
  [[ $rc -le 1 ]] || die "ualhunt hunt failed on $file (exit $rc): $stats"
  local read total wall context
  read="$(sed -n 's/^context read  \([0-9]*\) of \([0-9]*\) bytes.*/\1/p' <<<"$stats")"
  total="$(sed -n 's/^context read  \([0-9]*\) of \([0-9]*\) bytes.*/\2/p' <<<"$stats")"
  wall="$(sed -n 's/^wall time     \([0-9.]*\) s.*/\1/p' <<<"$stats")"
  context="$(sed -n 's/^context pass  \([0-9.]*\) s.*/\1/p' <<<"$stats")"
  [[ -n "$read" && -n "$total" && "$total" -gt 0 ]] || die "no 'context read' line in --stats for $file (did the context pass run?)"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$total" "$read" \
    "$(awk -v r="$read" -v t="$total" 'BEGIN { printf "%.1f %%", 100 * r / t }')" "$wall" "$context"
}

printf '| archive (%s, 365 days, horizon %s) | bytes | context pass read | share | run s | context s |\n' "$size" "$horizon"
printf '|---|---|---|---|---|---|\n'
row plain "$plain"
row gzip "$gz"
if command -v zstd >/dev/null; then
  zst="$plain.zst"
  frames="$plain.frames.zst"
  if [[ ! -s "$zst" ]]; then
    log "generating $zst (one frame)"
    zstd -q -3 -T1 "$plain" -o "$zst.tmp" || die "zstd failed"
    mv "$zst.tmp" "$zst"
  fi
  if [[ ! -s "$frames" ]]; then
    # pzstd is not used: it starts with a skippable frame, not read as zstd.
    log "generating $frames (frames of 16 MiB)"
    split -b 16M --filter='zstd -q -3 -c' "$plain" >"$frames.tmp" || die "zstd failed"
    mv "$frames.tmp" "$frames"
  fi
  row "zstd, one frame" "$zst"
  row "zstd, frames of 16 MiB" "$frames"
else
  log "zstd not found: no zstd rows"
fi
