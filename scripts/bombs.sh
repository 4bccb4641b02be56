#!/usr/bin/env bash
# Makes the resource bombs at full size in BOMB_DIR (default /tmp/ualhunt-bombs) and
# measures ualhunt on each: wall time and peak RSS (/usr/bin/time -v). The README's
# "Resource bounds" figures come from here. Needs python3, zstd (CLI), GNU time.
#   cargo build --release && scripts/bombs.sh
#   BOMB_GB=1 scripts/bombs.sh     # smaller inflated sizes
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${UALHUNT:-target/release/ualhunt}
dir=${BOMB_DIR:-/tmp/ualhunt-bombs}
gb=${BOMB_GB:-10}
mkdir -p "$dir"
hit='{"CreationTime":"2024-03-05T10:11:12","Id":"B1","Operation":"Set-MailboxAuditBypassAssociation","Workload":"Exchange","ResultStatus":"Succeeded","UserId":"bomber@x","Parameters":[{"Name":"Identity","Value":"m"},{"Name":"AuditBypassEnabled","Value":"True"}]}'
python3 - "$dir" "$gb" "$hit" <<'PY'
import gzip, io, json, os, sys, zipfile
d, gb, hit = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mib = 1 << 20
def repeat(path, member, times, last=b""):
    with open(path, "wb") as f:
        for _ in range(times):
            f.write(member)
        f.write(last)
if not os.path.exists(f"{d}/newlines.gz"):
    repeat(f"{d}/newlines.gz", gzip.compress(b"\n" * mib, 9), gb * 1024, gzip.compress((hit + "\n").encode()))
if not os.path.exists(f"{d}/endless.gz"):
    repeat(f"{d}/endless.gz", gzip.compress(b"x" * mib, 9), gb * 1024,
           gzip.compress(b"Set-MailboxAuditBypassAssociation\n" + (hit + "\n").encode()))
if not os.path.exists(f"{d}/many.zip"):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("inner.jsonl", hit + "\n")
    with zipfile.ZipFile(f"{d}/many.zip", "w") as z:
        for i in range(100_000):
            z.writestr(f"e/{i:06}.jsonl", "{}\n")
        z.writestr("nested.zip", inner.getvalue())
if not os.path.exists(f"{d}/deep.jsonl"):
    deep = '{"Operation":"Set-MailboxAuditBypassAssociation","x":' + "[" * 100_000 + "1" + "]" * 100_000 + "}"
    with open(f"{d}/deep.jsonl", "w") as f:
        f.write(deep + "\n" + hit + "\n")
    with open(f"{d}/deep.json", "w") as f:
        f.write("[\n" + deep + ",\n" + hit + "\n]\n")
if not os.path.exists(f"{d}/long.jsonl"):
    with open(f"{d}/long.jsonl", "wb") as f:
        f.write(b'{"Operation":"Set-MailboxAuditBypassAssociation","pad":"')
        for _ in range(200):
            f.write(b"p" * mib)
        f.write(b'"}\n' + (hit + "\n").encode())
PY
if [ ! -f "$dir/newlines.zst" ]; then
  # zstd frames concatenated: one 1 MiB frame of newlines, repeated.
  frame=$(mktemp); head -c 1048576 /dev/zero | tr '\0' '\n' | zstd -19 -q -c > "$frame"
  for _ in $(seq $((gb * 1024))); do cat "$frame"; done > "$dir/newlines.zst"
  printf '%s\n' "$hit" | zstd -q -c >> "$dir/newlines.zst"; rm -f "$frame"
fi
measure() {
  local name=$1; shift
  /usr/bin/time -v "$bin" hunt -q --no-context --format json "$@" >"$dir/$name.json" 2>"$dir/$name.err" || true
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/$name.err")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f MiB", $2/1024}' "$dir/$name.err")
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$( [ -f "${@: -1}" ] && du -h "${@: -1}" | cut -f1 || echo stdin)" "$wall" "$rss" \
    "$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["scan"]; print(f"{s[\"lines\"]} lines, {s[\"matched\"]} matched, {s[\"malformed\"]} malformed")' "$dir/$name.json" 2>/dev/null || echo '?')"
}
echo "| bomb | on disk | time | peak RSS | accounted |"
echo "|---|---|---|---|---|"
measure "gzip ${gb} GiB of newlines" "$dir/newlines.gz"
measure "gzip ${gb} GiB one line" "$dir/endless.gz"
measure "zstd ${gb} GiB of newlines" "$dir/newlines.zst"
measure "zip 100 000 entries + nested zip" "$dir/many.zip"
measure "JSON lines nested 100 000 deep" "$dir/deep.jsonl"
measure "JSON document nested 100 000 deep" "$dir/deep.json"
measure "200 MB line holding the literal" "$dir/long.jsonl"
measure "200 MB line, through stdin" - < "$dir/long.jsonl"
