#!/usr/bin/env bash
# Third-party-client and real-browser conformance suites, each against its own
# live `mandate serve` (own port, temporary SQLite database and keys):
#
#   authlib-client-credentials  authlib OAuth2Session, client credentials     (Python)
#   authlib-code-flow           authlib OAuth2Session, code flow + PKCE       (Python)
#   openid-client               openid-client v6, code flow + PKCE + refresh  (Node)
#   browser                     Playwright + Debian Chromium, login/consent   (Node)
#   mcp-python-sdk              MCP Python SDK client + server, CIMD and DCR  (Python)
#
# and, when MANDATE_TEST_PG is set (e.g. postgres://postgres@127.0.0.1:5432;
# .ci/test sets it), `authlib-code-flow` and `browser` once more on a fresh
# PostgreSQL database each (`mandate_test_<random>`; needs psql; .ci/test drops
# such databases at its start, as it does those of the Rust tests).
#
#   bash conformance/run.sh [SUITE...]     # all suites, or only those named
#
# MANDATE_BIN selects the server binary (default: <repo>/target/debug/mandate);
# CHROMIUM the browser (default /usr/bin/chromium; never downloaded);
# CONFORMANCE_JOBS how many suites run at once (default 4).
# Python packages: conformance/.venv, rebuilt whenever requirements.txt changes;
# npm packages: conformance/node_modules from package-lock.json (`npm ci`),
# reinstalled whenever the lock file changes. Suites run in parallel; their
# outputs are printed one after the other, then one line per suite and the
# total. Exit status 1 when any suite failed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
export MANDATE_BIN="${MANDATE_BIN:-$repo/target/debug/mandate}"
jobs_max="${CONFORMANCE_JOBS:-4}"
suite_timeout="${CONFORMANCE_SUITE_TIMEOUT:-300}"
started=$(date +%s.%N)

# --- Dependencies ------------------------------------------------------------
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$want" != "$(cat "$stamp" 2>/dev/null || true)" ]]; then
    echo "conformance: installing $req into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$req"
    echo "$want" >"$stamp"
fi

lock="$here/package-lock.json"
nstamp="$here/node_modules/.package-lock.sha256"
if [[ -f "$lock" ]]; then
    nwant="$(sha256sum "$lock" | cut -d' ' -f1)"
else
    nwant="no-lock:$(sha256sum "$here/package.json" | cut -d' ' -f1)"
fi
if [[ ! -d "$here/node_modules" || "$nwant" != "$(cat "$nstamp" 2>/dev/null || true)" ]]; then
    echo "conformance: installing npm packages into $here/node_modules" >&2
    rm -rf "$here/node_modules"
    # playwright-core downloads nothing; the variable makes sure of it.
    if [[ -f "$lock" ]]; then
        (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) >&2
    else
        (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error) >&2
    fi
    echo "$nwant" >"$nstamp"
fi

# --- Suites ------------------------------------------------------------------
py="$venv/bin/python"
declare -A cmd=(
    [authlib-client-credentials]="$py $here/authlib_client_credentials.py"
    [authlib-code-flow]="$py $here/authlib_code_flow.py"
    [openid-client]="node $here/openid_client.mjs"
    [browser]="node $here/browser.mjs"
    [mcp-python-sdk]="$py $here/mcp_client.py"
)
order=(browser mcp-python-sdk authlib-code-flow openid-client authlib-client-credentials)
if [[ -n "${MANDATE_TEST_PG:-}" && -z "${MANDATE_TEST_SKIP_PG:-}" ]]; then
    cmd[browser-pg]="node $here/browser.mjs --pg"
    cmd[authlib-code-flow-pg]="$py $here/authlib_code_flow.py --pg"
    order=(browser browser-pg mcp-python-sdk authlib-code-flow authlib-code-flow-pg openid-client authlib-client-credentials)
fi
if [[ $# -gt 0 ]]; then
    for s in "$@"; do
        [[ -n "${cmd[$s]:-}" ]] || { echo "conformance: unknown suite $s (known: ${order[*]})" >&2; exit 2; }
    done
    order=("$@")
fi

out="$(mktemp -d "${TMPDIR:-/tmp}/mandate-conformance-run.XXXXXX")"
pids=()
cleanup() {
    # Each job is a subshell running `timeout SUITE`: stop the timeout (which
    # passes SIGTERM on to the suite, which stops its servers), then the job.
    for p in "${pids[@]}"; do
        pkill -TERM -P "$p" 2>/dev/null || true
        kill -TERM "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One suite: stdout/stderr to files, then its exit status and wall time.
run_suite() {
    local name="$1" t0 rc=0
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086 # the command is words, split on purpose
    timeout --signal=TERM --kill-after=20 "$suite_timeout" ${cmd[$name]} \
        >"$out/$name.out" 2>"$out/$name.err" </dev/null || rc=$?
    echo "$rc $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >"$out/$name.rc"
}

for name in "${order[@]}"; do
    while [[ $(jobs -rp | wc -l) -ge $jobs_max ]]; do wait -n || true; done
    run_suite "$name" &
    pids+=($!)
done
wait || true

# --- Report ------------------------------------------------------------------
total_pass=0 total_fail=0 failed_suites=0
summary=()
for name in "${order[@]}"; do
    read -r rc secs <"$out/$name.rc" || { rc=1; secs=0; }
    line="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/$name.out" | tail -n1 || true)"
    echo "== $name =="
    cat "$out/$name.out"
    if [[ "$rc" -ne 0 || -z "$line" ]]; then
        failed_suites=$((failed_suites + 1))
        [[ "$rc" -eq 124 ]] && echo "(timed out after ${suite_timeout}s)"
        echo "-- $name stderr (last 150 lines) --"
        tail -n 150 "$out/$name.err"
        verdict="FAIL"
    else
        verdict="PASS"
    fi
    if [[ -n "$line" ]]; then
        p="${line%% passed*}"
        f="${line#*passed, }"; f="${f%% failed*}"
    else
        p=0 f=1
        line="no result line (exit $rc)"
    fi
    # A suite that failed counts at least one failed check, even if it crashed
    # after printing "0 failed".
    [[ "$verdict" == FAIL && "$f" -eq 0 ]] && f=1
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    summary+=("$(printf '%-28s %s  %-26s %6ss' "$name" "$verdict" "$line" "$secs")")
    echo
done
echo "== conformance summary =="
printf '%s\n' "${summary[@]}"
printf 'wall time %ss, MANDATE_BIN=%s\n' "$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" "$MANDATE_BIN"
echo "conformance: $total_pass passed, $total_fail failed"
[[ $failed_suites -eq 0 ]]
