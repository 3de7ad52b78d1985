#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS seconds (default 5), one after another,
# from its seeds and the corpus found so far, and prints libFuzzer's figures. Stable Rust:
# libFuzzer without a sanitizer.
#   bash fuzz/run.sh 600                       # ten minutes each
#   TARGETS="render config" bash fuzz/run.sh 60
#   FUZZ_FLAGS=--dev bash fuzz/run.sh 5        # unoptimised: builds in a fraction of the time (CI)
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-5}"
read -r -a targets <<< "${TARGETS:-billmgr_params buy_params upstream_answers config render}"
read -r -a flags <<< "${FUZZ_FLAGS:-}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build --sanitizer none "${flags[@]}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target: ${seconds} s"
  if ! cargo fuzz run --sanitizer none "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -print_final_stats=1 > "$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed; the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" "$log"
done
