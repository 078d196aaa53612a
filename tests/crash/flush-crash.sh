#!/bin/bash
# flush-crash.sh -- SIGKILL the daemon at random moments during a flush, restart, repeat.
#
# Promise checked (design.md rule 3): nothing queued is lost; a crash may re-send only
# the message that was in flight at the kill. N messages (unique Subject each) are
# queued over SMTP, then ROUNDS times: start `zolder serve`, start `zolder flush`,
# kill -9 the daemon after a random delay. Finally a clean start + flush, and the
# recording smarthost (../shared/interop/smarthost.py) must hold every message at
# least once, with at most one duplicate per kill, and the queue must be empty.
#
#   tests/crash/flush-crash.sh                  # N=1000 ROUNDS=20
#   N=200 ROUNDS=5 tests/crash/flush-crash.sh   # the short CI form
# Env: ZOLDER=path/to/zolder (default target/release/zolder, else target/debug/zolder)
#      SINK=smtp-sink: Postfix's smtp-sink (with -d, one file per message) as the smarthost
#      instead of smarthost.py; it offers PIPELINING, so the kills hit the pipelined
#      relay path (data + dot + next envelope in one write)
#      KILL_MAX=0.08: the kill comes 0.02 + rand*KILL_MAX s after the flush starts (short
#      enough that every round kills a relay in progress at >1000 msg/s)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
INTEROP=${INTEROP:-$ROOT/../shared/interop}; [ -d "$INTEROP" ] || INTEROP=/work/shared/interop
N=${N:-1000}; ROUNDS=${ROUNDS:-20}; KILL_MAX=${KILL_MAX:-0.08}
ZOLDER=${ZOLDER:-}
if [ -z "$ZOLDER" ]; then
  if [ -x "$ROOT/target/release/zolder" ]; then ZOLDER=$ROOT/target/release/zolder; else ZOLDER=$ROOT/target/debug/zolder; fi
fi
PY=/usr/bin/python3
$PY -c 'import aiosmtpd' 2>/dev/null || { echo "skipped: python3-aiosmtpd not installed"; exit 0; }
[ -x "$ZOLDER" ] || { echo "build zolder first (cargo build)"; exit 2; }

W=$(mktemp -d /tmp/zolder-crash.XXXXXX)
DPID=; SPID=
cleanup() { [ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null; [ -n "$SPID" ] && kill "$SPID" 2>/dev/null; true; }
trap cleanup EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

SUFFIX=.eml
if [ "${SINK:-}" = smtp-sink ]; then
  command -v smtp-sink >/dev/null || { echo "skipped: smtp-sink not installed"; exit 0; }
  SINK_PORT=$(( 20000 + RANDOM % 20000 )); SUFFIX=
  mkdir -p "$W/sink"; chown postfix "$W/sink"; chmod 755 "$W"
  smtp-sink -u postfix -d "$W/sink/%H%M%S." "127.0.0.1:$SINK_PORT" 64 > "$W/sink.log" 2>&1 &
  SPID=$!
  for _ in $(seq 50); do ss -ltn "sport = :$SINK_PORT" | grep -q LISTEN && break; sleep 0.1; done
else
  $PY "$INTEROP/smarthost.py" --port 0 --portfile "$W/sink.port" --dir "$W/sink" > "$W/sink.log" 2>&1 &
  SPID=$!
  for _ in $(seq 50); do [ -s "$W/sink.port" ] && break; sleep 0.1; done
  SINK_PORT=$(cat "$W/sink.port")
fi
SMTP_PORT=$(( 20000 + RANDOM % 20000 ))
cat > "$W/zolder.toml" <<CFG
hostname = "zolder.test"
data_dir = "data"
allow_root = true
local_domains = ["zolder.test"]
lan_networks = ["127.0.0.1/32"]
[listen]
submission = "127.0.0.1:$SMTP_PORT"
[smarthost]
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"
schedule = "manual"
timeout = 30
CFG
Z() { "$ZOLDER" --config "$W/zolder.toml" "$@"; }
start() {
  "$ZOLDER" --config "$W/zolder.toml" serve >> "$W/daemon.log" 2>&1 &
  DPID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$SMTP_PORT") 2>/dev/null && return 0; sleep 0.05; done
  log "daemon did not start"; cat "$W/daemon.log" >&2; exit 1
}

# 1. Queue N messages (the smarthost is only used on flush).
start
$PY - "$SMTP_PORT" "$N" <<'PY'
import smtplib, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
for i in range(n):
    # Lines stay under SMTP's 998 limit (a longer one is a permanent 500 at the sink).
    body = "From: bouke@zolder.test\r\nTo: friend@remote.example\r\nSubject: crash-%05d\r\n\r\n%s" % (i, ("x" * 70 + "\r\n") * (3 + i % 40))
    s.sendmail("bouke@zolder.test", ["friend@remote.example"], body)
s.quit()
PY
log "queued $N messages"
kill -9 "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=

# 2. Kill during flushes.
for r in $(seq "$ROUNDS"); do
  start
  Z flush > /dev/null 2>&1 &
  FPID=$!
  sleep "$(awk -v s=$RANDOM -v m="$KILL_MAX" 'BEGIN{srand(s); printf "%.3f", 0.02 + rand()*m}')"
  kill -9 "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=
  wait "$FPID" 2>/dev/null || true
  got=$(ls "$W/sink" | grep -c "$SUFFIX\$" || true)
  log "round $r: killed; smarthost holds $got files"
done

# 3. Clean run to the end.
start
Z flush || true
Z queue list > "$W/queue.txt"
kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=

# 4. Verify.
$PY - "$W/sink" "$N" "$ROUNDS" "$W/queue.txt" "$SUFFIX" <<'PY'
import os, re, sys, collections
d, n, rounds, qf, suffix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
seen = collections.Counter()
for f in os.listdir(d):
    if f.endswith(suffix):
        m = re.search(rb"^Subject: (crash-\d+)", open(os.path.join(d, f), "rb").read(), re.M)
        if m:
            seen[m.group(1).decode()] += 1
missing = [i for i in range(n) if seen["crash-%05d" % i] == 0]
dups = sum(c - 1 for c in seen.values() if c > 1)
queue_empty = "Mail queue is empty" in open(qf).read()
print("messages=%d delivered_unique=%d missing=%d duplicates=%d kills=%d queue_empty=%s"
      % (n, len(seen), len(missing), dups, rounds, queue_empty))
ok = not missing and dups <= rounds and queue_empty
print("PASS" if ok else "FAIL: missing %s" % missing[:10])
sys.exit(0 if ok else 1)
PY
rm -rf "$W"
