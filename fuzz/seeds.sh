#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets (fuzz/seeds/TARGET/) from the committed
# fixtures: the head of each (AFL works best on small seeds), behind the control bytes
# each target reads first. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"
root=..
out=seeds
rm -rf "$out"
mkdir -p "$out"/{kql,record,document,chunk,hunt,rules}

# The head of a file, cut after a line end near 2 KiB.
head_of() { head -c 2048 "$1" | awk 'BEGIN{ORS="\n"} {print}' ; }

n=0
# kql: the rules' queries and a few more shapes.
grep -h '^query = ' "$root"/crates/engine/rules/*.toml | sed 's/^query = "//; s/"$//' | while read -r q; do
  n=$((n + 1)); printf '%s' "$q" > "$out/kql/rule$n"
done
printf '%s' 'event.action:(Set-Mailbox or "Set-MailboxAuditBypassAssociation") and not user.id:svc*' > "$out/kql/or_not_wildcard"
printf '%s' 'o365.audit.Parameters.AuditBypassEnabled:True and @timestamp >= "2024-01-01"' > "$out/kql/range"
printf '%s' 'event.provider : Exchange and (event.outcome : success or event.outcome : failure)' > "$out/kql/groups"

# record: single lines of every record shape.
i=0
for f in "$root"/testdata/raw_ual_bypass_events.jsonl "$root"/testdata/ecs_nested_agent.ndjson \
         "$root"/testdata/ecs_dotted_filebeat.ndjson "$root"/testdata/es_hits_source.ndjson \
         "$root"/testdata/raw_field_mapping_edge_cases.jsonl "$root"/testdata/malformed_lines.jsonl \
         "$root"/tests/fixtures/formats/cel_wrapped.ndjson "$root"/tests/fixtures/formats/exports/ps7_lines_string.jsonl; do
  grep -m 3 'Set-MailboxAuditBypassAssociation' "$f" | while IFS= read -r line; do
    i=$((i + 1)); printf '%s\n' "$line" > "$out/record/$(basename "$f").$i"
  done
done

# document: [csv?][3 read sizes] + the head of each export.
for f in "$root"/tests/fixtures/formats/*.csv; do
  { printf '\x01\x07\x40\xff'; head_of "$f"; } > "$out/document/$(basename "$f")"
done
for f in "$root"/tests/fixtures/formats/*.json "$root"/tests/fixtures/formats/exports/*.json; do
  { printf '\x00\x05\x80\xff'; head_of "$f"; } > "$out/document/$(basename "$f")"
done

# chunk: [target][block][max line][3 read sizes] + lines.
for f in "$root"/testdata/crlf_bom_no_final_newline.jsonl "$root"/testdata/malformed_lines.jsonl \
         "$root"/testdata/decoys_no_match.jsonl; do
  { printf '\x20\x10\x30\x03\x11\x40'; head_of "$f"; } > "$out/chunk/$(basename "$f")"
done

# hunt: [container] + small inputs of every layout, and compressed fixtures as they are.
c=0
for f in "$root"/testdata/raw_ual_bypass_events.jsonl "$root"/testdata/ecs_nested_agent.ndjson \
         "$root"/tests/fixtures/formats/purview_classic.csv "$root"/tests/fixtures/formats/array_pretty.json \
         "$root"/tests/fixtures/formats/search_response.json "$root"/tests/fixtures/formats/exports/ps51_array_string.json; do
  c=$((c + 1))
  { printf "\\x0$((c % 7))"; head_of "$f"; } > "$out/hunt/$(basename "$f")"
done
for f in "$root"/testdata/gzip_multi_member_split_midline.jsonl.gz "$root"/tests/fixtures/formats/array_pretty.json.zst \
         "$root"/tests/fixtures/formats/exports/ps_exports.zip; do
  { printf '\x00'; cat "$f"; } > "$out/hunt/$(basename "$f")"
done
# rules: [language: 0 EQL, 1 ES|QL, 2 Sigma] + a query or a Sigma file. A few shapes of
# each here; with the reference corpus beside the repository, its EQL and ES|QL queries
# and Sigma rules too.
printf '\x00%s' 'any where event.dataset == "o365.audit" and event.action : ("New-InboxRule", "Set-InboxRule") and ?o365.audit.Parameters.ForwardTo != null' > "$out/rules/eql_event"
printf '\x00%s' 'sequence by user.id with maxspan=30m [any where event.action == "UserLoginFailed"] [any where startsWith~(user_agent.original, "azurehound")] until [any where event.outcome == "failure"]' > "$out/rules/eql_sequence"
printf '\x01%s' 'from logs-o365.audit-* | where event.action == "FileDownloaded" and source.ip is not null | eval w = date_trunc(3 minutes, @timestamp) | stats n = count_distinct(file.name), v = values(user.id) by w, source.ip | where n >= 25 | keep n, v | sort n desc | limit 10' > "$out/rules/esql_stats"
printf '\x01%s' 'from logs-o365.audit-* | grok o365.audit.ObjectId "%{WORD:a}\\\\%{DATA:b}" | dissect user.id "%{n}@%{d}" | where b rlike ".*fwd.*" and d like "*.com"' > "$out/rules/esql_grok"
printf '\x02%s' 'title: t
id: 11111111-2222-3333-4444-555555555555
logsource: {product: m365, service: exchange}
detection:
  sel:
    Operation|contains: [Set-Mailbox, New-InboxRule]
    Parameters.ForwardingSmtpAddress|endswith: "@gmail.com"
  filter: {UserId|re: "^svc-"}
  condition: sel and not filter
level: high' > "$out/rules/sigma_rule"
printf '\x02%s' 'title: base
name: base
logsource: {product: m365, service: audit}
detection: {sel: {Operation: UserLoggedIn}, condition: sel}
---
title: many
correlation: {type: event_count, rules: [base], group-by: [UserId], timespan: 10m, condition: {gte: 5}}' > "$out/rules/sigma_correlation"
corpus=$root/../shared/corpus
if [ -d "$corpus/elastic-rules" ] && command -v python3 >/dev/null; then
  python3 - "$corpus/elastic-rules" "$out/rules" <<'PY'
import pathlib, sys, tomllib
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in sorted(src.glob("*.toml")):
    rule = tomllib.loads(f.read_text()).get("rule", {})
    lang = {"eql": b"\x00", "esql": b"\x01"}.get(rule.get("language"))
    if lang and rule.get("query"):
        (out / f.stem).write_bytes(lang + rule["query"].encode())
PY
fi
if [ -d "$corpus/sigma-m365" ]; then
  find "$corpus/sigma-m365" -name '*.yml' | sort | head -40 | while IFS= read -r f; do
    { printf '\x02'; cat "$f"; } > "$out/rules/sigma_$(basename "$f")"
  done
fi

echo "seeds: $(find "$out" -type f | wc -l) files in $out/"
