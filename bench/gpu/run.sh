#!/usr/bin/env bash
# The GPU benchmark in one command, for the day a GPU node is lent: needs only PyTorch (no vLLM, no network;
# random weights), finishes in a few minutes on one H100/H200, and writes docs/bench/gpu_spatial_encoder.json,
# which `python -m bench.report --render` puts on docs/BENCHMARKS.md. Extra arguments go to the script
# (e.g. `--reps 3`; `--device cpu --tiny` checks it on a CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT_JSON:-docs/bench/gpu_spatial_encoder.json}
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout 480 "${PYTHON:-python}" -m bench.gpu_spatial_encoder \
    --device cuda --dtype bfloat16 --json "$out" "$@"
echo "wrote $out"
