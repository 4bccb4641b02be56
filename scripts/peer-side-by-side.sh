#!/usr/bin/env bash
# scripts/peer-side-by-side.sh: ualhunt and Suzaku (Yamato Security's `suzaku
# azure-timeline`, the peer of issue 23) on the same files with the same 42 Sigma rules:
# which rules fire and how many detections each reports, per file; then wall time and
# peak RSS of both on generated archives (and ualhunt with Elastic's 63 rules added).
#
# Usage: scripts/peer-side-by-side.sh SUZAKU_BIN SUZAKU_DIR [OUT_DIR]
#   SUZAKU_BIN   a built `suzaku` binary (this script builds nothing and downloads nothing)
#   SUZAKU_DIR   a checkout of the peer's repository: Suzaku reads its output profile
#                `config/azure_profile.yaml` relative to the working directory, so it is
#                run from there
#   OUT_DIR      where inputs, outputs and report.md go (default /tmp/peer-side-by-side)
# Environment:
#   UALHUNT=target/release/ualhunt          the ualhunt binary
#   SIGMA=../shared/corpus/sigma-m365       the 42 Sigma rules (both tools)
#   ELASTIC_RULES=../shared/corpus/elastic-rules   Elastic's 63 rules (ualhunt only)
#   ELASTIC_O365=../shared/corpus/elastic-o365     Elastic's sample records
#   REAL_TENANT=tests/fixtures/real_tenant/dataset the 39 real-tenant sample files
#   SIZES="128M"                            generated archives (`ualhunt generate --seed 42`);
#                                           e.g. SIZES="128M 1G"
#   LAYOUTS="generated shuffled"            key orders of the generated archives
#                                           (`ualhunt generate --key-order`)
#   RUNS=3                                  timed runs per tool and archive
#   PEER_TIMEOUT=600                        seconds before one peer run is abandoned
#
# The peer binary behind the README figures: Suzaku at commit 29a5711 (2026-07-24),
# compiled locally from a snapshot of its repository (see the README, "Side by side
# with Suzaku"). The peer's code is AGPL-3.0: neither it nor a way to build it is part of
# this repository.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
[[ $# -ge 2 ]] || { sed -n '2,20p' "$0" >&2; exit 2; }
SUZAKU=$(realpath "$1")
SUZAKU_DIR=$(realpath "$2")
OUT=${3:-/tmp/peer-side-by-side}
UALHUNT=$(realpath "${UALHUNT:-$ROOT/target/release/ualhunt}")
SIGMA=$(realpath "${SIGMA:-$ROOT/../shared/corpus/sigma-m365}")
ELASTIC_RULES=$(realpath "${ELASTIC_RULES:-$ROOT/../shared/corpus/elastic-rules}")
ELASTIC_O365=$(realpath "${ELASTIC_O365:-$ROOT/../shared/corpus/elastic-o365}")
REAL_TENANT=$(realpath "${REAL_TENANT:-$ROOT/tests/fixtures/real_tenant/dataset}")
SIZES=${SIZES:-128M}
LAYOUTS=${LAYOUTS:-generated shuffled}
RUNS=${RUNS:-3}
PEER_TIMEOUT=${PEER_TIMEOUT:-600}
[[ -x $SUZAKU ]] || { echo "peer-side-by-side: no peer binary $SUZAKU" >&2; exit 2; }
[[ -f $SUZAKU_DIR/config/azure_profile.yaml ]] ||
  { echo "peer-side-by-side: $SUZAKU_DIR has no config/azure_profile.yaml" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "peer-side-by-side: needs GNU time (/usr/bin/time)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "peer-side-by-side: needs python3" >&2; exit 2; }

mkdir -p "$OUT"/in "$OUT"/out "$OUT"/big
IN=$OUT/in

# 1. The small files. The 39 real-tenant samples (CSV and JSON exports, names kept: "t"
# and an ATT&CK technique number begin them, no other file's name), ualhunt's testdata as
# they are (Suzaku reads a file by its extension: .json/.jsonl/.csv as text, .gz through
# one gzip member; anything else is read as empty). Elastic's raw samples: the Beats .log files are JSON lines already,
# copied to .jsonl byte for byte; the integration's test-*-events.json hold each raw
# record as a string in events[].event.original, written out one per line as it is
# (test-parameter-string's two are not valid JSON: Parameters written unescaped, the case
# that test exists for; both tools then count them as unreadable).
rm -f "$IN"/*
for f in "$REAL_TENANT"/*; do cp "$f" "$IN/"; done
for f in "$ROOT"/testdata/*; do [[ -f $f ]] && cp "$f" "$IN/"; done
cp "$ELASTIC_O365/ip-formats.log" "$IN/elastic_ip-formats.jsonl"
cp "$ELASTIC_O365/str-params.log" "$IN/elastic_str-params.jsonl"
for f in test-ip-formats-events test-parameter-string; do
  python3 - "$ELASTIC_O365/$f.json" > "$IN/elastic_$f.jsonl" <<'EOF'
import json, sys
for e in json.load(open(sys.argv[1]))["events"]:
    print(e["event"]["original"].replace("\n", " "))
EOF
done

run_ualhunt() { # FILE OUTBASE [extra args]
  local f=$1 o=$2; shift 2
  "$UALHUNT" hunt -q --rules "$SIGMA" "$@" --format json -o "$o.json" "$f" \
    2>"$o.err" || true   # exit status 0 = findings, 1 = none
}
run_suzaku() { # FILE OUTBASE
  local f=$1 o=$2
  rm -f "$o.jsonl"
  (cd "$SUZAKU_DIR" && timeout "$PEER_TIMEOUT" "$SUZAKU" azure-timeline -f "$f" -r "$SIGMA" \
    -o "$o.jsonl" -t 3 -C -q -K -N >"$o.stdout" 2>"$o.err") || echo "suzaku: exit $? on $f" >>"$o.err"
}

for f in "$IN"/*; do
  b=$(basename "$f")
  run_ualhunt "$f" "$OUT/out/$b.ualhunt"
  run_ualhunt "$f" "$OUT/out/$b.ualhunt-keepdup" --keep-duplicates
  "$UALHUNT" hunt -q --rules "$SIGMA" --rules "$ELASTIC_RULES" --format json \
    -o "$OUT/out/$b.ualhunt-elastic.json" "$f" 2>/dev/null || true
  "$UALHUNT" hunt -q --rules "$ELASTIC_RULES" --format json \
    -o "$OUT/out/$b.ualhunt-elastic-only.json" "$f" 2>/dev/null || true
  run_suzaku "$f" "$OUT/out/$b.suzaku"
done

# 2. The generated archives, timed, in two layouts: the generator's own key order and
# every record's keys shuffled (`--key-order shuffled`, same records), which the
# generator's layout does not flatter. ualhunt runs as a user runs it: the investigation
# (the context pass around each bypass change) on.
load() { cut -d' ' -f1-3 /proc/loadavg; }
TIMES=$OUT/times.tsv
: >"$TIMES"; : >"$OUT/heap.txt"
for size in $SIZES; do
  for layout in $LAYOUTS; do
    big=$OUT/big/peer-$size.jsonl
    [[ $layout == generated ]] || big=$OUT/big/peer-$size-$layout.jsonl
    [[ -f $big ]] || "$UALHUNT" generate --size "$size" --seed 42 --key-order "$layout" -o "$big"
    b=$(basename "$big")
    for i in $(seq 1 "$RUNS"); do
      l=$(load)
      /usr/bin/time -f "%e %M %U %S" -o "$OUT/t" "$UALHUNT" hunt -q --rules "$SIGMA" \
        --format json -o "$OUT/out/$b.ualhunt.json" "$big" 2>/dev/null || true
      printf '%s\tualhunt (42 Sigma)\t%s\t%s\t%s\n' "$b" "$i" "$(tail -1 "$OUT/t")" "$l" >>"$TIMES"
      l=$(load)
      /usr/bin/time -f "%e %M %U %S" -o "$OUT/t" "$UALHUNT" hunt -q --rules "$SIGMA" \
        --rules "$ELASTIC_RULES" --format json -o "$OUT/out/$b.ualhunt-elastic.json" "$big" \
        2>/dev/null || true
      printf '%s\tualhunt (42 Sigma + 63 Elastic)\t%s\t%s\t%s\n' "$b" "$i" "$(tail -1 "$OUT/t")" "$l" >>"$TIMES"
      l=$(load)
      rm -f "$OUT/out/$b.suzaku.jsonl"
      (cd "$SUZAKU_DIR" && /usr/bin/time -f "%e %M %U %S" -o "$OUT/t" timeout "$PEER_TIMEOUT" \
        "$SUZAKU" azure-timeline -f "$big" -r "$SIGMA" -o "$OUT/out/$b.suzaku.jsonl" -t 3 -C -q -K -N \
        >/dev/null 2>"$OUT/out/$b.suzaku.err") || true
      printf '%s\tsuzaku (42 Sigma)\t%s\t%s\t%s\n' "$b" "$i" "$(tail -1 "$OUT/t")" "$l" >>"$TIMES"
    done
    run_ualhunt "$big" "$OUT/out/$b.ualhunt-keepdup" --keep-duplicates
    # ualhunt maps a plain file, so its RSS counts the file's pages; its own heap:
    "$UALHUNT" hunt -q --stats --rules "$SIGMA" --format json -o /dev/null "$big" \
      2>&1 | grep '^memory' | sed "s|^|$b ualhunt (42 Sigma) |" >>"$OUT/heap.txt" || true
  done
done

# 3. The report.
python3 - "$OUT" "$SIGMA" >"$OUT/report.md" <<'EOF'
import collections, glob, json, os, re, statistics, sys
out, sigma = sys.argv[1], sys.argv[2]
titles = {}
for p in sorted(glob.glob(os.path.join(sigma, "**", "*.yml"), recursive=True)):
    t = open(p, encoding="utf-8").read()
    i = re.search(r"^id:\s*(\S+)", t, re.M).group(1)
    titles[i] = re.search(r"^title:\s*(.+)$", t, re.M).group(1).strip().strip("'\"")

def ual(path):
    try:
        d = json.load(open(path))
    except Exception:
        return None, None
    return ({r["rule_id"]: r["events"] for r in d["by_rule"] if r["events"]}, d["scan"])

def suz(path):
    if not os.path.exists(path):
        # Suzaku writes no file when nothing matched ("Results saved: None")
        so = path[:-len(".jsonl")] + ".stdout"
        if os.path.exists(so) and "Results saved: \x1b[0mNone" in open(so, errors="replace").read():
            return {}
        if os.path.exists(so) and "Results saved:" in open(so, errors="replace").read():
            return {}
        return None
    c = collections.Counter()
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if line:
            c[json.loads(line).get("RuleID", "?")] += 1
    return dict(c)

files = sorted({os.path.basename(p).split(".ualhunt.json")[0]
                for p in glob.glob(os.path.join(out, "out", "*.ualhunt.json"))})
print("# ualhunt vs Suzaku: detections per file (42 Sigma rules)\n")
print("| file | records ualhunt read | ualhunt | ualhunt --keep-duplicates | Suzaku | ualhunt + Elastic's 63 | Elastic's 63 alone | rules fired: ualhunt / Suzaku |")
print("|---|---:|---:|---:|---:|---:|---:|---|")
detail = []
flagged = collections.Counter()
for f in files:
    u, scan = ual(os.path.join(out, "out", f + ".ualhunt.json"))
    k, _ = ual(os.path.join(out, "out", f + ".ualhunt-keepdup.json"))
    e, _ = ual(os.path.join(out, "out", f + ".ualhunt-elastic.json"))
    eo, _ = ual(os.path.join(out, "out", f + ".ualhunt-elastic-only.json"))
    s = suz(os.path.join(out, "out", f + ".suzaku.jsonl"))
    n = lambda m: "-" if m is None else str(sum(m.values()))
    fired = lambda m: "-" if m is None else str(len(m))
    print(f"| {f} | {scan['records'] if scan else '-'} | {n(u)} | {n(k)} | {n(s)} | {n(e)} | {n(eo)} | {fired(u)} / {fired(s)} |")
    # The real-tenant samples' names begin with "t" and an ATT&CK technique.
    if re.match(r"t\d{4}", f):
        flagged["files"] += 1
        for tool, m in (("ualhunt", u), ("ualhunt --keep-duplicates", k), ("Suzaku", s),
                        ("ualhunt + Elastic's 63", e), ("Elastic's 63 alone", eo)):
            flagged[tool] += bool(m)
    for rid in sorted(set(u or {}) | set(k or {}) | set(s or {}), key=lambda r: titles.get(r, r)):
        a, b, c = (u or {}).get(rid, 0), (k or {}).get(rid, 0), (s or {}).get(rid, 0)
        detail.append((f, titles.get(rid, rid), a, b, c, "" if b == c else "differs"))
print(f"\nReal-tenant samples flagged (at least one detection), of {flagged['files']}: "
      + ", ".join(f"{t} {n}" for t, n in flagged.items() if t != "files"))
print("\n## Per rule (a row where either tool fired)\n")
print("| file | rule | ualhunt | ualhunt --keep-duplicates | Suzaku | |")
print("|---|---|---:|---:|---:|---|")
for r in detail:
    print("| " + " | ".join(map(str, r)) + " |")
print("\n## Time and peak memory (/usr/bin/time: wall seconds, max RSS)\n")
rows = collections.defaultdict(list)
for line in open(os.path.join(out, "times.tsv")):
    f, tool, i, et, load = line.rstrip("\n").split("\t")
    parts = et.split()
    rows[(f, tool)].append((parts, load))
print("| file | tool | runs (wall s) | median wall | median CPU (user+sys) | peak RSS (max of runs) | load average at each start |")
print("|---|---|---|---:|---:|---:|---|")
for (f, tool), rs in rows.items():
    ok = [r for r, _ in rs if len(r) == 4]
    walls = [float(r[0]) for r in ok]
    cpus = [float(r[2]) + float(r[3]) for r in ok]
    rss = max((int(r[1]) for r in ok), default=0)
    print(f"| {f} | {tool} | {', '.join(f'{w:.2f}' for w in walls)} | "
          f"{statistics.median(walls):.2f} s | {statistics.median(cpus):.2f} s | {rss/1024:.0f} MiB | "
          f"{'; '.join(l for _, l in rs)} |")
print()
for line in open(os.path.join(out, "heap.txt")):
    print("- " + line.strip())
EOF
cat "$OUT/report.md"
