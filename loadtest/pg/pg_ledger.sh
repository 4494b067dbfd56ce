#!/usr/bin/env bash
# pg_ledger.sh: the PostgreSQL side of ledger_bench. Starts a private, throwaway PostgreSQL
# cluster (Debian's postgresql-15: /usr/lib/postgresql/15/bin, or $PGBIN) in a fresh temp dir on
# a free loopback port, with the unix socket in that dir and the durability defaults
# (fsync=on, synchronous_commit=on), loads loadtest/pg/schema.sql, and runs pgbench with
# posting_uniform.sql or posting_hot.sql: one transaction = two balance UPDATEs + one journal
# INSERT. The cluster is stopped and its dir deleted on exit, whatever the exit (trap).
#
#   pg_ledger.sh serve [OPTIONS]
#       The co-process mode ledger_bench uses, so that PostgreSQL rounds interleave with its own.
#       Prints "ready port=P version=V" (or "error MESSAGE") once the cluster is up, then reads
#       one command per line on stdin and answers each with one line on stdout:
#         run VARIANT SECONDS CLIENTS RATE   VARIANT uniform|hot; RATE 0 = unthrottled, else tps
#           -> "result variant=.. tps=.. txns=.. failed=.. lat_avg_ms=.. p50_ms=.. p99_ms=.."
#         quit (or end of input: the parent died) -> stops the cluster and exits.
#   pg_ledger.sh once VARIANT SECONDS [CLIENTS [RATE]] [OPTIONS]
#       Starts a cluster, runs one pgbench, prints the pgbench output and the result line, stops.
#
# OPTIONS: --accounts N (10000) --shards N (64: revenue rows of the uniform variant) --jobs N (2)
#          --dir PARENT (default $TMPDIR or /tmp)
# Diagnostics (initdb, pg_ctl, pgbench output) go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
accounts=10000
shards=64
jobs=2
parent=${TMPDIR:-/tmp}

die() {
  echo "error $*"
  echo "pg_ledger: $*" >&2
  exit 1
}

mode=${1:-}
[[ $mode == serve || $mode == once ]] || {
  sed -n '2,22p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
shift
once_args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --accounts) accounts=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --dir) parent=$2; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) once_args+=("$1"); shift ;;
  esac
done

for b in initdb pg_ctl postgres pgbench psql; do
  [[ -x $PGBIN/$b ]] || die "$PGBIN/$b not found: install postgresql (scripts/install-deps.sh) or set PGBIN"
done

# initdb and postgres refuse to run as root: as root, run them as the package's postgres user.
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  id postgres >/dev/null 2>&1 || die "running as root and there is no postgres user to run the server as"
  as_pg=(runuser -u postgres --)
fi

tmp=
port=
# shellcheck disable=SC2317  # Invoked by the trap.
cleanup() {
  local rc=$?
  if [[ -n $tmp && -d $tmp ]]; then
    if [[ -f $tmp/data/postmaster.pid ]]; then
      "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -m immediate -w -t 30 stop >&2 || true
    fi
    rm -rf "$tmp"
  fi
  return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
trap 'exit 141' PIPE

free_port() {
  local p _
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 40000))
    # Nothing answers on it: free (a race with another process is caught by pg_ctl start).
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

