#!/usr/bin/env bash
# Third-party-client conformance check: runs authlib (Python) against a live
# `mandate serve`. Usable from any working directory.
#
#   bash conformance/run.sh
#
# MANDATE_BIN selects the server binary (default: <repo>/target/debug/mandate).
# The virtualenv lives in conformance/.venv and is rebuilt whenever
# requirements.txt changes (its hash is kept in .venv/.requirements.sha256).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req" | cut -d' ' -f1)"
have=""
if [[ -f "$stamp" ]]; then
    have="$(cat "$stamp")"
fi

if [[ ! -x "$venv/bin/python" || "$want" != "$have" ]]; then
    echo "conformance: installing $req into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$req"
    echo "$want" >"$stamp"
fi

exec "$venv/bin/python" "$here/authlib_client_credentials.py" "$@"
