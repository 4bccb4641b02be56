#!/usr/bin/env bash
# scripts/bench.sh: benchmark ualhunt against rg, igzip, zcat|rg and jq.
#
# Usage: scripts/bench.sh [-h|--help]   (all options come from the environment, see usage below)
set -euo pipefail
export LC_ALL=C

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [-h|--help]

Benchmarks `ualhunt hunt` against ripgrep, igzip, zcat|rg and jq on generated
Microsoft 365 audit archives (JSON lines) and prints a Markdown table.

Steps: installs missing tools (as root on Debian: apt-get update once, then
apt-get install -y ripgrep isal hyperfine jq pigz time [python3]), runs
`cargo build --release`, generates the data once into a cache dir, warms the
page cache, then times every case with an alternating loop (A,B,A,B,...,
BENCH_RUNS rounds after one untimed warm-up run each) and reports medians.

Environment:
  BENCH_RUNS=5          timed runs per command (median is reported; >= 5 advised)
  BENCH_SIZE=1G         size of the main archive (K/M/G/T suffix = KiB/MiB/GiB/TiB)
  BENCH_DIR=target/bench-data
                        cache dir for generated data and results (relative paths
                        are taken from the current directory)
  UALHUNT=PATH          use this ualhunt binary instead of building
                        target/release/ualhunt (skips cargo build)
  UALHUNT_ZLIB=PATH     with UALHUNT: the default-build (zlib-rs) binary, for the
                        gzip rows of the default build
  BENCH_GENERATOR=auto  auto | ualhunt | standin. auto = `ualhunt generate` if
                        `ualhunt generate --help` succeeds, else a Python stand-in
  BENCH_SLICE_SIZE=100M size of the head slice used for the jq case
  BENCH_WORST_SIZE=256M size of the all-bypass (--rate 1) worst-case archive
  BENCH_HYPERFINE=0     1 = also run hyperfine per case (block order, for display)
  BENCH_NO_INSTALL=0    1 = never call apt-get; fail if a tool is missing
  BENCH_LAYOUTS="generated shuffled"
                        key orders (`ualhunt generate --key-order`) the rows of
                        issue 19's table are run on, each an archive of BENCH_SIZE
                        with the same records (generated, purview, shuffled; the
                        Python stand-in writes only `generated`)
  BENCH_RULES=../shared/corpus/elastic-rules
                        Elastic's rule files for the rule-pack rows (every runnable
                        rule; the `type = "query"` ones alone); rows skipped if absent
  YEAR_SIZE=BENCH_SIZE   size of the year-long archive (365 days, two bypass periods)
  BENCH_NEWLINES_SIZE=8G
                        size of the gzip of newlines only (one member, pigz -6)
                        run against igzip -dc

Issue 19's rows (per layout): hunt --no-context vs rg -c LITERAL; hunt (with the
context pass) vs rg -c; gzip hunt and hunt --no-context vs igzip -dc (the isal
build and the default zlib-rs build); the runnable rules and the query rules vs
the built-in rule (--no-context on both sides, as scripts/bench-rules.sh); the
first four again on the year-long layout of scripts/bench-year.sh (YEAR_SIZE,
default BENCH_SIZE; plain and `ualhunt generate --gzip`, in BENCH_DIR/bench-year);
then the gzip of newlines vs igzip -dc. Each case names the issue's target ratio. If
scripts/bench-year.sh exists it runs last, its output appended to the report.

Exit status: 0 on success, 2 on any error. ualhunt exit codes 0 (found) and 1
(nothing found) both count as success while timing; 2 is a failure.
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) usage >&2; exit 2 ;;
esac

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 2; }
have() { command -v "$1" >/dev/null 2>&1; }

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${BENCH_RUNS:-5}
SIZE=${BENCH_SIZE:-1G}
DIR=$(realpath -m -- "${BENCH_DIR:-$ROOT/target/bench-data}")
SLICE_SIZE=${BENCH_SLICE_SIZE:-100M}
WORST_SIZE=${BENCH_WORST_SIZE:-256M}
GEN_MODE=${BENCH_GENERATOR:-auto}
SEED=42
RATE=0.00001
LAYOUTS=${BENCH_LAYOUTS:-generated shuffled}
RULES_DIR=${BENCH_RULES:-$ROOT/../shared/corpus/elastic-rules}
NEWLINES_SIZE=${BENCH_NEWLINES_SIZE:-8G}
LITERAL=Set-MailboxAuditBypassAssociation
JQ_FILTER='select(.Operation=="Set-MailboxAuditBypassAssociation" and .Workload=="Exchange")'

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer, got '$RUNS'"
((RUNS >= 5)) || log "warning: BENCH_RUNS=$RUNS < 5; medians will be noisy"
for l in $LAYOUTS; do
  [[ $l =~ ^(generated|purview|shuffled)$ ]] || die "BENCH_LAYOUTS: unknown key order '$l'"
done
for v in SIZE SLICE_SIZE WORST_SIZE NEWLINES_SIZE; do
  [[ ${!v} =~ ^[0-9]+[KMGT]?$ ]] || die "BENCH_$v must look like 64M, 1G or a byte count, got '${!v}'"
done
[[ $GEN_MODE =~ ^(auto|ualhunt|standin)$ ]] || die "BENCH_GENERATOR must be auto, ualhunt or standin"
[[ -n ${EPOCHREALTIME:-} ]] || die "bash >= 5 is required (EPOCHREALTIME)"

