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

cmd=${1:-}
shift || true
case "$cmd" in
    setup) setup ;;
    test) setup; exec "$VENV/bin/python" -m pytest "$@" ;;
    reproduce) setup; exec "$VENV/bin/python" -m hsep_utils.reproduce "$@" ;;
    *) echo "usage: bash run.sh {reproduce|test|setup} [ARGS]" >&2; exit 2 ;;
esac
