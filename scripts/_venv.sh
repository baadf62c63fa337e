# Shared by serve.sh and test.sh: a virtual environment in ./.venv with Python >= 3.11.
VENV="${TELEPATH_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

ensure_venv() {
  if [ -x "$VENV/bin/python" ]; then
    return
  fi
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "Telepath needs Python 3.11 or newer ($PYTHON is $("$PYTHON" -V 2>&1))." >&2
    exit 1
  fi
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian ships venv separately.
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv "$VENV"
    else
      echo "Install python3-venv first: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
}