start_cluster() {
  tmp=$(mktemp -d "$parent/pg_ledger.XXXXXX") || die "cannot create a temp dir under $parent"
  chmod 755 "$tmp"
  [[ ${#as_pg[@]} -eq 0 ]] || chown postgres: "$tmp"
  "${as_pg[@]}" "$PGBIN/initdb" -D "$tmp/data" -U bench -A trust -E UTF8 --locale=C --no-sync >&2 ||
    die "initdb failed"
  local _
  for _ in 1 2 3; do
    port=$(free_port) || die "no free loopback port"
    # Only what a private cluster needs; every durability setting stays at its default
    # (fsync=on, synchronous_commit=on, full_page_writes=on, wal_sync_method=fdatasync).
    if "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
      -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=200" start >&2; then
      break
    fi
    port=
  done
  [[ -n $port ]] || { cat "$tmp/server.log" >&2 || true; die "pg_ctl start failed"; }
  psql_q -v accounts="$accounts" -v shards="$shards" -f "$here/schema.sql" >&2 || die "loading schema.sql failed"
  local settings
  settings=$(psql_q -At -c "select string_agg(name || '=' || setting, ' ' order by name) from pg_settings
                            where name in ('fsync','synchronous_commit','full_page_writes','wal_sync_method','shared_buffers')")
  echo "pg_ledger: cluster in $tmp on 127.0.0.1:$port; $settings" >&2
}

psql_q() { "$PGBIN/psql" -h "$tmp" -p "$port" -U bench -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }

# run_bench VARIANT SECONDS CLIENTS RATE: one pgbench run; prints its output to stderr and the
# result line to stdout.
run_bench() {
  local variant=$1 seconds=$2 clients=$3 rate=$4
  local script=$here/posting_$variant.sql
  [[ -f $script ]] || { echo "error unknown variant $variant"; return 0; }
  local run_dir=$tmp/run.$RANDOM$RANDOM
  mkdir -p "$run_dir"
  psql_q -c CHECKPOINT >&2 || true
  local args=(-n -M prepared -h "$tmp" -p "$port" -U bench -c "$clients" -j "$jobs" -T "$seconds"
    -f "$script" -D "accounts=$accounts" -D "shards=$shards" -l --log-prefix="$run_dir/tx")
  [[ $rate == 0 ]] || args+=(-R "$rate")
  local out=$run_dir/out
  if ! (cd "$run_dir" && "$PGBIN/pgbench" "${args[@]}" postgres) >"$out" 2>"$run_dir/err"; then
    cat "$out" "$run_dir/err" >&2
    echo "error pgbench failed: $(tail -n 1 "$run_dir/err" | tr '\n' ' ')"
    rm -rf "$run_dir"
    return 0
  fi
  cat "$out" >&2
  local tps txns failed lat_avg
  tps=$(awk '/^tps = /{print $3; exit}' "$out")
  txns=$(awk -F': ' '/^number of transactions actually processed/{split($2, a, "/"); print a[1]; exit}' "$out")
  failed=$(awk -F': ' '/^number of failed transactions/{split($2, a, " "); print a[1]; exit}' "$out")
  lat_avg=$(awk '/^latency average = /{print $4; exit}' "$out")
  # Per-transaction log: column 3 is the latency in us (from the scheduled start under -R).
  local pct
  pct=$({ cat "$run_dir"/tx.* 2>/dev/null || true; } | awk '{print $3}' | sort -n |
    awk '{v[NR] = $1} END {
           if (NR == 0) { print "0 0"; exit }
           i50 = int(0.50 * (NR - 1)) + 1; i99 = int(0.99 * (NR - 1)) + 1
           printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
  echo "result variant=$variant tps=${tps:-0} txns=${txns:-0} failed=${failed:-0} lat_avg_ms=${lat_avg:-0}" \
    "p50_ms=${pct% *} p99_ms=${pct#* }"
  rm -rf "$run_dir"
}

start_cluster
version=$("$PGBIN/postgres" --version | awk '{print $3}')

if [[ $mode == once ]]; then
  [[ ${#once_args[@]} -ge 2 ]] || die "usage: pg_ledger.sh once VARIANT SECONDS [CLIENTS [RATE]]"
  run_bench "${once_args[0]}" "${once_args[1]}" "${once_args[2]:-16}" "${once_args[3]:-0}"
  exit 0
fi

echo "ready port=$port version=$version"
while IFS= read -r line; do
  read -r cmd a1 a2 a3 a4 _ <<<"$line" || true
  case ${cmd:-} in
    run) run_bench "${a1:-}" "${a2:-5}" "${a3:-16}" "${a4:-0}" ;;
    quit) break ;;
    "") ;;
    *) echo "error unknown command $cmd" ;;
  esac
done
exit 0
