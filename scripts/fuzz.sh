#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of outside input (tests/fuzz) with libFuzzer.
#   scripts/fuzz.sh BUILD_DIR FUZZ_DIR SECONDS
# BUILD_DIR is the ordinary build, whose replay binaries write each target's seeds; FUZZ_DIR is a
# clang build with -DWL_FUZZ=ON. Each target runs SECONDS on its corpus (FUZZ_DIR/corpus/NAME,
# kept between runs, so later runs start where earlier ones stopped). A target that finds an
# input breaking its checks stops, leaves the input as FUZZ_DIR/crash-NAME-*, and the script
# fails; replay it with `BUILD_DIR/fuzz/NAME FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?build dir}
fuzz=${2:?fuzz build dir}
seconds=${3:-60}
targets=(usage_fuzz event_fuzz money_fuzz)

bash "$(dirname "$0")/install-deps.sh" clang-14 libclang-rt-14-dev
cmake -S . -B "$fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWL_FUZZ=ON \
  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build "$fuzz" --target "${targets[@]}"

failed=()
for t in "${targets[@]}"; do
  corpus="$fuzz/corpus/$t"
  mkdir -p "$corpus"
  "$build/fuzz/$t" --write-seeds "$corpus" >/dev/null
  echo "=== $t: ${seconds} s, corpus $corpus ($(ls "$corpus" | wc -l) inputs)"
  if ! "$fuzz/fuzz/$t" "$corpus" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$fuzz/crash-$t-" 2>"$fuzz/$t.log"; then
    tail -30 "$fuzz/$t.log"
    failed+=("$t")
    continue
  fi
  grep -E "stat::number_of_executed_units|cov:" "$fuzz/$t.log" | tail -2 || true
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "=== fuzzing found inputs that break: ${failed[*]} (see $fuzz/crash-*)"
  exit 1
fi
echo "=== fuzzing: no target failed"
