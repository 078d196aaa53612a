#!/bin/bash
# Big-mailbox benchmark: zolder's imapd against Dovecot 2.3 on one mailbox of BIG
# messages (default 50 000), measured in the same run.
#
#   benches/imap-big.sh              (from the project root; root, Debian dovecot-imapd)
#
# What it does:
#   1. builds zolder (release), starts a private Dovecot with ../shared/interop/start-isp.sh
#      and fills user `big` with BIG messages (populate.sh, "small" mix, Maildir);
#   2. makes zolder's mailbox from that same Maildir with `zolder import-mail big DIR`
#      (how a household moves over from Dovecot);
#   3. per server: one warm-up pass (caches, Dovecot's index), then one client times
#      SELECT, FETCH 1:* (FLAGS), UID SEARCH UNSEEN / SINCE / FROM, FETCH of the last
#      100 headers (median of 3 each) and EXPUNGE of 1 000 messages (once), and the
#      script prints both and the ratios (zolder/dovecot time: below 1 is faster).
# Env: BIG=50000 KEEP=1 (keep the work folder) IMAP_BENCH_BIN=path (skip the build)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BIG=${BIG:-50000}
DPORT=${DPORT:-24243}; ZPORT=${ZPORT:-24244}
imap_bench_init imap-big "$DPORT" "big"
zolder_bin "${IMAP_BENCH_BIN:-}"

echo "== starting Dovecot, $BIG messages for big" >&2
"$INTEROP/start-isp.sh" >/dev/null
t0=$(date +%s.%N)
RESET=1 "$INTEROP/populate.sh" big "$BIG" small >/dev/null
echo "   populated in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2

echo "== zolder import-mail of the same Maildir" >&2
zolder_imap_config "$ZPORT" "big"
zolder_user_add big
t0=$(date +%s.%N)
"$Z" --config "$WORK/z/zolder.toml" import-mail big "$ISP_DIR/mail/big" >&2
echo "   imported in $(echo "$(date +%s.%N) - $t0" | bc) s" >&2
zolder_serve "$WORK/z/zolder.toml" "$WORK/z/serve.log" "$ZPORT"
# A Maildir changed less than a second ago is listed again at every SELECT (a change
# in the same clock tick could hide behind an unchanged directory time); measure the
# steady state, as Dovecot's index was built by populate.sh above.
sleep 2

drive() { python3 "$ROOT/benches/imap_bench.py" "$@"; }
echo
echo "== big mailbox ($BIG messages), one client, milliseconds"
for s in zolder dovecot; do
  port=$ZPORT; [ $s = dovecot ] && port=$DPORT
  drive --big-warm 127.0.0.1 "$port" big $PW >/dev/null
  drive --big 127.0.0.1 "$port" big $PW > "$WORK/$s.json"
done
python3 - "$WORK/zolder.json" "$WORK/dovecot.json" <<'PY'
import json, sys
z, d = (json.load(open(f)) for f in sys.argv[1:3])
print("%-22s %10s %10s %8s" % ("operation", "zolder", "dovecot", "ratio"))
for k in z:
    if k == "exists":
        print("%-22s %10d %10d" % (k, z[k], d[k]))
        continue
    print("%-22s %10.1f %10.1f %8.2f" % (k[:-3], z[k], d[k], z[k] / max(d[k], 1e-6)))
print("(ratio = zolder time / dovecot time: below 1 means zolder is faster)")
PY
