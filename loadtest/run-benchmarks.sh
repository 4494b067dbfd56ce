#!/usr/bin/env bash
# Runs every kernel benchmark against an already built tree: `make bench` builds first, then calls
#   bash loadtest/run-benchmarks.sh BUILD_DIR
# Builds nothing. Exits non-zero if a benchmark binary is missing or fails; a missed performance
# goal is printed as "GOAL MISSED" but does not fail the run (this is a 2-core shared machine
# as often as not; see loadtest/README.md).
#
# Each benchmark prints one JSON object as its last line; they are collected, one per line, in
# BUILD_DIR/bench/results.jsonl.
#
# Extra arguments for a benchmark: EVENTLOG_BENCH_ARGS="--seconds 5 --batch 256" make bench,
# LEDGER_BENCH_ARGS="--rounds 1 --no-pg" make bench
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build_dir=$1
if [[ ! -d $build_dir ]]; then
  echo "run-benchmarks: build dir $build_dir does not exist; run make build first" >&2
  exit 2
fi
bin_dir=$build_dir/bin
results_dir=$build_dir/bench
mkdir -p "$results_dir"
results=$results_dir/results.jsonl
: >"$results"

failed=()
missed=()

# run_bench NAME [ARGS...]: runs $bin_dir/NAME, keeps its JSON line, checks its goal flags.
run_bench() {
  local name=$1
  shift
  local bin=$bin_dir/$name
  if [[ ! -x $bin ]]; then
    echo "run-benchmarks: $bin not found; build it first (make build)" >&2
    failed+=("$name (not built)")
    return
  fi
  echo "=== $name $*"
  local out rc
  out=$(mktemp)
  "$bin" "$@" | tee "$out"
  rc=${PIPESTATUS[0]}
  if [[ $rc -ne 0 ]]; then
    echo "=== $name FAILED (exit $rc)"
    failed+=("$name (exit $rc)")
    rm -f "$out"
    return
  fi
  local json
  json=$(tail -n 1 "$out")
  rm -f "$out"
  if [[ $json != \{* ]]; then
    echo "=== $name FAILED: last line is not a JSON object"
    failed+=("$name (no JSON)")
    return
  fi
  echo "$json" >>"$results"
  # Every "<goal>_goal_met":false in the JSON is a missed goal.
  local goal
  while read -r goal; do
    [[ -n $goal ]] || continue
    echo "=== $name: GOAL MISSED: $goal"
    missed+=("$name: $goal")
  done < <(grep -o '"[a-z_]*_goal_met":false' <<<"$json" | sed 's/"\([a-z_]*\)_goal_met".*/\1/')
  echo
}

# --- The benchmarks, in order. ------------------------------------------------------------------
# shellcheck disable=SC2086  # The *_ARGS variables are meant to split into words.
run_bench eventlog_bench ${EVENTLOG_BENCH_ARGS:-}
# The ledger against PostgreSQL (it starts and removes its own private postgresql-15 cluster).
# shellcheck disable=SC2086
run_bench ledger_bench ${LEDGER_BENCH_ARGS:-}
# -------------------------------------------------------------------------------------------------

echo "=== results in $results"
if [[ ${#missed[@]} -gt 0 ]]; then
  echo "=== GOAL MISSED (${#missed[@]}):"
  printf '      %s\n' "${missed[@]}"
elif [[ ${#failed[@]} -eq 0 ]]; then
  echo "=== all goals met"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "=== FAILED (${#failed[@]}):"
  printf '      %s\n' "${failed[@]}"
  exit 1
fi
exit 0
