#!/usr/bin/env bash
# The GPU check (issue 12), for a machine with a CUDA GPU and torch 2.x and no Node: under 8
# minutes on one GPU. Two steps:
#
#   here (pip and a network):  bash bench/gpu-check.sh --fetch-wheels
#       fills .whl/ (git-ignored) with what such a machine may lack — pyzmq, fastjsonschema,
#       jsonschema and its needs — as CPython 3.12 manylinux x86-64 wheels; also run
#       `npx prcl bench gpu-inputs` after changing presets or the wire (bench/gpu/inputs.json).
#   there:                     bash bench/gpu-check.sh [OUT_DIR]
#       installs .whl/ into /tmp/site if present, then: the machine (nvidia-smi, torch), the Python
#       tests (the CUDA-only ones run there; the rest as on CPU), the PRCL loss forward + backward at
#       the paper's shapes against the literal reference (time, peak memory), and bench/gpu_check.py
#       (R101 train steps at 321² for 2 + 2 and 8 + 8, fp32/bf16/channels-last; 50 demo steps; the
#       input path: VOC and Cityscapes-size images decoded on 1-8 threads, augmented on the GPU).
#       Writes OUT_DIR/gpu-check.log and OUT_DIR/gpu-check.json (OUT_DIR: $OUT, else bench/results).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fetch-wheels" ]; then
  rm -rf .whl && mkdir -p .whl
  exec python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pyzmq fastjsonschema jsonschema jsonschema-specifications referencing rpds-py
fi

OUT_DIR=${1:-${OUT:-bench/results}}
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu-check.log"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/py:${PYTHONPATH:-} PYTHONUNBUFFERED=1

section() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
{
  section machine
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.get_device_name() if torch.cuda.is_available() else None)'

  section "python tests"
  timeout 240 python3 -m pytest -q -p no:cacheprovider py/tests -rs 2>&1 | tail -40

  section "PRCL loss at the paper's shapes (forward + backward)"
  for impl in worker reference; do
    timeout 60 python3 bench/prcl_loss.py --impl "$impl" --device cuda --batch 4 --repeats 5
  done

  section "train steps (bench/gpu_check.py)"
  timeout 300 python3 bench/gpu_check.py --device cuda --out "$OUT_DIR/gpu-check.json" >/dev/null

  section done
} 2>&1 | tee "$LOG"
