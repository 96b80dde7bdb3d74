#!/bin/bash
# benchmarks/gpu_check.py on a lent GPU machine, whose python3 holds torch but not diffusers,
# papermill or ipykernel (and nothing can be fetched there).
#   here, once:            bash benchmarks/gpu_check.sh --fetch     # wheels for its Python 3.12 → .gpu_wheels/ (git-ignored)
#   there (carry .gpu_wheels): bash benchmarks/gpu_check.sh [gpu_check.py options]   # writes $OUT/gpu_check.json
set -euo pipefail
WHEELS=.gpu_wheels
if [ "${1:-}" = "--fetch" ]; then
  .venv/bin/pip download -q --dest "$WHEELS" --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform any \
    diffusers==0.42.1 papermill==2.7.0 ipykernel==7.4.0
  for have in numpy pillow hf_xet pygments pyyaml regex safetensors tzdata charset_normalizer filelock fsspec psutil \
      packaging urllib3 anyio certifi; do  # the GPU image has these (and the working tree that travels is ≤ 64 MiB)
    rm -f "$WHEELS/$have"-*
  done
  du -sh "$WHEELS"
  exit 0
fi
python3 -m pip install -q --no-index --find-links "$WHEELS" diffusers papermill ipykernel
python3 -m ipykernel install --user --name python3 > /dev/null
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
PYTHONUNBUFFERED=1 PYTHONPATH=$PWD python3 benchmarks/gpu_check.py --out "$OUT/work" "$@" 2>&1 | tee "$OUT/gpu_check.log"
cp "$OUT/work/gpu_check.json" "$OUT/"
rm -rf "$OUT/work"  # only the log and the JSON come back
