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

# `launch` and `launch_ros` have no PyPI wheels. A development machine without a ROS install
# may keep wheels built from upstream in a folder beside the checkout (DEPTHGATE_LAUNCH_WHEELS,
# default ../shared/ros-launch); they are installed for the test that runs the real launch
# file, which skips when launch_ros is missing. The package never needs them at run time.
LAUNCH_WHEELS=${DEPTHGATE_LAUNCH_WHEELS:-../shared/ros-launch}
if compgen -G "$LAUNCH_WHEELS/launch*.whl" > /dev/null && \
    ! "$VENV/bin/python" -c "import launch_ros" 2>/dev/null; then
  echo "[dev.sh] installing launch/launch_ros from $LAUNCH_WHEELS" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "$LAUNCH_WHEELS"/*.whl 2>&1 | { grep -v "is ignored: it is neither" || true; }
  # pip then warns that launch_ros wants "ament_index_python": the ROS wheel provides that
  # module under the distribution name ros-ament-index-python, so the warning is dropped
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    osrf-pycommon==2.0.2 lark==1.3.1 2>&1 | { grep -v -e "is ignored: it is neither" \
    -e "dependency resolver does not currently" -e "requires ament_index_python" || true; }
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
