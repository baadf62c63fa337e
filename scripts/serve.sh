#!/usr/bin/env bash
# Install Telepath into ./.venv and run it: `./scripts/serve.sh --demo` starts the gateway on
# its embedded default (a SQLite file beside the repo, a demo account, API key and echo trunk).
# Every argument goes to `telepath serve` (see `telepath serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check .
exec "$VENV/bin/telepath" serve "$@"
