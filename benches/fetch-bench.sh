#!/bin/bash
# fetch-bench.sh: zolder's fetch throughput against fetchmail 6.4 measured in the same
# run on the same Dovecot ISP and the same messages (populate.sh … mixed), for POP3 and
# IMAP, keep and delete; plus the re-poll time with nothing new (median of REPOLLS
# runs each, zolder and fetchmail started alike through setpriv), and this machine's
# floor (proto-floor.py: read the protocol and discard; disk-limits.py: write + fsync
# per file and group commit). Prints msgs/s, MB/s, peak RSS and the ratios.
#
#   benches/fetch-bench.sh                    # N=10000 (the issue's benchmark)
#   N=2000 benches/fetch-bench.sh             # a quicker run
#   CASES="pop3-keep imap-delete" N=2000 benches/fetch-bench.sh
#   NO_FETCHMAIL=1 …                          # zolder and the floor only
#
# zolder delivers through its real pipeline (spool: tmp, fsync, rename, dir fsync,
# SQLite commit per batch); fetchmail delivers through fetchmail-reference.sh's
# fsyncing MDA. Needs root, Dovecot, fetchmail, gcc, GNU time and ../shared/interop.
# Not a test: nothing is asserted; figures go to stdout and $ISP_DIR/results/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SHARED=${ZOLDER_INTEROP_DIR:-$ROOT/../shared/interop}
N=${N:-10000}
MIX=${MIX:-mixed}
CASES=${CASES:-pop3-keep pop3-delete imap-keep imap-delete}
for p in /usr/sbin/dovecot /usr/bin/time "$SHARED/start-isp.sh"; do
  [ -e "$p" ] || { echo "skipped: $p not found" >&2; exit 0; }
done
[ "$(id -u)" = 0 ] || { echo "skipped: needs root" >&2; exit 0; }
zolder_bin "${ZOLDER_BIN:-}" quiet
ZBIN=$Z
zolder() { env -u ZOLDER_BIN -u ZOLDER_INTEROP -u ZOLDER_INTEROP_DIR "$ZBIN" "$@"; }

export ISP_DIR=${ISP_DIR:-$(mktemp -d /tmp/zolder-bench.XXXXXX)}
chmod 755 "$ISP_DIR"
export ISP_POP3_PORT=${ISP_POP3_PORT:-22110} ISP_IMAP_PORT=${ISP_IMAP_PORT:-22143}
"$SHARED/start-isp.sh" > /dev/null 2> "$ISP_DIR/start.log" < /dev/null
trap '"$SHARED/stop-isp.sh" > /dev/null 2>&1 || true' EXIT
RES=$ISP_DIR/results; mkdir -p "$RES"
export RESULTS=$RES/reference.tsv

# repoll_ms CMD… → the median wall time in ms of REPOLLS runs (default 15) of a
# re-poll that finds nothing new (GNU time's 10 ms steps are too coarse for it).
REPOLLS=${REPOLLS:-15}
repoll_ms() {
  local i s e
  for i in $(seq "$REPOLLS"); do
    s=$(date +%s%N); "$@" > /dev/null 2>&1 || true; e=$(date +%s%N)
    echo $(( (e - s) / 1000 ))
  done | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

# timed LABEL CMD… → WALL RSS (from GNU time)
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$RES/time.$label" "$@" > "$RES/out.$label" 2> "$RES/err.$label" || true
  read -r WALL RSS < "$RES/time.$label"
}

