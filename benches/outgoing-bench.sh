#!/bin/bash
# outgoing-bench.sh -- zolder against Postfix doing the same job, in the same run:
#   accept: N mixed messages (gen_messages.py, seed 42) pushed by CLIENTS parallel SMTP
#           clients (smtp_push.py, one persistent connection each) into submission;
#           each 250 only after the message is durable (fsync + commit), group commit.
#   relay:  `zolder flush` of the whole queue to Postfix's smtp-sink (one connection),
#           timed until the sink has counted all N.
# Postfix: ../shared/interop/postfix-reference/run.sh (private instance, defer_transports,
# postqueue -f to the same smtp-sink). Prints msg/s for both and the ratios.
#
#   benches/outgoing-bench.sh               # N=5000 CLIENTS=4
#   N=1000 benches/outgoing-bench.sh        # quicker
# Needs: postfix, smtp-sink (postfix), jq, bc, iproute2, python3; run as root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
PFREF=$INTEROP/postfix-reference
export N=${N:-5000} CLIENTS=${CLIENTS:-4}
export PF_DIR=${PF_DIR:-/tmp/zolder-bench-pf} PF_PORT=${PF_PORT:-24587} SINK_PORT=${SINK_PORT:-24525}
ZPORT=${ZPORT:-24588}
PY=/usr/bin/python3
for p in postfix smtp-sink jq bc ss; do command -v $p >/dev/null || { echo "skipped: $p not installed"; exit 0; }; done
ZOLDER=${ZOLDER:-$ROOT/target/release/zolder}
[ -x "$ZOLDER" ] || (cd "$ROOT" && cargo build --release)
now() { cut -d' ' -f1 /proc/uptime; }

# 1. Postfix (also generates the messages under $PF_DIR/msgs/wire).
mkdir -p "$PF_DIR"; RESULTS=$PF_DIR/results-$$.tsv
"$PFREF/start.sh"
RUNS=1 SINK_ALONE=0 RESULTS=$RESULTS "$PFREF/run.sh"
PF_ACCEPT=$(awk -F'\t' '$2=="accept"{v=$8} END{print v}' "$RESULTS")
PF_RELAY=$(awk -F'\t' '$2=="relay"{v=$8} END{print v}' "$RESULTS")
"$PFREF/stop.sh" || true
WIRE=$PF_DIR/msgs/wire

# 2. zolder, same messages, same sink.
W=$(mktemp -d /tmp/zolder-bench.XXXXXX)
DPID=
trap '[ -n "$DPID" ] && kill $DPID 2>/dev/null; "$PFREF/sink.sh" stop >/dev/null 2>&1 || true' EXIT
cat > "$W/zolder.toml" <<CFG
hostname = "zolder.bench"
data_dir = "data"
allow_root = true
local_domains = ["zolder.bench"]
lan_networks = ["127.0.0.0/8"]
[listen]
submission = "127.0.0.1:$ZPORT"
[limits]
message_size = 52428800
[smarthost]
host = "127.0.0.1"
port = $SINK_PORT
tls = "none"
schedule = "manual"
CFG
"$PFREF/sink.sh" start
Z=$ZOLDER; zolder_serve "$W/zolder.toml" "$W/daemon.log" "$ZPORT"; DPID=$ZPID
sync; sleep 2
log "zolder: acceptance, $CLIENTS clients -> 127.0.0.1:$ZPORT"
J=$($PY "$PFREF/smtp_push.py" --port "$ZPORT" --clients "$CLIENTS" --dir "$WIRE")
Z_ACCEPT=$(jq -r .msg_per_s <<<"$J")
log "zolder: acceptance: $J"
QUEUED=$("$ZOLDER" --config "$W/zolder.toml" queue list | tail -1)
log "zolder: queue after acceptance: $QUEUED"
sync; sleep 2
c0=$("$PFREF/sink.sh" count)
log "zolder: relay, zolder flush"
t0=$(now)
"$ZOLDER" --config "$W/zolder.toml" flush > "$W/flush.out" || true
while [ $(( $("$PFREF/sink.sh" count) - c0 )) -lt "$N" ]; do
  [ "$(echo "$(now) - $t0 > 900" | bc)" = 1 ] && { log "relay timeout"; break; }
  sleep 0.05
done
t1=$(now)
SEC=$(echo "$t1 - $t0" | bc -l)
GOT=$(( $("$PFREF/sink.sh" count) - c0 ))
Z_RELAY=$(echo "$GOT / $SEC" | bc -l | xargs printf %.1f)
log "zolder: relay: $(printf %.2f "$SEC") s, sink got $GOT, flush said: $(cat "$W/flush.out")"
LEFT=$("$ZOLDER" --config "$W/zolder.toml" queue list | tail -1)
kill "$DPID"; wait "$DPID" 2>/dev/null || true; DPID=

ratio() { echo "$1 / $2" | bc -l | xargs printf %.2f; }
echo
echo "outgoing benchmark, N=$N mixed messages ($(du -sh "$WIRE" | cut -f1)), $CLIENTS clients, $(nproc) cores"
printf '%-8s %12s %12s\n' "" "accept/s" "relay/s"
printf '%-8s %12s %12s\n' "postfix" "$PF_ACCEPT" "$PF_RELAY"
printf '%-8s %12s %12s\n' "zolder" "$Z_ACCEPT" "$Z_RELAY"
printf '%-8s %12s %12s\n' "ratio" "$(ratio "$Z_ACCEPT" "$PF_ACCEPT")" "$(ratio "$Z_RELAY" "$PF_RELAY")"
echo "zolder queue after flush: $LEFT"
rm -rf "$W"
