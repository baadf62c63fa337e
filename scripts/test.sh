#!/usr/bin/env bash
# Install the test dependencies (Python packages into ./.venv; the real peers and tools from
# Debian when running as root: sipp, baresip, chromium, espeak-ng, sox, kamailio, valgrind),
# compile the frame-path modules as production runs them (scripts/compile.sh; TELEPATH_COMPILE=0
# tests pure Python instead, after `scripts/compile.sh --clean` if they were compiled) and run
# the whole suite.
# Extra arguments go to pytest, e.g. `./scripts/test.sh -k trunks`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e '.[test]'
if [ "${TELEPATH_COMPILE:-1}" != 0 ]; then
  ./scripts/compile.sh
fi
if [ "$(id -u)" = 0 ]; then
  need=()
  command -v sipp >/dev/null || need+=(sip-tester)
  command -v baresip >/dev/null || need+=(baresip-core)
  command -v chromium >/dev/null || need+=(chromium)
  command -v espeak-ng >/dev/null || need+=(espeak-ng)
  command -v sox >/dev/null || need+=(sox)
  command -v kamailio >/dev/null || need+=(kamailio)
  command -v valgrind >/dev/null || need+=(valgrind)  # bench.run --callgrind
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
