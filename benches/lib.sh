# benches/lib.sh -- start-up shared by the bench scripts; sourced, not run:
#   . "$(dirname "$0")/lib.sh"
# Sets ROOT (the project root) and INTEROP (../shared/interop, or $INTEROP if set) and
# defines the helpers below. Nothing here prints to stdout, so each script's table is
# what it prints itself.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INTEROP=${INTEROP:-$ROOT/../shared/interop}
[ -d "$INTEROP" ] || INTEROP=/work/shared/interop

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# zolder_bin PRESET QUIET → sets Z: PRESET if given (a binary built earlier, e.g. to
# compare two versions), else a release build of this checkout ("== building" on
# stderr unless QUIET=quiet).
zolder_bin() {
  if [ -n "${1:-}" ]; then
    Z=$1
  else
    [ "${2:-}" = quiet ] || echo "== building zolder (release)" >&2
    (cd "$ROOT" && cargo build --release -q)
    Z=$ROOT/target/release/zolder
  fi
}

# wait_port PORT → returns once something listens on 127.0.0.1:PORT (up to 10 s),
# asked of ss so no connection reaches the server; /dev/tcp without ss.
wait_port() {
  local _
  for _ in $(seq 100); do
    if command -v ss >/dev/null; then
      ss -ltn "sport = :$1" | grep -q LISTEN && return 0
    else
      (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    fi
    sleep 0.1
  done
}

# zolder_serve CONFIG LOG PORT → starts `zolder serve` in the background (ZPID) and
# waits for PORT.
zolder_serve() {
  "$Z" --config "$1" serve >"$2" 2>&1 &
  ZPID=$!
  wait_port "$3"
}

# --- the IMAP benches: a private Dovecot and zolder on the same messages ----------

# imap_bench_init NAME DPORT USERS → WORK (a fresh /tmp/NAME.XXXXXX), PW, the ISP_*
# variables for start-isp.sh (IMAP on DPORT, POP3 on DPORT+1000) and the EXIT trap
# that stops zolder and Dovecot and removes WORK (unless KEEP=1).
imap_bench_init() {
  PW=secret
  WORK=$(mktemp -d "/tmp/$1.XXXXXX"); chmod 755 "$WORK"
  export ISP_DIR=$WORK/isp ISP_IMAP_PORT=$2 ISP_POP3_PORT=$(($2 + 1000)) ISP_USERS="$3" ISP_PASS=$PW
  ZPID=""
  trap imap_bench_cleanup EXIT
}
imap_bench_cleanup() {
  [ -n "$ZPID" ] && kill "$ZPID" 2>/dev/null || true
  "$INTEROP/stop-isp.sh" >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}

# zolder_imap_config PORT USERS [EXTRA] → $WORK/z/zolder.toml: IMAP on PORT, EXTRA
# tables (e.g. [limits]) and one [[users]] per name in USERS.
zolder_imap_config() {
  local u
  mkdir -p "$WORK/z"
  {
    printf 'hostname = "zolder.bench"\ndata_dir = "data"\n[listen]\nimap = "127.0.0.1:%s"\n' "$1"
    [ -n "${3:-}" ] && printf '%s\n' "$3"
    for u in $2; do printf '[[users]]\nname = "%s"\n' "$u"; done
  } > "$WORK/z/zolder.toml"
}

# zolder_user_add USER → sets USER's password to $PW.
zolder_user_add() {
  printf '%s\n' "$PW" | "$Z" --config "$WORK/z/zolder.toml" user add "$1" --password-stdin >/dev/null
}

# copy_isp_maildir USER → copies USER's messages at the ISP into zolder's Maildir cur/.
copy_isp_maildir() {
  local md=$WORK/z/data/mail/$1/Maildir
  mkdir -p "$md/cur" "$md/new" "$md/tmp"
  find "$ISP_DIR/mail/$1/cur" "$ISP_DIR/mail/$1/new" -type f -exec cp -t "$md/cur" {} + 2>/dev/null || true
}