declare -A ZMPS ZMBPS ZRSS ZIDLE FMPS FRSS FIDLE
for c in $CASES; do
  proto=${c%-*}; mode=${c#*-}; keep=false; [ "$mode" = keep ] && keep=true
  user="zb-$c-$N"
  log "populate $user ($N $MIX)"
  RESET=1 "$SHARED/populate.sh" "$user" "$N" "$MIX" > /dev/null
  sync
  mb=$(awk -F'\t' '{s+=$3} END {printf "%.1f", s/1e6}' "$ISP_DIR/manifests/$user.tsv")
  W=$ISP_DIR/z-$c; rm -rf "$W"; mkdir -p "$W"
  if [ "$proto" = pop3 ]; then port=$ISP_POP3_PORT; else port=$ISP_IMAP_PORT; fi
  echo secret > "$W/pw"; chmod 600 "$W/pw"
  cat > "$W/zolder.toml" <<TOML
hostname = "zolder.test"
data_dir = "data"
postmaster = "bouke"
[[users]]
name = "bouke"
[[accounts]]
name = "isp"
protocol = "$proto"
host = "127.0.0.1"
port = $port
tls = "none"
username = "$user"
password_file = "pw"
deliver_to = ["bouke"]
keep = $keep
TOML
  log "zolder $c N=$N ($mb MB)"
  timed "zolder-$c" env -u ZOLDER_BIN -u ZOLDER_INTEROP -u ZOLDER_INTEROP_DIR "$ZBIN" -c "$W/zolder.toml" fetch
  v=$(python3 "$SHARED/verify-maildir.py" "$W/data/mail/bouke/Maildir" "$N" --manifest "$ISP_DIR/manifests/$user.tsv" | tail -1 | sed 's/.*-> //')
  ZMPS[$c]=$(awk -v n="$N" -v w="$WALL" 'BEGIN{printf "%.0f", n/w}')
  ZMBPS[$c]=$(awk -v m="$mb" -v w="$WALL" 'BEGIN{printf "%.1f", m/w}')
  ZRSS[$c]=$RSS
  log "  zolder: ${WALL}s ${ZMPS[$c]} msg/s ${ZMBPS[$c]} MB/s rss ${RSS} KB verify=$v"
  if [ "$keep" = true ]; then
    sync
    # Started the way fetchmail is (setpriv + env), so both pay the same exec overhead.
    ZIDLE[$c]=$(repoll_ms setpriv --reuid=0 --regid=0 --clear-groups env -u ZOLDER_BIN -u ZOLDER_INTEROP \
      -u ZOLDER_INTEROP_DIR "$ZBIN" -c "$W/zolder.toml" fetch)
  fi
  if [ -z "${NO_FETCHMAIL:-}" ]; then
    fm="fm-$proto-$([ "$keep" = true ] && echo keep || echo nokeep)"
    log "fetchmail $fm N=$N"
    before=$( { wc -l < "$RESULTS"; } 2>/dev/null || echo 0)
    # No `idle` argument: its one re-poll would be discarded; repoll_ms below measures it.
    "$SHARED/fetchmail-reference.sh" case "$fm" "$N" > /dev/null 2>&1 || true
    row=$(tail -n +"$((before + 1))" "$RESULTS" | awk -F'\t' '$2=="fetch"' | tail -1)
    FMPS[$c]=$(echo "$row" | cut -f9); FRSS[$c]=$(echo "$row" | cut -f11)
    FR=$ISP_DIR/runs/$fm-$N
    if [ "$keep" = true ] && [ -f "$FR/home/fetchmailrc" ]; then
      FIDLE[$c]=$(repoll_ms setpriv --reuid="$(stat -c %u "$FR/home")" --regid="$(stat -c %g "$FR/home")" \
        --clear-groups env HOME="$FR/home" FETCHMAILHOME="$FR/home" fetchmail -s --nodetach -f "$FR/home/fetchmailrc")
    fi
  fi
done

# The floor: the protocol alone, and the disk alone, on the same messages.
fuser="zb-floor-$N"
RESET=1 "$SHARED/populate.sh" "$fuser" "$N" "$MIX" > /dev/null
PF3=$(python3 "$SHARED/proto-floor.py" pop3 "$fuser" --port "$ISP_POP3_PORT" | sed 's/.*msg_per_s=\([0-9]*\).*/\1/')
PFI=$(python3 "$SHARED/proto-floor.py" imap "$fuser" --port "$ISP_IMAP_PORT" | sed 's/.*msg_per_s=\([0-9]*\).*/\1/')
python3 "$SHARED/disk-limits.py" "$ISP_DIR/mail/$fuser/cur" "$ISP_DIR/disk" --only py-fsync,py-batch100 > "$RES/disk.tsv" 2>&1 || true
DF=$(awk -F'\t' '$1=="py-fsync" {print $5}' "$RES/disk.tsv")
DB=$(awk -F'\t' '$1=="py-batch100" {print $5}' "$RES/disk.tsv")

echo
echo "fetch benchmark: N=$N $MIX messages, $(nproc) cores; floor: POP3 read ${PF3} msg/s, IMAP read ${PFI} msg/s, disk write+fsync/file ${DF} msg/s, group commit/100 ${DB} msg/s"
# Two floors, each the slower of the protocol alone and the disk alone: %floor with the
# disk writing and fsyncing file by file (the issue's floor), %gc_floor with the disk
# fsyncing 100 files per group commit (stricter: what batching could reach at best).
printf '%-12s %10s %8s %8s %12s %8s %9s %7s %9s %10s %10s\n' case zolder/s MB/s rss_MB fetchmail/s ratio fm_rss_MB %floor %gc_floor repoll_ms fm_repoll
pct_of() { awk -v z="$1" -v f="$2" 'BEGIN{ if (f>0) printf "%.0f%%", 100*z/f; else print "-" }'; }
for c in $CASES; do
  proto=${c%-*}
  pfloor=$PF3; [ "$proto" = imap ] && pfloor=$PFI
  floor=$pfloor; [ -n "$DF" ] && [ "$DF" -lt "$floor" ] && floor=$DF
  gfloor=$pfloor; [ -n "$DB" ] && [ "$DB" -lt "$gfloor" ] && gfloor=$DB
  ratio=$(awk -v z="${ZMPS[$c]}" -v f="${FMPS[$c]:-0}" 'BEGIN{ if (f>0) printf "%.1fx", z/f; else print "-" }')
  pct=$(pct_of "${ZMPS[$c]}" "$floor"); gpct=$(pct_of "${ZMPS[$c]}" "$gfloor")
  printf '%-12s %10s %8s %8s %12s %8s %9s %7s %9s %10s %10s\n' "$c" "${ZMPS[$c]}" "${ZMBPS[$c]}" \
    "$(awk -v k="${ZRSS[$c]}" 'BEGIN{printf "%.0f", k/1024}')" "${FMPS[$c]:--}" "$ratio" \
    "$(awk -v k="${FRSS[$c]:-0}" 'BEGIN{printf "%.0f", k/1024}')" "$pct" "$gpct" "${ZIDLE[$c]:--}" "${FIDLE[$c]:--}"
done
echo "raw: $RES"
