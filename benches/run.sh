#!/usr/bin/env bash
# The benchmark of SPEC §11: mandate and node-oidc-provider on this machine,
# in the same run, each pinned to core 0 with wrk on core 1; prints one table
# of medians per database (SQLite, PostgreSQL) with ratios, and a scale-out
# table (1-3 instances on one PostgreSQL database), and writes them to
# benches/results/latest.md. See benches/README.md.
#
#   bash benches/run.sh [--quick] [--no-postgres]
#
# --quick: one 3 s round per cell (under 2 minutes after the build, indicative only);
# the default is three 10 s rounds per cell (about 20 minutes).
#
# It installs what is missing: wrk (Debian package), node-oidc-provider and
# Node 22 (npm packages `oidc-provider` and `node`, pinned in
# benches/oidc-provider/package-lock.json), and builds mandate with
# `cargo build --release`. PostgreSQL is used when 127.0.0.1:5432 answers
# (user postgres, trust auth), otherwise that table is skipped with a note.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

for a in "$@"; do
  case "$a" in
    --quick|--no-postgres) ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $a (use --quick, --no-postgres)" >&2; exit 2 ;;
  esac
done

say() { printf '[bench] %s\n' "$*" >&2; }

# Runs a command as a child this script waits for, so that a signal reaches
# the trap at once (and the child through cleanup).
run() {
  local status=0
  "$@" &
  child=$!
  wait "$child" || status=$?
  child=""
  return "$status"
}

child=""
cleanup() {
  # The one child running now (npm, cargo or bench.py) gets the signal;
  # bench.py undoes what it started (servers, wrk, temp dirs, the PostgreSQL
  # database) before it exits.
  if [[ -n "$child" ]] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

need_apt() {
  # $1 command, $2 Debian package
  command -v "$1" >/dev/null 2>&1 && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    say "$1 is missing: install the Debian package $2"; exit 1
  fi
  say "installing $2 (apt-get)"
  if ! apt-get install -y -q "$2" >/dev/null 2>&1; then
    apt-get update -q >/dev/null && apt-get install -y -q "$2" >/dev/null
  fi
}
need_apt wrk wrk
need_apt taskset util-linux
need_apt python3 python3
need_apt npm npm
# psql is optional: without it the PostgreSQL table is skipped.
command -v psql >/dev/null 2>&1 || need_apt psql postgresql-client || true

# node-oidc-provider and Node 22 from npm, exactly as locked. Reinstalled only
# when the lock file changed.
op="$here/oidc-provider"
stamp="$op/node_modules/.bench-lock.sha256"
want="$(sha256sum "$op/package-lock.json" | cut -d' ' -f1)"
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  say "installing node-oidc-provider and Node 22 (npm ci)"
  run npm --prefix "$op" ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi
node_bin="$op/node_modules/node/bin/node"
if ! "$node_bin" --version 2>/dev/null | grep -q '^v22\.'; then
  say "WARNING: Node 22 from npm is not usable here; running node-oidc-provider on $(node --version 2>/dev/null || echo 'no node')"
  node_bin="$(command -v node)"
fi

say "building mandate (cargo build --release)"
run cargo build --release --quiet
mandate_bin="$root/target/release/mandate"

# The orchestrator itself stays off the servers' core.
pin=()
if [[ $(nproc) -ge 2 ]]; then pin=(taskset -c 1); fi
run "${pin[@]}" python3 "$here/bench.py" --mandate "$mandate_bin" --node "$node_bin" "$@"
