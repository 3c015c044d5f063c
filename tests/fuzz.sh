#!/usr/bin/env bash
# Run every cargo fuzz target (tests/fuzz) for a bounded time each:
#   bash tests/fuzz.sh [SECONDS_PER_TARGET]   (default 30)
# Seeds are the kept inputs of tests/fuzz/regressions/<target>/; a crash is
# copied there (so `cargo test -p afxdp-fuzz-bodies` replays it from then on)
# and fails the run. Needs the nightly toolchain and cargo-fuzz
# (tests/install.sh installs both).
set -euo pipefail
cd "$(dirname "$0")/fuzz"
secs=${1:-30}
# The sanitizer build lives outside the clone, so later runs reuse it.
target_dir=${AFXDP_FUZZ_TARGET_DIR:-/var/cache/afxdp-rs/fuzz-target}
status=0
for target in config cni_input uds_message; do
  corpus=$(mktemp -d)
  cp regressions/"$target"/* "$corpus"/
  start=$(date +%s)
  if ! cargo +nightly fuzz run --target-dir "$target_dir" "$target" "$corpus" -- \
      -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 \
      >"$corpus.log" 2>&1; then
    status=1
    echo "fuzz $target: FAILED"
    tail -40 "$corpus.log"
    for crash in artifacts/"$target"/*; do
      [ -f "$crash" ] && cp "$crash" regressions/"$target"/ && echo "kept $(basename "$crash") in regressions/$target"
    done
  else
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$corpus.log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz $target: ok ($runs runs in $(( $(date +%s) - start )) s)"
  fi
  rm -rf "$corpus" "$corpus.log"
done
exit $status
