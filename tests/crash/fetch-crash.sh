#!/bin/bash
# fetch-crash.sh: `zolder fetch` from the Dovecot ISP killed with SIGKILL at random
# moments, then run again to completion; verify-maildir.py must find every message
# exactly once (0 lost, 0 duplicated, 0 truncated), and with delete the ISP mailbox must
# end empty, with keep it must still hold everything.
#
#   tests/crash/fetch-crash.sh            # short form (CI): 300 messages, 3 rounds per combination
#   FULL=1 tests/crash/fetch-crash.sh     # 2 000 messages, 20 rounds per combination
#   N=500 KILLS=5 COMBOS="imap-delete" tests/crash/fetch-crash.sh
#   DROP=1 ...                            # kill the ISP connection (ss -K) instead of zolder
#
# Needs root, Dovecot (dovecot-imapd dovecot-pop3d) and ../shared/interop; skips otherwise
# (fails instead when ZOLDER_INTEROP=1). The kill moment is uniform over the length of
# one uninterrupted fetch measured first (KILL_WINDOW, seconds, overrides it); rounds go
# on until KILLS kills landed while the fetch ran (at most 3 × KILLS rounds).
# ZOLDER_BIN picks the binary (default: cargo build --release, then target/release/zolder).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SHARED=${ZOLDER_INTEROP_DIR:-$ROOT/../shared/interop}
if [ -n "${FULL:-}" ]; then N=${N:-2000}; KILLS=${KILLS:-20}; else N=${N:-300}; KILLS=${KILLS:-3}; fi
COMBOS=${COMBOS:-pop3-keep pop3-delete imap-keep imap-delete}
MIX=${MIX:-mixed}

skip() {
  if [ -n "${ZOLDER_INTEROP:-}" ]; then echo "FAIL: $*" >&2; exit 1; fi
  echo "skipped: $*"; exit 0
}
[ -x /usr/sbin/dovecot ] || skip "dovecot not installed"
[ "$(id -u)" = 0 ] || skip "needs root (dovecot as the ISP)"
[ -x "$SHARED/start-isp.sh" ] || skip "$SHARED/start-isp.sh not found (set ZOLDER_INTEROP_DIR)"

