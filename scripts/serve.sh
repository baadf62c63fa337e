#!/usr/bin/env bash
# Install Telepath into ./.venv and run it: `./scripts/serve.sh --demo` starts the gateway on
# its embedded default (a SQLite file beside the repo, a demo account, API key and echo trunk).
# Every argument goes to `telepath serve` (see `telepath serve --help`).
# TELEPATH_COMPILE=1 installs the compiled build (gateway/native.py; needs gcc and the Python
# headers): the same code with about a third fewer instructions per frame.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv
if [ "${TELEPATH_COMPILE:-0}" = 1 ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'mypy>=1.11' setuptools wheel
  TELEPATH_COMPILE=1 "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    --no-build-isolation .
else
  "$VENV/bin/pip" install --quiet --disable-pip-version-check .
fi
exec "$VENV/bin/telepath" serve "$@"
