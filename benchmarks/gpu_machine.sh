#!/usr/bin/env bash
# The GPU machine's one command: GPU tests + before/after throughput, figures under $OUT.
# Needs a Python with a CUDA torch and transformers (./.venv if present, else python3); no network,
# no Docker. Usage: OUT=/some/dir benchmarks/gpu_machine.sh [--small] [--budget-s 60] ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export OUT=${OUT:-build/gpu_machine}
mkdir -p "$OUT"
if ! "$PY" -c 'import torch, transformers, pydantic, pytest' 2>"$OUT/imports.err"; then
  echo "gpu_machine: $PY lacks a package this needs (torch, transformers, pydantic, pytest):" >&2
  cat "$OUT/imports.err" >&2
  exit 2
fi
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
          "available", torch.cuda.is_available())'
exec "$PY" benchmarks/gpu_machine.py --out "$OUT" "$@" 2> >(tee "$OUT/gpu_machine.log" >&2)
