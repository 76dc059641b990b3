#!/usr/bin/env bash
# One entry point for a fresh machine:
#   ./run.sh tutorial   install into .venv, then run the whole mixed-precision tutorial on tiny-YOLOv3
#   ./run.sh test       install into .venv (with test extras), then run the test suite
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TPUSHELL_VENV:-$here/.venv}"
python="${PYTHON:-python3}"

install() {
  if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$here[test]"
}

case "${1:-}" in
  tutorial)
    install
    shift
    exec "$venv/bin/python" "$here/examples/tutorial.py" "$@"
    ;;
  test)
    install
    shift
    cd "$here"
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  *)
    echo "usage: ./run.sh tutorial [--workdir DIR] | ./run.sh test [pytest args]" >&2
    exit 2
    ;;
esac
