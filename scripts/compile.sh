#!/usr/bin/env bash
# Compile the frame-path modules (gateway/native.py) with mypyc, in place beside their
# sources: the checkout then runs them as C extensions (docs/performance.md). Needs a C
# compiler and the Python headers (Debian: gcc, python3-dev). `--clean` removes them again,
# so the checkout runs pure Python. Rebuilding after an edit is required: the gateway and
# the test suite refuse to run a compiled module whose source changed since it was built.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
ensure_venv
if [ "${1:-}" = "--clean" ]; then
  find gateway ingress providers media models -name '*.so' -delete
  rm -rf build gateway/native-sources.json
  echo "compiled modules removed: the checkout runs pure Python"
  exit 0
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'mypy>=1.11' setuptools
log="$(mktemp)"
if ! TELEPATH_COMPILE=1 "$VENV/bin/python" setup.py -q build_ext --inplace >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$log"
  echo "compiling with mypyc failed (see above)" >&2
  exit 1
fi
rm -f "$log"
"$VENV/bin/python" -c 'from gateway import native; print(f"compiled: {len(native.compiled())} of {len(native.COMPILED)} frame-path modules")'
