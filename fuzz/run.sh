#!/usr/bin/env bash
# Runs every fuzz target for MINUTES minutes each (default 5), one after the
# other, with cargo-fuzz (libFuzzer + AddressSanitizer). Not part of CI.
#
#   cargo install cargo-fuzz        # once
#   fuzz/run.sh 10                  # 10 minutes per target
#
# Inputs that crash land in fuzz/artifacts/TARGET/; turn each into a
# regression test next to the code it broke. The corpus grows in
# fuzz/corpus/TARGET/ and is reused by the next run.
set -euo pipefail
cd "$(dirname "$0")"
minutes=${1:-5}
# cargo-fuzz passes nightly-only flags (-Zsanitizer); the stable toolchain
# accepts them with RUSTC_BOOTSTRAP when no nightly is installed.
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
for target in $(cargo fuzz list); do
    echo "== $target: $minutes min"
    cargo fuzz run "$target" -- -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -print_final_stats=1
done
