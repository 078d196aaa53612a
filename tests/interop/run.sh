#!/bin/bash
# zolder's interop suite: the tests that drive real Debian programs (Dovecot as the ISP,
# fetchmail, getmail6, mutt, mbsync, swaks, clamd, spamd, bogofilter, Postfix's smtp-sink)
# plus short forms of the crash tests.
#
#   tests/interop/run.sh          # as root: installs the packages first, then runs
#   SKIP_INSTALL=1 tests/interop/run.sh
#   FULL=1 tests/interop/run.sh   # the long crash runs (≥ 20 kills per combination)
#
# Needs ../shared/interop beside the repository (the peers' start scripts).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "$(id -u)" = 0 ] && [ -z "${SKIP_INSTALL:-}" ]; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs="dovecot-imapd dovecot-pop3d fetchmail getmail6 mutt isync swaks python3-aiosmtpd
        clamav-daemon spamd spamc spamassassin bogofilter postfix time jq bc iproute2 gcc libnet-ssleay-perl
        sieve-connect chromium chromium-driver python3-selenium"
  # shellcheck disable=SC2086
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs >/tmp/interop-apt.log 2>&1
  fi
fi
export ZOLDER_INTEROP=1
# The interop tests skip themselves when a program is missing; with ZOLDER_INTEROP=1 and
# root they are expected to run. One test binary at a time: they start real daemons.
tests=$(ls tests/interop_*.rs 2>/dev/null | xargs -rn1 basename | sed 's/\.rs$//')
failed=""
for t in $tests; do
  echo "--- cargo test --features interop --test $t"
  cargo test --features interop --test "$t" -- --test-threads=2 || failed="$failed $t"
done
# Crash tests: short forms unless FULL=1 (each script documents its full form).
cargo build
export ZOLDER_BIN=${ZOLDER_BIN:-$PWD/target/debug/zolder} ZOLDER=${ZOLDER:-$PWD/target/debug/zolder}
for s in tests/crash/*.sh; do
  [ -e "$s" ] || continue
  echo "--- $s"
  if [ -n "${FULL:-}" ]; then
    bash "$s" || failed="$failed $s"
  else
    case "$(basename "$s")" in
      flush-crash.sh) N=200 ROUNDS=5 bash "$s" || failed="$failed $s" ;;
      deliver-crash.sh) bash "$s" 120 || failed="$failed $s" ;;
      *) bash "$s" || failed="$failed $s" ;;
    esac
  fi
done
if [ -n "$failed" ]; then
  echo "interop suite FAILED:$failed"
  exit 1
fi
echo "interop suite passed"
