#!/usr/bin/env bash
# The one GPU check (bench/gpu_check.py), on a machine with torch and CUDA but not the project:
# the carried wheels (.whl/, from `make gpu-wheels`) are installed beside the system's packages
# first. Usage: bash bench/gpu_check.sh [gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/pax-site .whl/*.whl
  export PYTHONPATH="/tmp/pax-site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec python3 bench/gpu_check.py "$@"
