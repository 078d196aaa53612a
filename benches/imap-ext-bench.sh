#!/bin/bash
# IMAP extension benchmark: SORT/THREAD latency and COMPRESS=DEFLATE savings, zolder
# against Dovecot 2.3 (Debian), same machine, same messages, measured in the same run.
#
#   flock /work/wt/bench.lock benches/imap-ext-bench.sh    (project root; root; dovecot-imapd)
#
# Fills a private Dovecot's user `bench` with MSGS messages (../shared/interop populate.sh,
# "small" mix), copies the same files into zolder's Maildir, then runs
# benches/imap_ext_bench.py against both and prints the medians and the ratios.
# Dovecot's COMPRESS needs its imap_zlib plugin, which the test ISP does not load, so
# the compressed byte count is zolder's only (against the plain count of both).
# Env: MSGS=5000 ROUNDS=5 IMAP_BENCH_BIN=path (use that binary) KEEP=1
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MSGS=${MSGS:-5000}
ROUNDS=${ROUNDS:-5}
DPORT=${DPORT:-25143}; ZPORT=${ZPORT:-25144}
imap_bench_init imap-ext-bench "$DPORT" "bench"
zolder_bin "${IMAP_BENCH_BIN:-}"

echo "== starting Dovecot with $MSGS messages" >&2
"$INTEROP/start-isp.sh" >/dev/null
RESET=1 "$INTEROP/populate.sh" bench "$MSGS" small >/dev/null

echo "== starting zolder with the same messages" >&2
zolder_imap_config "$ZPORT" "bench"
zolder_user_add bench
copy_isp_maildir bench
zolder_serve "$WORK/z/zolder.toml" "$WORK/z/serve.log" "$ZPORT"

declare -A J
for s in zolder dovecot; do
  port=$ZPORT; [ $s = dovecot ] && port=$DPORT
  mode=""; [ $s = dovecot ] && mode=plain # no COMPRESS at the test ISP
  J[$s]=$(python3 "$ROOT/benches/imap_ext_bench.py" 127.0.0.1 "$port" bench "$PW" "$ROUNDS" $mode)
  echo "$s ${J[$s]}"
done
python3 - "${J[zolder]}" "${J[dovecot]}" "$MSGS" <<'PY'
import json, sys
z, d, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"\n== {n} messages, median ms per command (ratio = zolder/dovecot, lower is better)")
for k in ("sort_date_ms", "sort_subject_ms", "sort_from_ms", "thread_references_ms", "thread_orderedsubject_ms"):
    print(f"{k[:-3]:24} zolder {z[k]:9.1f}  dovecot {d[k]:9.1f}  ratio {z[k] / max(d[k], 0.01):6.2f}")
print(f"FETCH 1:* (FLAGS BODY.PEEK[HEADER]) on the wire: plain {z['headers_plain_bytes']} B "
      f"(dovecot {d['headers_plain_bytes']} B), zolder COMPRESS=DEFLATE {z['headers_deflate_bytes']} B "
      f"({z['headers_deflate_bytes'] / z['headers_plain_bytes']:.2f} of plain, {z['headers_deflate_ms']} ms)")
PY
