#!/bin/sh
# Full crash run for local delivery: `zolder deliver` killed with SIGKILL at random
# moments over N deliveries (default 300) alternating between a Maildir and an mbox
# user, each killed delivery retried with the same idempotency key; then checks that
# no half-written message is visible, the index matches the files and every message
# is stored exactly once. `cargo test` runs the same test with 60 iterations.
#
#   tests/crash/deliver-crash.sh [N]
set -eu
cd "$(dirname "$0")/../.."
N="${1:-300}"
DELIVER_CRASH_ITERATIONS="$N" exec cargo test --test deliver \
    crash_at_random_moments_then_retry_stores_each_message_exactly_once -- --nocapture