if [ -z "${ZOLDER_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release --quiet)
  ZOLDER_BIN=$ROOT/target/release/zolder
fi
ZBIN=$ZOLDER_BIN
# ZOLDER_* variables are config keys to zolder (figment): keep ours out of its way.
zolder() { env -u ZOLDER_BIN -u ZOLDER_INTEROP -u ZOLDER_INTEROP_DIR "$ZBIN" "$@"; }

export ISP_DIR
ISP_DIR=$(mktemp -d /tmp/zolder-crash.XXXXXX); chmod 755 "$ISP_DIR"
export ISP_POP3_PORT=$((20000 + RANDOM % 20000)) ISP_IMAP_PORT=$((20000 + RANDOM % 20000))
"$SHARED/start-isp.sh" > /dev/null 2> "$ISP_DIR/start.log" < /dev/null
cleanup() { "$SHARED/stop-isp.sh" > /dev/null 2>&1 || true; [ -n "${KEEP_DIR:-}" ] || rm -rf "$ISP_DIR"; }
trap cleanup EXIT

server_count() {
  doveadm -c "$ISP_DIR/dovecot.conf" -f flow mailbox status -u "$1" messages INBOX | sed 's/.*messages=//'
}
delivered() { { find "$1/data/mail/bouke/Maildir/new" "$1/data/mail/bouke/Maildir/cur" -maxdepth 1 -type f 2>/dev/null || true; } | wc -l; }

now() { date +%s.%N; }
failures=0
for combo in $COMBOS; do
  proto=${combo%-*}; mode=${combo#*-}
  user="crash-$combo"
  W="$ISP_DIR/z-$combo"; mkdir -p "$W"
  if [ "$proto" = pop3 ]; then port=$ISP_POP3_PORT; else port=$ISP_IMAP_PORT; fi
  keep=false; [ "$mode" = keep ] && keep=true
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
  # Calibration: one uninterrupted fetch of a fresh mailbox; its length is the window
  # the kill moments are drawn from (uniformly), so they land inside a fetch.
  RESET=1 "$SHARED/populate.sh" "$user" "$N" "$MIX" > /dev/null
  rm -rf "$W/data"
  t0=$(now); zolder -c "$W/zolder.toml" fetch > "$W/out.calibrate" 2>&1 || true; t1=$(now)
  window=${KILL_WINDOW:-$(python3 -c "print(max(0.05, round(($t1 - $t0) * 0.9, 3)))")}
  # Each round: a fresh N-message mailbox and a fresh zolder, one fetch killed at a
  # random moment, then run again to completion and once more. A round whose fetch
  # ended before its moment came is counted but repeated, until KILLS kills landed
  # mid-fetch (at most 3 × KILLS rounds).
  ok_rounds=0; kills=0; rounds=0
  while [ "$kills" -lt "$KILLS" ] && [ "$rounds" -lt $((KILLS * 3)) ]; do
    rounds=$((rounds + 1)); round=$rounds
    RESET=1 "$SHARED/populate.sh" "$user" "$N" "$MIX" > /dev/null
    rm -rf "$W/data"
    delay=$(python3 -c "import random; print(round(random.uniform(0.02, $window), 3))")
    # Not through the zolder() function: `$!` would be a subshell, and SIGKILL would
    # leave zolder itself running beside the next run.
    env -u ZOLDER_BIN -u ZOLDER_INTEROP -u ZOLDER_INTEROP_DIR "$ZBIN" -c "$W/zolder.toml" fetch > "$W/out.killed" 2>&1 &
    pid=$!
    sleep "$delay"
    if kill -0 "$pid" 2>/dev/null; then
      if [ -n "${DROP:-}" ]; then
        # The ISP connection dropped mid-transfer instead of a crash. ss lists the
        # sockets it closed; a drop counts only if there was one (zolder may be between
        # connecting and exiting).
        dropped=$(ss -H -K dst 127.0.0.1 dport = ":$port" 2>/dev/null | wc -l) || dropped=0
        [ "$dropped" -ge 1 ] && kills=$((kills + 1))
      else
        kill -9 "$pid" 2>/dev/null || true
        kills=$((kills + 1))
      fi
    fi
    wait "$pid" 2>/dev/null || true
    at=$(delivered "$W")
    rc=0; zolder -c "$W/zolder.toml" fetch > "$W/out.final" 2>&1 || rc=$?
    rc2=0; zolder -c "$W/zolder.toml" fetch > "$W/out.final2" 2>&1 || rc2=$?
    v=$(python3 "$SHARED/verify-maildir.py" "$W/data/mail/bouke/Maildir" "$N" --manifest "$ISP_DIR/manifests/$user.tsv" 2>&1 | tail -1) || true
    left=$(server_count "$user")
    want_left=0; [ "$mode" = keep ] && want_left=$N
    status=ok
    case "$v" in *"-> OK"*) ;; *) status=FAIL ;; esac
    [ "$left" = "$want_left" ] || status=FAIL
    [ "$rc" = 0 ] && [ "$rc2" = 0 ] || status=FAIL
    grep -q "^isp: 0 fetched" "$W/out.final2" || status=FAIL
    if [ "$status" = ok ]; then
      ok_rounds=$((ok_rounds + 1))
    else
      echo "  $combo round $round: FAIL — killed after ${delay}s with $at delivered; final rc=$rc/$rc2, ISP left $left (want $want_left); $v"
      cp -r "$W" "$ISP_DIR/failed-$combo-$round"
    fi
  done
  echo "$combo N=$N: $ok_rounds/$rounds rounds ok, $kills $([ -n "${DROP:-}" ] && echo "connection drops" || echo SIGKILLs) mid-fetch (window ${window}s)"
  [ "$ok_rounds" = "$rounds" ] || failures=$((failures + 1))
  if [ "$kills" -lt "$KILLS" ]; then
    echo "  $combo: only $kills of $KILLS kills landed mid-fetch"; failures=$((failures + 1))
  fi
done
[ "$failures" = 0 ] || { echo "fetch-crash: $failures combination(s) failed"; KEEP_DIR=1; exit 1; }
echo "fetch-crash: all combinations ok"