# ---------------------------------------------------------------- tools
APT_UPDATED=0
as_root() {
  if ((EUID == 0)); then
    "$@"
  elif have sudo; then
    sudo -n "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}
apt_install() {
  (($# > 0)) || return 0
  [[ ${BENCH_NO_INSTALL:-0} != 1 ]] || die "missing packages: $* (BENCH_NO_INSTALL=1)"
  have apt-get || die "missing packages: $* and no apt-get here (not Debian?); install them by hand"
  if ((APT_UPDATED == 0)); then
    log "apt-get update"
    as_root apt-get update -q >&2
    APT_UPDATED=1
  fi
  log "apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

pkgs=()
have rg || pkgs+=(ripgrep)
have igzip || pkgs+=(isal) # igzip is shipped by Debian's "isal" package
have hyperfine || pkgs+=(hyperfine)
have jq || pkgs+=(jq)
have pigz || pkgs+=(pigz)
have zcat || pkgs+=(gzip)
[[ -x /usr/bin/time ]] || pkgs+=(time)
# ualhunt's ISA-L gzip backend (cargo feature `isal`) links the system libisal.
dpkg -s libisal-dev >/dev/null 2>&1 || pkgs+=(libisal-dev)
apt_install "${pkgs[@]}"
for t in rg igzip jq pigz zcat split numfmt awk; do
  have "$t" || die "'$t' is still missing after install"
done

# ---------------------------------------------------------------- ualhunt
if [[ -n ${UALHUNT:-} ]]; then
  if [[ $UALHUNT == */* ]]; then
    UALHUNT=$(realpath -- "$UALHUNT") || die "UALHUNT=$UALHUNT does not exist"
  else
    UALHUNT=$(command -v -- "$UALHUNT") || die "UALHUNT=$UALHUNT is not on PATH"
  fi
  log "using UALHUNT=$UALHUNT (cargo build skipped)"
else
  have cargo || die "cargo not found: install a Rust toolchain (rustup) first"
  log "cargo build --release --features isal"
  (cd -- "$ROOT" && cargo build --release --features isal) >&2 ||
    die "cargo build --release --features isal failed"
  UALHUNT=$ROOT/target/release/ualhunt
  # The default build (zlib-rs gzip backend) too, for the gzip comparison.
  log "cargo build --release --target-dir target/bench-default (zlib-rs backend)"
  (cd -- "$ROOT" && cargo build --release --target-dir target/bench-default) >&2 ||
    die "cargo build --release (default features) failed"
  UALHUNT_ZLIB=$ROOT/target/bench-default/release/ualhunt
fi
if [[ -n ${UALHUNT_ZLIB:-} ]]; then
  UALHUNT_ZLIB=$(realpath -- "$UALHUNT_ZLIB") || die "UALHUNT_ZLIB=$UALHUNT_ZLIB does not exist"
fi
[[ -x $UALHUNT ]] || die "$UALHUNT is not an executable"
# `SUB --help` must succeed AND print a usage text naming the options this script
# passes (a stub `fn main() {}` exits 0 for anything).
subcommand_ok() { # SUB OPTION...
  local help
  help=$("$UALHUNT" "$1" --help 2>&1) || return 1
  shift
  grep -qi usage <<<"$help" || return 1
  for o in "$@"; do grep -q -e "$o" <<<"$help" || return 1; done
}
if ! subcommand_ok hunt --format --threads; then
  die "'$UALHUNT hunt --help' failed or does not document --format/--threads:
        this ualhunt has no working 'hunt' subcommand yet, so there is nothing to benchmark.
        To test the script anyway, point UALHUNT=/path/to/a/binary that has it."
fi

if [[ $GEN_MODE == auto ]]; then
  if subcommand_ok generate --size --seed --shape --rate; then GEN=ualhunt; else GEN=standin; fi
fi
HAVE_KEY_ORDER=0
if [[ $GEN == ualhunt ]] && subcommand_ok generate --key-order; then
  HAVE_KEY_ORDER=1
else
  GEN=$GEN_MODE
fi
if [[ $GEN == standin ]]; then
  log "'ualhunt generate' unavailable or not chosen: using the Python stand-in generator"
  have python3 || apt_install python3
fi

# ---------------------------------------------------------------- data
# Stand-in for `ualhunt generate --size S --seed N --shape ual --rate R -o FILE`:
# ~0.8-1.5 KB Management-Activity-API style records (MailItemsAccessed, SharePoint
# file events, AAD logons, Exchange admin cmdlets), with successful
# Set-MailboxAuditBypassAssociation records at probability RATE and as many decoys
# (failed attempts, the literal inside another cmdlet's parameters). RATE >= 1
# makes every record a bypass event. Deterministic for a given seed.
standin_generate() {
  python3 - "$@" <<'PY'
import argparse, random, re, sys, time

def parse_size(s):
    m = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*', s, re.I)
    if not m:
        sys.exit(f"stand-in generate: bad --size {s!r}")
    mult = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)

ap = argparse.ArgumentParser(prog="stand-in generate")
ap.add_argument("--size", required=True)
ap.add_argument("--seed", type=int, default=42)
ap.add_argument("--shape", default="ual")
ap.add_argument("--rate", type=float, default=0.00001)
ap.add_argument("-o", "--output", required=True)
a = ap.parse_args()
if a.shape != "ual":
    sys.exit(f"stand-in generate: only --shape ual is supported, not {a.shape!r}")
target = parse_size(a.size)
rng = random.Random(a.seed)
rand = rng.random
bits = rng.getrandbits
choice = rng.choice

ORG_ID = "4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
ORG = "contoso.onmicrosoft.com"
FIRST = ["adele", "alex", "allan", "diego", "grady", "henrietta", "isaiah", "johanna", "joni", "lee",
         "lidia", "lynne", "megan", "miriam", "nestor", "patti", "pradeep", "christie", "debra", "irvin"]
LAST = ["vance", "wilber", "deyoung", "siciliani", "archie", "mueller", "langer", "lambert", "sherman",
        "gu", "holloway", "robinson", "bowen", "graham", "wilke", "fernandez", "gupta", "cline", "berger", "sayavong"]
USERS = [f"{f}.{l}@contoso.com" for f in FIRST for l in LAST]
ADMINS = USERS[:12]
SERVERS = [f"{p}{n:04d}.NAMPRD{r:02d}.PROD.OUTLOOK.COM" for p in ("BN8PR", "CH2PR", "DM6PR", "SA1PR") for n, r in ((101, 3), (1201, 11), (2204, 14))]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
          "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17531; Pro)",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
          "Client=REST;Client=RESTSystem;;"]
FOLDERS = ["Inbox", "Sent Items", "Deleted Items", "Archive", "Inbox\\\\Finance", "Inbox\\\\Legal", "Drafts"]
SITES = ["https://contoso.sharepoint.com/sites/Finance", "https://contoso.sharepoint.com/sites/Legal",
         "https://contoso-my.sharepoint.com/personal/adele_vance_contoso_com", "https://contoso.sharepoint.com/sites/Engineering"]
FILES = ["Q3-forecast.xlsx", "board-minutes.docx", "design-review.pptx", "contract-draft-v7.docx", "budget.xlsx", "notes.txt"]

def guid():
    h = "%032x" % bits(128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

def ip():
    return f"{choice((20, 40, 52, 104, 13, 198))}.{bits(8)}.{bits(8)}.{bits(8)}"

T0 = 1714521600  # 2024-05-01T00:00:00Z
def ts(i):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(T0 + i // 8))

def common(i, op, rt, status, user, wl, ut=0, port=False):
    cip = f"{ip()}:{bits(16)}" if port else ip()
    return (f'{{"CreationTime":"{ts(i)}","Id":"{guid()}","Operation":"{op}","OrganizationId":"{ORG_ID}",'
            f'"RecordType":{rt},"ResultStatus":"{status}","UserKey":"1003{bits(40):012X}","UserType":{ut},"Version":1,'
            f'"Workload":"{wl}","ClientIP":"{cip}","UserId":"{user}"')

def mail_items_accessed(i):
    u = choice(USERS)
    fl = ",".join(f'{{"FolderItems":[{{"InternetMessageId":"<{bits(64):016x}@{choice(SERVERS).lower()}>","SizeInBytes":{bits(17)}}}],'
                  f'"Id":"LgAAAAD{bits(96):024X}AQ","Path":"\\\\{choice(FOLDERS)}"}}' for _ in range(1 + bits(1)))
    return (common(i, "MailItemsAccessed", 50, "Succeeded", u, "Exchange") +
            f',"AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"","ExternalAccess":false,"InternalLogonType":0,'
            f'"LogonType":0,"LogonUserSid":"S-1-5-21-{bits(30)}-{bits(30)}-{bits(30)}-{bits(20)}","MailboxGuid":"{guid()}",'
            f'"MailboxOwnerSid":"S-1-5-21-{bits(30)}-{bits(30)}-{bits(30)}-{bits(20)}","MailboxOwnerUPN":"{u}",'
            f'"OperationProperties":[{{"Name":"MailAccessType","Value":"Bind"}},{{"Name":"IsThrottled","Value":"False"}}],'
            f'"OrganizationName":"{ORG}","OriginatingServer":"{choice(SERVERS)} (15.20.7472.000)",'
            f'"ClientInfoString":"{choice(AGENTS)}","SessionId":"{guid()}","Folders":[{fl}],"OperationCount":{1 + bits(3)}}}')

def sharepoint(i):
    u = choice(USERS); site = choice(SITES); f = choice(FILES)
    return (common(i, choice(("FileAccessed", "FileModified", "FileDownloaded", "FilePreviewed")), 6, "", u, "SharePoint") +
            f',"ObjectId":"{site}/Shared Documents/{f}","CorrelationId":"{guid()}","EventSource":"SharePoint",'
            f'"ItemType":"File","ListId":"{guid()}","ListItemUniqueId":"{guid()}","Site":"{guid()}",'
            f'"UserAgent":"{choice(AGENTS)}","WebId":"{guid()}","GeoLocation":"NAM","IsManagedDevice":false,'
            f'"DeviceDisplayName":"{ip()}","SourceFileExtension":"{f.rsplit(".", 1)[1]}","SiteUrl":"{site}/",'
            f'"SourceFileName":"{f}","SourceRelativeUrl":"Shared Documents","ApplicationDisplayName":"Microsoft Office"}}')

def logon(i):
    u = choice(USERS)
    ok = rand() < 0.93
    return (common(i, "UserLoggedIn" if ok else "UserLoginFailed", 15, "Success" if ok else "Failed", u, "AzureActiveDirectory") +
            f',"AzureActiveDirectoryEventType":1,"ExtendedProperties":[{{"Name":"ResultStatusDetail","Value":"{"Success" if ok else "UserError"}"}},'
            f'{{"Name":"UserAgent","Value":"{choice(AGENTS)}"}},{{"Name":"RequestType","Value":"OAuth2:Token"}}],'
            f'"ModifiedProperties":[],"Actor":[{{"ID":"{guid()}","Type":0}},{{"ID":"{u}","Type":5}}],"ActorContextId":"{ORG_ID}",'
            f'"ActorIpAddress":"{ip()}","InterSystemsId":"{guid()}","IntraSystemId":"{guid()}","SupportTicketId":"",'
            f'"Target":[{{"ID":"{guid()}","Type":0}}],"TargetContextId":"{ORG_ID}","ApplicationId":"{guid()}",'
            f'"DeviceProperties":[{{"Name":"OS","Value":"Windows10"}},{{"Name":"BrowserType","Value":"Edge"}}],"ErrorNumber":"{0 if ok else 50126}"}}')

def admin(i, op, params, status="True", user=None):
    u = user or choice(ADMINS)
    ps = ",".join(f'{{"Name":"{k}","Value":"{v}"}}' for k, v in params)
    return (common(i, op, 1, status, u, "Exchange", 2, port=True) +
            f',"AppId":"","ClientAppId":"","ExternalAccess":false,"ObjectId":"{params[0][1]}","OrganizationName":"{ORG}",'
            f'"OriginatingServer":"{choice(SERVERS)} (15.20.7472.000)","Parameters":[{ps}],"SessionId":"{guid()}",'
            f'"RequestId":"{guid()}"}}')

def exchange_admin(i):
    who = choice(USERS)
    r = rand()
    if r < 0.4:
        return admin(i, "Set-Mailbox", [("Identity", who), ("LitigationHoldEnabled", "True")])
    if r < 0.7:
        return admin(i, "New-InboxRule", [("Mailbox", who), ("Name", "Move to Archive"), ("MoveToFolder", "Archive"), ("StopProcessingRules", "False")], user=who)
    return admin(i, "Add-MailboxPermission", [("Identity", who), ("User", choice(USERS)), ("AccessRights", "FullAccess"), ("InheritanceType", "All")])

def bypass(i):
    return admin(i, "Set-MailboxAuditBypassAssociation", [("Identity", choice(USERS)), ("AuditBypassEnabled", "True")])

def decoy(i):
    # records that contain the literal but must NOT match the rule
    r = rand()
    if r < 0.5:  # failed attempt
        return admin(i, "Set-MailboxAuditBypassAssociation", [("Identity", choice(USERS)), ("AuditBypassEnabled", "True")], status="False")
    # the literal only inside a parameter value
    return admin(i, "New-ManagementRole", [("Name", "Custom Audit Ops"), ("Parent", "Audit Logs"),
                                           ("EnabledCmdlets", "Get-MailboxAuditBypassAssociation,Set-MailboxAuditBypassAssociation")])

BODIES = [(0.55, mail_items_accessed), (0.85, sharepoint), (0.97, logon), (1.01, exchange_admin)]
rate = a.rate
out = open(a.output, "w", buffering=1 << 20)
written = 0
i = 0
buf = []
blen = 0
while written + blen < target:
    r = rand()
    if rate >= 1 or r < rate:
        line = bypass(i)
    elif r < 2 * rate:
        line = decoy(i)
    else:
        x = rand()
        for p, f in BODIES:
            if x < p:
                line = f(i)
                break
    buf.append(line)
    blen += len(line) + 1
    i += 1
    if len(buf) >= 4096:
        out.write("\n".join(buf)); out.write("\n")
        written += blen; buf = []; blen = 0
if buf:
    out.write("\n".join(buf)); out.write("\n")
out.close()
PY
}

generate() { # same arguments as `ualhunt generate`; the output file is the last one
  if [[ $GEN == ualhunt ]]; then
    "$UALHUNT" generate "$@" >&2 || die "ualhunt generate $* failed"
  else
    standin_generate "$@" >&2 || die "stand-in generate $* failed"
  fi
  [[ -s ${*: -1} ]] || die "generate $* produced no data"
}

bytes_of() { stat -c %s -- "$1"; }
iec() { numfmt --from=iec -- "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

GZIP_DESC="pigz $(pigz --version 2>&1 | awk '{print $2}') -6"
gz() { pigz -6 -p "$(nproc)" -c -- "$1" >"$2.tmp" && mv -f -- "$2.tmp" "$2"; }

DATA=$DIR/$GEN-$SIZE-seed$SEED
PLAIN=$DATA/plain.jsonl
GZ=$DATA/plain.jsonl.gz
SLICE=$DATA/slice-$SLICE_SIZE.jsonl
WORST=$DATA/worst-$WORST_SIZE.jsonl
PARTS=("$DATA"/parts/part0{0..3}.jsonl.gz)
mkdir -p -- "$DATA"

if [[ ! -s $PLAIN ]]; then
  rm -rf -- "$GZ" "$DATA"/slice-*.jsonl "$DATA/parts"
  log "generating $PLAIN ($SIZE, $GEN)"
  generate --size "$SIZE" --seed "$SEED" --shape ual --rate "$RATE" -o "$PLAIN.tmp"
  mv -f -- "$PLAIN.tmp" "$PLAIN"
else
  log "reusing $PLAIN"
fi
if [[ ! -s $GZ ]]; then
  log "compressing -> $GZ ($GZIP_DESC)"
  gz "$PLAIN" "$GZ"
fi
if [[ ! -s $SLICE ]]; then
  log "slicing first $SLICE_SIZE -> $SLICE"
  head -c "$(iec "$SLICE_SIZE")" -- "$PLAIN" >"$SLICE.tmp"
  # cut back to the last newline so jq sees whole records only
  if [[ -s $SLICE.tmp && $(tail -c 1 -- "$SLICE.tmp" | od -An -tx1 | tr -d ' ') != 0a ]]; then
    sed -i '$d' -- "$SLICE.tmp"
  fi
  mv -f -- "$SLICE.tmp" "$SLICE"
fi
if [[ ! -s $WORST ]]; then
  log "generating worst case $WORST ($WORST_SIZE, --rate 1)"
  generate --size "$WORST_SIZE" --seed "$SEED" --shape ual --rate 1 -o "$WORST.tmp"
  mv -f -- "$WORST.tmp" "$WORST"
fi
parts_ok=1
for p in "${PARTS[@]}"; do [[ -s $p ]] || parts_ok=0; done
if ((parts_ok == 0)); then
  log "splitting into 4 gzip parts -> $DATA/parts ($GZIP_DESC)"
  rm -rf -- "$DATA/parts" "$DATA/parts.tmp"
  mkdir -p -- "$DATA/parts.tmp"
  split -n l/4 -d --additional-suffix=.jsonl -- "$PLAIN" "$DATA/parts.tmp/part"
  for f in "$DATA"/parts.tmp/part0?.jsonl; do
    gz "$f" "$f.gz"
    rm -f -- "$f"
  done
  mv -- "$DATA/parts.tmp" "$DATA/parts"
fi

PLAIN_B=$(bytes_of "$PLAIN")
GZ_B=$(bytes_of "$GZ")
SLICE_B=$(bytes_of "$SLICE")
WORST_B=$(bytes_of "$WORST")
PARTS_GZ_B=0
for p in "${PARTS[@]}"; do PARTS_GZ_B=$((PARTS_GZ_B + $(bytes_of "$p"))); done
PARTS_B=$PLAIN_B # the 4 parts are a line-wise split of PLAIN

log "warming the page cache"
cat -- "$PLAIN" "$GZ" "$SLICE" "$WORST" "${PARTS[@]}" >/dev/null

# ---------------------------------------------------------------- timing engine
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ualhunt-bench.XXXXXX")
trap 'rm -rf -- "$TMP"' EXIT
ERR=$TMP/stderr
U=$(printf %q "$UALHUNT")
UH="$U hunt --format json -o /dev/null"
HAVE_TIME=0
[[ -x /usr/bin/time ]] && HAVE_TIME=1

ROWS=()     # Markdown rows of the result table
HF_CASES=() # hyperfine invocations, if BENCH_HYPERFINE=1

# case_begin ID INPUT-DESCRIPTION BYTES-FOR-MB/s
case_begin() {
  CASE_ID=$1 CASE_INPUT=$2 CASE_BYTES=$3
  C_ROLE=() C_LABEL=() C_OK=() C_CMD=()
}
# case_cmd ROLE LABEL OK-EXIT-CODES COMMAND
#   ROLE: subject = the ualhunt (all cores) row the ratios are taken against,
#         alt     = another ualhunt variant (e.g. --threads 1),
#         peer    = another tool.
case_cmd() { C_ROLE+=("$1") C_LABEL+=("$2") C_OK+=("$3") C_CMD+=("$4"); }

show() { # command as displayed: binary path -> "ualhunt", file paths relative to the data dir
  local s=$1
  [[ -n ${UALHUNT_ZLIB:-} ]] && s=${s//"$(printf %q "$UALHUNT_ZLIB")"/ualhunt-default-build}
  s=${s//"$U"/ualhunt}
  printf '%s' "$s"
}

# run_one INDEX: runs command INDEX once in $DATA; sets ELAPSED_US; dies on a failure exit code
run_one() {
  local i=$1 rc=0 t0 t1
  t0=${EPOCHREALTIME//[!0-9]/}
  bash -o pipefail -c "${C_CMD[i]}" >/dev/null 2>"$ERR" || rc=$?
  t1=${EPOCHREALTIME//[!0-9]/}
  if [[ " ${C_OK[i]} " != *" $rc "* ]]; then
    log "FAILED (exit $rc, accepted: ${C_OK[i]}): $(show "${C_CMD[i]}")"
    sed 's/^/    /' -- "$ERR" >&2
    exit 2
  fi
  ELAPSED_US=$((t1 - t0))
}

median_of() { # file of microsecond samples -> "median min max" in seconds
  sort -n -- "$1" | awk '{ a[NR] = $1 } END {
    m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
    printf "%.6f %.6f %.6f\n", m / 1e6, a[1] / 1e6, a[NR] / 1e6 }'
}

ratio_of() { # A B -> A/B: 2 decimals, or 2 significant digits below 0.1
  awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf((r < 0.1) ? "%.2g\n" : "%.2f\n", r) }'
}

case_run() {
  local n=${#C_CMD[@]} i r s=-1 med mn mx
  local -a MED=() MIN=() MAX=() RSS=()
  log "case $CASE_ID"
  for ((i = 0; i < n; i++)); do
    [[ ${C_ROLE[i]} == subject ]] && s=$i
    : >"$TMP/t$i"
    run_one "$i" # untimed warm-up (also validates the command)
    if [[ ${C_ROLE[i]} == peer && -s $ERR ]]; then
      log "warning: '$(show "${C_CMD[i]}")' wrote to stderr:"
      sed 's/^/    /' -- "$ERR" >&2
    fi
  done
  ((s >= 0)) || die "case $CASE_ID has no subject row"
  for ((r = 1; r <= RUNS; r++)); do # alternate A,B[,C],A,B[,C],...
    for ((i = 0; i < n; i++)); do
      run_one "$i"
      echo "$ELAPSED_US" >>"$TMP/t$i"
    done
    log "  round $r/$RUNS done"
  done
  for ((i = 0; i < n; i++)); do
    read -r med mn mx < <(median_of "$TMP/t$i")
    MED[i]=$med MIN[i]=$mn MAX[i]=$mx RSS[i]=
    if [[ ${C_ROLE[i]} != peer && $HAVE_TIME == 1 ]]; then # separate untimed run for peak RSS
      local rc=0
      /usr/bin/time -f %M -o "$TMP/rss" bash -c "${C_CMD[i]}" >/dev/null 2>"$ERR" || rc=$?
      [[ " ${C_OK[i]} " == *" $rc "* ]] && RSS[i]=$(tail -n 1 -- "$TMP/rss" | awk '{ printf "%.0f MiB", $1 / 1024 }')
    fi
  done
  for ((i = 0; i < n; i++)); do
    local ratio="" j
    case ${C_ROLE[i]} in
      subject) ratio="(ref)" ;;
      alt) ratio=$(ratio_of "${MED[s]}" "${MED[i]}") ;;
      peer)
        ratio=$(ratio_of "${MED[s]}" "${MED[i]}")
        for ((j = 0; j < n; j++)); do
          [[ ${C_ROLE[j]} == alt ]] || continue
          ratio+=" (${C_LABEL[j]}: $(ratio_of "${MED[j]}" "${MED[i]}"))"
        done
        ;;
    esac
    local cmd nums
    cmd=$(show "${C_CMD[i]}")
    nums=$(awk -v b="$CASE_BYTES" -v m="${MED[i]}" -v lo="${MIN[i]}" -v hi="${MAX[i]}" \
      'BEGIN { printf "%.3f | %.3f–%.3f | %.1f", m, lo, hi, b / 1e6 / m }')
    ROWS+=("| $CASE_ID | \`${cmd//|/\\|}\` | $CASE_INPUT | $nums | $ratio | ${RSS[i]} |")
  done
  if [[ ${BENCH_HYPERFINE:-0} == 1 ]]; then
    local -a hf=(hyperfine --shell=bash -i --style basic --warmup 1 --runs "$RUNS"
      --export-markdown "$TMP/hf-${#HF_CASES[@]}.md")
    for ((i = 0; i < n; i++)); do hf+=(-n "$(show "${C_CMD[i]}")" "${C_CMD[i]}"); done
    HF_CASES+=("$(printf '%q ' "${hf[@]}")")
  fi
}

# ---------------------------------------------------------------- cases
cd -- "$DATA"
P=plain.jsonl G=plain.jsonl.gz S=${SLICE##*/} W=${WORST##*/}
PARTS_REL="parts/part00.jsonl.gz parts/part01.jsonl.gz parts/part02.jsonl.gz parts/part03.jsonl.gz"
GZ_IN="$G: $(mb "$GZ_B") gz, $(mb "$PLAIN_B") decompressed"

case_begin "1 plain" "$P: $(mb "$PLAIN_B")" "$PLAIN_B"
case_cmd subject ualhunt "0 1" "$UH $P"
case_cmd peer rg "0 1" "rg -c $LITERAL $P"
case_run

# One gzip file (one member): both builds; the default (auto: parallel on cores the
# load average leaves idle, which back-to-back runs may not), the parallel path forced
# on (always) and off (never); and one thread.
SEQ="UALHUNT_GZIP_PARALLEL=never"
PAR="UALHUNT_GZIP_PARALLEL=always"
case_begin "2 gzip" "$GZ_IN" "$PLAIN_B"
case_cmd subject ualhunt "0 1" "$UH $G"
case_cmd alt isal-seq "0 1" "$SEQ $UH $G"
case_cmd alt isal-par "0 1" "$PAR $UH $G"
case_cmd alt isal-t1 "0 1" "$UH --threads 1 $G"
if [[ -n ${UALHUNT_ZLIB:-} ]]; then
  UZ="$(printf %q "$UALHUNT_ZLIB") hunt --format json -o /dev/null"
  case_cmd alt zlib "0 1" "$UZ $G"
  case_cmd alt zlib-seq "0 1" "$SEQ $UZ $G"
  case_cmd alt zlib-par "0 1" "$PAR $UZ $G"
  case_cmd alt zlib-t1 "0 1" "$UZ --threads 1 $G"
fi
case_cmd peer igzip "0" "igzip -dc $G >/dev/null"
case_cmd peer zcat-rg "0 1" "zcat $G | rg -c $LITERAL"
case_run

case_begin "3 jq slice" "$S: $(mb "$SLICE_B")" "$SLICE_B"
case_cmd subject ualhunt "0 1" "$UH $S"
case_cmd peer jq "0" "jq -c '$JQ_FILTER' $S >/dev/null"
case_run

case_begin "4 threads" "$P: $(mb "$PLAIN_B")" "$PLAIN_B"
case_cmd alt t1 "0 1" "$UH --threads 1 $P"
case_cmd subject ualhunt "0 1" "$UH $P"
case_run

# Many gzip files: one worker per file, against one igzip per file on every core.
case_begin "5 4×gz files" "4 parts: $(mb "$PARTS_GZ_B") gz, $(mb "$PARTS_B") decompressed" "$PARTS_B"
case_cmd alt t1 "0 1" "$UH --threads 1 $PARTS_REL"
case_cmd subject ualhunt "0 1" "$UH $PARTS_REL"
if [[ -n ${UALHUNT_ZLIB:-} ]]; then
  case_cmd alt zlib "0 1" "$UZ $PARTS_REL"
fi
case_cmd peer xargs-igzip "0" "printf '%s\\n' $PARTS_REL | xargs -P $(nproc) -n 1 igzip -dc >/dev/null"
case_run

case_begin "6 worst (all bypass)" "$W: $(mb "$WORST_B")" "$WORST_B"
case_cmd alt t1 "0 1" "$UH --threads 1 $W"
case_cmd subject ualhunt "0 1" "$UH $W"
case_cmd peer jq "0" "jq -c '$JQ_FILTER' $W >/dev/null"
case_run

# ---------------------------------------------------------------- issue 19's rows
# Every row of the table of issue 19 ("One sweep at memory speed…"), on each layout of
# BENCH_LAYOUTS: the same records in another key order, so a probe tuned to the
# generator's layout shows. Targets are the issue's (ratio = ualhunt / peer).
RULE_ROWS=0
if [[ -d $RULES_DIR ]]; then
  RULES_DIR=$(realpath -- "$RULES_DIR")
  QUERY_RULES=$DIR/rules-query
  rm -rf -- "$QUERY_RULES"
  mkdir -p -- "$QUERY_RULES"
  grep -l '^type = "query"' -- "$RULES_DIR"/*.toml | xargs -r cp -t "$QUERY_RULES" --
  RUNNABLE=$("$UALHUNT" rules --rules "$RULES_DIR" 2>/dev/null | grep -c '^  id:') || RUNNABLE=0
  QUERIES=$(find "$QUERY_RULES" -name '*.toml' | wc -l)
  RULE_ROWS=1
else
  log "warning: no rule directory $RULES_DIR (BENCH_RULES): the rule-pack rows are skipped"
fi
UNC="$UH --no-context"
RULE_STATS=() # per-rule candidates of the pack run, per layout
# Issue 19's first four rows on one layout: NAME PLAIN GZIP PLAIN_LABEL GZIP_LABEL BYTES
# (files relative to the cache dir). `hunt` beside `--no-context` in row 2 shows what the
# context pass adds.
first_pass_rows() {
  local name=$1 plain=$2 gzip=$3 in=$4 gin=$5 bytes=$6
  case_begin "19.1 $name: --no-context vs rg (target ≤ 0.8)" "$in" "$bytes"
  case_cmd subject ualhunt "0 1" "$UNC $plain"
  case_cmd peer rg "0 1" "rg -c $LITERAL $plain"
  case_run

  case_begin "19.2 $name: hunt vs rg (target ≤ 1.3)" "$in" "$bytes"
  case_cmd subject ualhunt "0 1" "$UH $plain"
  case_cmd alt no-context "0 1" "$UNC $plain"
  case_cmd peer rg "0 1" "rg -c $LITERAL $plain"
  case_run

  # The gzip rows: the isal build (subject) and the default zlib-rs build as alts.
  case_begin "19.3 $name: gzip hunt vs igzip (target ≤ 1.35)" "$gin" "$bytes"
  case_cmd subject ualhunt "0 1" "$UH $gzip"
  [[ -n ${UALHUNT_ZLIB:-} ]] && case_cmd alt default-build "0 1" "$UZ $gzip"
  case_cmd peer igzip "0" "igzip -dc $gzip >/dev/null"
  case_run

  case_begin "19.4 $name: gzip --no-context vs igzip (target ≤ 1.25)" "$gin" "$bytes"
  case_cmd subject ualhunt "0 1" "$UNC $gzip"
  [[ -n ${UALHUNT_ZLIB:-} ]] && case_cmd alt default-build "0 1" "$UZ --no-context $gzip"
  case_cmd peer igzip "0" "igzip -dc $gzip >/dev/null"
  case_run
}

cd -- "$DIR" # the rows name files relative to the cache dir
for layout in $LAYOUTS; do
  if [[ $layout == generated ]]; then
    LP=$PLAIN LG=$GZ
  elif ((HAVE_KEY_ORDER == 0)); then
    log "warning: this generator has no --key-order: layout $layout skipped"
    continue
  else
    LDATA=$DIR/$GEN-$SIZE-seed$SEED-$layout
    LP=$LDATA/plain.jsonl LG=$LDATA/plain.jsonl.gz
    mkdir -p -- "$LDATA"
    if [[ ! -s $LP ]]; then
      rm -f -- "$LG"
      log "generating $LP ($SIZE, --key-order $layout)"
      generate --size "$SIZE" --seed "$SEED" --shape ual --rate "$RATE" --key-order "$layout" -o "$LP.tmp"
      mv -f -- "$LP.tmp" "$LP"
    fi
    if [[ ! -s $LG ]]; then
      log "compressing -> $LG ($GZIP_DESC)"
      gz "$LP" "$LG"
    fi
  fi
  cat -- "$LP" "$LG" >/dev/null
  LP_B=$(bytes_of "$LP")
  LP=${LP#"$DIR"/} LG=${LG#"$DIR"/}
  LIN="$layout: $(mb "$LP_B")"
  LGIN="$layout: $(mb "$(bytes_of "$LG")") gz, $(mb "$LP_B") decompressed"

  first_pass_rows "$layout" "$LP" "$LG" "$LIN" "$LGIN" "$LP_B"

  if ((RULE_ROWS)); then
    case_begin "19.5 $layout: $RUNNABLE runnable rules vs the built-in rule (target ≤ 2.5)" "$LIN" "$LP_B"
    case_cmd subject rules "0 1" "$UNC --rules $(printf %q "$RULES_DIR") $LP"
    case_cmd peer built-in "0 1" "$UNC $LP"
    case_run

    case_begin "19.6 $layout: $QUERIES query rules vs the built-in rule (target ≤ 1.5)" "$LIN" "$LP_B"
    case_cmd subject rules "0 1" "$UNC --rules $(printf %q "${QUERY_RULES#"$DIR"/}") $LP"
    case_cmd peer built-in "0 1" "$UNC $LP"
    case_run

    # Per rule: the candidates its literals gave (per GB of this layout) and its
    # matches, from one untimed --stats run of the pack (issue 19).
    log "per-rule candidates ($layout): $UNC --stats --rules $RULES_DIR $LP"
    RULE_STATS+=("#### $layout: \`hunt -q --no-context --stats --rules $RULES_DIR\` over $LIN")
    RULE_STATS+=("")
    RULE_STATS+=('```')
    while IFS= read -r line; do
      RULE_STATS+=("$line")
    done < <($UNC --stats --rules "$RULES_DIR" "$LP" 2>&1 >/dev/null |
      sed -n '/^prefilter\|^selectivity\|^wall time\|^trigger look\|^rules /p; /evaluated (/p')
    RULE_STATS+=('```')
    RULE_STATS+=("")
  fi
done

# The year-long layout (issue 19's own archive was one: findings spread over a year):
# a time-ordered archive over 365 days with two short bypass periods, where the context
# pass reads only the stretches near them. Generated as scripts/bench-year.sh does, into
# the directory it is then run on (it reuses the files).
YEAR_SIZE=${YEAR_SIZE:-$SIZE}
YEAR_DIR=$DIR/bench-year
[[ $YEAR_SIZE =~ ^[0-9]+[KMG]?$ ]] || die "YEAR_SIZE must look like 1G or 512M, got '$YEAR_SIZE'"
if subcommand_ok generate --scenarios --plot; then
  mkdir -p -- "$YEAR_DIR"
  YP=$YEAR_DIR/year-$YEAR_SIZE.jsonl YG=$YEAR_DIR/year-$YEAR_SIZE.jsonl.gz
  if [[ ! -s $YP ]]; then
    log "generating $YP ($YEAR_SIZE over 365 days, two bypass periods)"
    "$UALHUNT" generate --size "$YEAR_SIZE" --scenarios 365 --plot two-periods --rate 0 -o "$YP.tmp" 2>/dev/null ||
      die "ualhunt generate (year) failed"
    mv -f -- "$YP.tmp" "$YP"
  fi
  if [[ ! -s $YG ]]; then
    log "generating $YG (one member, ualhunt generate --gzip)"
    "$UALHUNT" generate --size "$YEAR_SIZE" --scenarios 365 --plot two-periods --rate 0 --gzip -o "$YG.tmp" 2>/dev/null ||
      die "ualhunt generate --gzip (year) failed"
    mv -f -- "$YG.tmp" "$YG"
  fi
  cat -- "$YP" "$YG" >/dev/null
  YP_B=$(bytes_of "$YP")
  YP=${YP#"$DIR"/} YG=${YG#"$DIR"/}
  YIN="year: $(mb "$YP_B")"
  YGIN="year: $(mb "$(bytes_of "$DIR/$YG")") gz, $(mb "$YP_B") decompressed"

  first_pass_rows year "$YP" "$YG" "$YIN" "$YGIN" "$YP_B"
else
  log "warning: this ualhunt generate has no --scenarios/--plot: the year rows are skipped"
fi

# Newlines only, gzipped: the blank-line path (layout-independent).
NL=$DIR/newlines-$NEWLINES_SIZE.gz
if [[ ! -s $NL ]]; then
  log "writing $NL ($NEWLINES_SIZE of newlines, $GZIP_DESC)"
  head -c "$(iec "$NEWLINES_SIZE")" /dev/zero | tr '\0' '\n' | pigz -6 -c >"$NL.tmp"
  mv -f -- "$NL.tmp" "$NL"
fi
cat -- "$NL" >/dev/null
NL_B=$(iec "$NEWLINES_SIZE")
NL=${NL#"$DIR"/}
case_begin "19.7 gzip of newlines vs igzip (target ≤ 1.5)" "$(mb "$(bytes_of "$NL")") gz, $(mb "$NL_B") of newlines" "$NL_B"
case_cmd subject ualhunt "0 1" "$UH $NL"
[[ -n ${UALHUNT_ZLIB:-} ]] && case_cmd alt default-build "0 1" "$UZ $NL"
case_cmd peer igzip "0" "igzip -dc $NL >/dev/null"
case_run

# ---------------------------------------------------------------- report
count_lit() { # FILE in the data dir; rg -c prints nothing and exits 1 when there is no match
  local c
  c=$(rg -c -- "$LITERAL" "$DATA/$1") || c=0
  echo "$c"
}
if [[ $GEN == ualhunt ]]; then GEN_DESC="ualhunt generate"; else GEN_DESC="stand-in (Python, in scripts/bench.sh)"; fi
UVER=$("$UALHUNT" --version 2>/dev/null | sed -n 1p) || UVER=
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT=$DIR/results-$STAMP.md
{
  echo "## ualhunt benchmark ($STAMP)"
  echo
  echo "- machine: $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), nproc=$(nproc), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), $(uname -sr)"
  echo "- ualhunt: \`$UALHUNT\` ${UVER:+($UVER)}; all-cores rows use ualhunt's default thread count"
  echo "- peers: $(rg --version | sed -n 1p), igzip $(igzip --version 2>&1 | awk 'NR == 1 { print $NF }'), $(jq --version), zcat = $(gzip --version | sed -n 1p)"
  echo "- data: generator = $GEN_DESC, BENCH_SIZE=$SIZE, seed $SEED, rate $RATE; worst case $WORST_SIZE at rate 1; gzip files made with \`$GZIP_DESC\`; dir \`$DATA\`"
  echo "- method: $RUNS timed runs per command, alternated A,B,A,B… within a case after one untimed warm-up run each, page cache warm; median and min–max wall time"
  echo "- MB = 10^6 bytes; MB/s = input bytes / median, using DEcompressed bytes for gzip inputs (igzip and zcat rows too)"
  echo "- ualhunt/peer = median of the ualhunt all-cores row / median of this row (≤ 1.00: ualhunt faster); on a --threads 1 row it is all-cores / 1-thread; \"(t1: x)\" = same ratio for ualhunt --threads 1"
  echo "- peak RSS: \`/usr/bin/time -f %M\`, one extra untimed run per ualhunt row"
  echo
  echo "| case | command | input | median s | min–max s | MB/s | ualhunt/peer | ualhunt peak RSS |"
  echo "|---|---|---|---:|---:|---:|---|---:|"
  printf '%s\n' "${ROWS[@]}"
  echo
  echo "Literal occurrences (\`rg -c\`): $P $(count_lit "$P"), $S $(count_lit "$S"), $W $(count_lit "$W")."
  if ((${#RULE_STATS[@]})); then
    echo
    echo "### Per rule: candidates per GB (records its literals gave, evaluated), matched, events"
    echo
    printf '%s\n' "${RULE_STATS[@]}"
  fi
} >"$REPORT"

if [[ ${BENCH_HYPERFINE:-0} == 1 ]]; then
  have hyperfine || die "hyperfine is missing"
  {
    echo
    echo "### hyperfine (each command's runs in one block, for display)"
    for k in "${!HF_CASES[@]}"; do
      eval "${HF_CASES[k]}" >&2
      echo
      cat -- "$TMP/hf-$k.md"
    done
  } >>"$REPORT"
fi

# The year-long case (the block index and the context pass that reads only what it
# needs), when its script is there.
YEAR=$ROOT/scripts/bench-year.sh
if [[ -f $YEAR ]]; then
  log "running scripts/bench-year.sh"
  {
    echo
    echo "### scripts/bench-year.sh"
    echo
    UALHUNT=$UALHUNT UALHUNT_ZLIB=${UALHUNT_ZLIB:-} BENCH_RUNS=$RUNS BENCH_DIR=$DIR \
      YEAR_SIZE=$YEAR_SIZE YEAR_DIR=$YEAR_DIR bash "$YEAR"
  } >>"$REPORT" || die "scripts/bench-year.sh failed"
fi

cp -f -- "$REPORT" "$DIR/results.md"
cat -- "$REPORT"
log "report saved to $REPORT (and $DIR/results.md)"
