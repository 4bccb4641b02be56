#!/usr/bin/env bash
# Regenerates docs/report.png: the HTML report of the storyline archive (generate
# --scenarios) with the backup tool account allowlisted, as headless Chromium shows it
# at 1200x1600. Needs chromium (apt-get install -y chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

cargo build --release --locked
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# Relative names, so the report shows `story.jsonl:LINE`, not a temporary path.
"$root/target/release/ualhunt" generate --size 5M --scenarios -o story.jsonl 2>/dev/null
cat >allow.toml <<'TOML'
[[allow]]
account = "svc-backup@contoso.onmicrosoft.com"
reason = "Veeam Backup for Microsoft 365"
owner = "it-ops@contoso.com"
expires = 2099-12-31
TOML
# Exit status 0: findings.
"$root/target/release/ualhunt" hunt --quiet --allow allow.toml --format html \
  -o report.html story.jsonl
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1200,1600 \
  --screenshot="$root/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png"
