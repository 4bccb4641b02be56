#!/usr/bin/env bash
# The rule pack's literals searched by ripgrep, beside ualhunt over the same file: what a
# literal search over exactly these literals costs in the best peer.
# Usage: scripts/bench-pack-literals.sh UALHUNT FILE [OUTDIR]
# Needs rg, hyperfine, python3, and ../shared/corpus/{elastic-rules,sigma-m365}.
set -euo pipefail
bin=$1
file=$2
out=${3:-$(mktemp -d)}
corpus=$(cd "$(dirname "$0")/../../shared/corpus" && pwd)
elastic=$corpus/elastic-rules
sigma=$corpus/sigma-m365
# The prefilter literals `ualhunt rules` lists (exact, and "…" (any case)); a trigger's
# explanation holds quoted names that are no literal: only its first quoted string counts.
literals() {
    "$bin" rules "$@" | python3 -c '
import re, sys
exact, case = set(), set()
for line in sys.stdin:
    if not line.startswith("  prefilter:") or "needs --geoip-db" in line:
        continue
    for m in re.finditer(r"\"((?:[^\"\\]|\\.)*)\"( \(any case\))?", line):
        (case if m.group(2) else exact).add(re.sub(r"\\(.)", r"\1", m.group(1)))
        if "its trigger" in line:
            break
esc = lambda s: "".join("\\" + c if c in "\\.+*?()|[]{}^$#&-~" else c for c in s)
prefix = sys.argv[1]
open(prefix + "-exact.txt", "w").write("".join(l + "\n" for l in sorted(exact)))
open(prefix + "-case.txt", "w").write("".join(l + "\n" for l in sorted(case)))
pattern = "|".join(map(esc, sorted(exact))) + "|(?i:" + "|".join(map(esc, sorted(case))) + ")"
open(prefix + "-mixed.re", "w").write(pattern + "\n")
' "$out/$name"
}
name=elastic; literals --rules "$elastic"
name=es; literals --rules "$elastic" --rules "$sigma"
wc -l "$out"/*.txt
hunt="$bin hunt --threads 1 --no-context -q --format json -o /dev/null"
[ "${LITERALS_ONLY:-}" ] && exit 0
hyperfine -N -i -w 1 -r 5 \
    "rg -j1 -c Set-MailboxAuditBypassAssociation $file" "$hunt $file" \
    "rg -j1 -c -F -f $out/elastic-exact.txt $file" "rg -j1 -c -F -i -f $out/elastic-case.txt $file" \
    "rg -j1 -c -f $out/elastic-mixed.re $file" "$hunt --rules $elastic $file" \
    "rg -j1 -c -F -f $out/es-exact.txt $file" "rg -j1 -c -F -i -f $out/es-case.txt $file" \
    "rg -j1 -c -f $out/es-mixed.re $file" "$hunt --rules $elastic --rules $sigma $file"
