#!/bin/bash
# The three glasses styles of benchmarks/glasses_worlds.py side by side on one GPU, each training for
# TRAIN_SECONDS (default 330); results under $OUT/<style>/ (OUT defaults to /tmp/glasses_worlds).
OUT=${OUT:-/tmp/glasses_worlds}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
for v in sun bigsun visor; do
  python3 benchmarks/glasses_worlds.py $v "$OUT/$v" "${1:-330}" > "$OUT/$v.log" 2>&1 &
done
wait
cat "$OUT"/*/found.json
