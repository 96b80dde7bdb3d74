#!/usr/bin/env bash
# One entry point for a fresh machine with Python 3.11:
#   bash run.sh reproduce [ARGS]   set up .venv, then run the default reproduction (args go to hsep_utils.reproduce)
#   bash run.sh test [ARGS]        set up .venv, then run the test suite (args go to pytest)
#   bash run.sh setup              only set up .venv
# Set-up is idempotent: it reinstalls only when requirements.txt or this script changed.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${HSEP_VENV:-.venv}
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
FACENET_PIN="facenet-pytorch==2.6.0"

setup() {
    local py
    py=$(command -v python3.11 || command -v python3 || true)
    if [ -z "$py" ] || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "run.sh: needs Python >= 3.11 on PATH (found: ${py:-none})" >&2; exit 1
    fi
    local stamp="$VENV/.hsep-setup" want
    want=$( (cat requirements.txt pyproject.toml; echo "$TORCH_PINS $FACENET_PIN") | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    echo "run.sh: setting up $VENV (torch, diffusers, papermill, ...); later runs reuse it"
    [ -x "$VENV/bin/python" ] || "$py" -m venv "$VENV"
    local pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
    $pip install $TORCH_PINS
    $pip install -r requirements.txt
    $pip install --no-deps $FACENET_PIN
    $pip install --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
}

# A venv set up by another checkout (HSEP_VENV) imports that checkout's hsep_utils, results and caches
# (in the notebooks' kernels, which do not start here) unless this one is on PYTHONPATH: say so first.
check_checkout() {
    local found
    found=$("$VENV/bin/python" -P -c 'import importlib.util as u; s = u.find_spec("hsep_utils"); print(s.origin if s else "")')
    if [ "$found" != "$(pwd -P)/hsep_utils/__init__.py" ]; then
        echo "run.sh: warning: $VENV imports hsep_utils from ${found:-nowhere}, not from this checkout ($(pwd -P));" \
             "run with PYTHONPATH=$(pwd -P) or set up a venv here" >&2
    fi
}

cmd=${1:-}
shift || true
case "$cmd" in
    setup) setup ;;
    test) setup; check_checkout; exec "$VENV/bin/python" -m pytest "$@" ;;
    reproduce) setup; check_checkout; exec "$VENV/bin/python" -m hsep_utils.reproduce "$@" ;;
    *) echo "usage: bash run.sh {reproduce|test|setup} [ARGS]" >&2; exit 2 ;;
esac
