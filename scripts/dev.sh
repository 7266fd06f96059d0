#!/usr/bin/env bash
# One entry point for a fresh machine: builds .venv on first use (and again whenever the
# requirements or setup.py change), then runs what was asked.
#
#   bash scripts/dev.sh demo [depthgate-demo args]   the main job, on the bundled defaults
#   bash scripts/dev.sh test [pytest args]           the whole test suite
#   bash scripts/dev.sh run CMD [args]               any command inside the environment
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DEPTHGATE_VENV:-.venv}
# torch 2.14.1 / torchvision 0.29.1 lie on this machine's disk for CPython 3.11 only.
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

want=$(cat requirements.txt requirements-dev.txt setup.py | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.installed" 2>/dev/null)" != "$want" ]; then
  echo "[dev.sh] setting up $VENV (first run installs torch from local disk, ~2 min)" >&2
  "$PYTHON" -m venv "$VENV"
  pip_install() {  # pip warns once per local index it skips; keep its real messages only
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  }
  pip_install -r requirements-dev.txt
  pip_install --no-deps -e .
  echo "$want" > "$VENV/.installed"
fi

# DDS traffic never leaves this machine; each caller may pick its own ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export PATH="$PWD/$VENV/bin:$PATH"

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) exec depthgate-demo "$@" ;;
  test) exec python -m pytest "$@" ;;
  run)  exec "$@" ;;
  *) echo "usage: bash scripts/dev.sh {demo|test|run} [args...]" >&2; exit 2 ;;
esac
