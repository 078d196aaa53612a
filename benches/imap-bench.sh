#!/bin/bash
# IMAP benchmark: zolder's imapd against Dovecot 2.3 (Debian), same machine, same
# messages, same workload, measured in the same run.
#
#   benches/imap-bench.sh            (from the project root; root, Debian dovecot-imapd)
#
# What it does:
#   1. builds zolder (release), starts a private Dovecot with ../shared/interop/start-isp.sh
#      and fills user `bench` with MSGS messages (populate.sh, "small" mix); the same
#      files are copied into zolder's Maildir for its user `bench`.
#   2. drives both with benches/imap_bench.py at N = 1, 10, 50 concurrent clients
#      (login, SELECT, FETCH flags and headers of all, FETCH 20 bodies, APPEND, STORE,
#      SEARCH, UID EXPUNGE, IDLE) and prints ops/s, p50/p99 and the ratios.
#   3. memory per idle connection: (PSS of all server processes with 50 clients logged
#      in and idling − PSS with none) / 50, PSS from /proc/PID/smaps_rollup.
#   4. a big mailbox (BIG messages, default 50000): SELECT, FETCH 1:* FLAGS, UID SEARCH,
#      EXPUNGE of 1000, one client, both servers.
# Env: MSGS=2000 BIG=50000 ROUNDS=... KEEP=1 (keep the work folder) NS="1 10 50"
#      IMAP_BENCH_BIN=path (use that binary instead of building one)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MSGS=${MSGS:-2000}
BIG=${BIG:-50000}
DPORT=${DPORT:-24143}; ZPORT=${ZPORT:-24144}
imap_bench_init imap-bench "$DPORT" "bench big"
zolder_bin "${IMAP_BENCH_BIN:-}"

echo "== starting Dovecot, $MSGS messages for bench, $BIG for big" >&2
"$INTEROP/start-isp.sh" >/dev/null
RESET=1 "$INTEROP/populate.sh" bench "$MSGS" small >/dev/null
RESET=1 "$INTEROP/populate.sh" big "$BIG" small >/dev/null

echo "== starting zolder with the same messages" >&2
zolder_imap_config "$ZPORT" "bench big" $'[limits]\nmax_connections_per_ip = 200'
for u in bench big; do
  zolder_user_add "$u"
  copy_isp_maildir "$u"
done
zolder_serve "$WORK/z/zolder.toml" "$WORK/z/serve.log" "$ZPORT"
DPID=$(cat "$ISP_DIR/run/master.pid")

pss() { # total PSS (KiB) of a process and all its descendants
  local pids="$1" all="$1" next
  while [ -n "$pids" ]; do
    next=$(for p in $pids; do pgrep -P "$p" || true; done | tr '\n' ' ')
    all="$all $next"; pids=$(echo "$next" | xargs)
  done
  for p in $all; do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true; done |
    awk '{s += $1} END {print s + 0}'
}

drive() { python3 "$ROOT/benches/imap_bench.py" "$@"; }
# Warm up both (zolder indexes the copied Maildir on its first SELECT).
drive 127.0.0.1 "$ZPORT" bench $PW 1 1 >/dev/null
drive 127.0.0.1 "$DPORT" bench $PW 1 1 >/dev/null

printf '\n%-8s %-8s %10s %9s %9s\n' server clients "ops/s" "p50 ms" "p99 ms"
declare -A R
for n in ${NS:-1 10 50}; do
  rounds=${ROUNDS:-$(( n == 1 ? 10 : (n == 10 ? 3 : 2) ))}
  for s in zolder dovecot; do
    port=$ZPORT; [ $s = dovecot ] && port=$DPORT
    j=$(drive 127.0.0.1 "$port" bench $PW "$n" "$rounds" | tail -1)
    ops=$(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.1f %.2f %.2f" % (d["ops_per_s"], d["p50_ms"], d["p99_ms"]))')
    R[$s$n]=$ops
    printf '%-8s %-8s %10s %9s %9s\n' $s $n $ops
    echo "$j" > "$WORK/$s-$n.json"
  done
  read -r zo zp50 zp99 <<<"${R[zolder$n]}"; read -r do dp50 dp99 <<<"${R[dovecot$n]}"
  python3 -c "print('ratio    %-8s %10.2f %9.2f %9.2f   (zolder/dovecot; ops/s higher is better, latency lower)' % ($n, $zo/$do, $zp50/$dp50, $zp99/$dp99))"
  # Per operation p50 (ms), to see where the time goes.
  python3 - "$WORK/zolder-$n.json" "$WORK/dovecot-$n.json" <<'PY'
import json, sys
z, d = (json.load(open(f))["per_op"] for f in sys.argv[1:3])
print("  p50 ms  " + "  ".join("%s %.1f/%.1f" % (k, z[k]["p50_ms"], d[k]["p50_ms"]) for k in z if k in d)
      + "   (zolder/dovecot)")
PY
done

echo
echo "== memory per idle connection (50 clients, IDLE)"
for s in zolder dovecot; do
  port=$ZPORT; pid=$ZPID; [ $s = dovecot ] && { port=$DPORT; pid=$DPID; }
  sleep 1; base=$(pss "$pid")
  fifo=$WORK/idle-$s; mkfifo "$fifo"
  drive --idle 127.0.0.1 "$port" bench $PW 50 8 >"$fifo" &
  ipid=$!
  read -r _ <"$fifo"; sleep 2
  busy=$(pss "$pid")
  wait $ipid || true
  per=$(( (busy - base) / 50 ))
  printf '%-8s base %8d KiB, 50 idle %8d KiB, per connection %6d KiB\n' $s "$base" "$busy" "$per"
  eval "MEM_$s=$per"
done
python3 -c "print('ratio    memory per idle connection zolder/dovecot = %.3f' % ($MEM_zolder / max($MEM_dovecot, 1)))"

echo
echo "== big mailbox ($BIG messages), one client"
for s in zolder dovecot; do
  port=$ZPORT; [ $s = dovecot ] && port=$DPORT
  # First SELECT indexes (zolder) / warms (dovecot); the second is measured.
  drive --big 127.0.0.1 "$port" big $PW >/dev/null
  printf '%-8s %s\n' $s "$(drive --big 127.0.0.1 "$port" big $PW)"
done
