#!/usr/bin/env bash
# The GPU benchmark in one command, for the day a GPU node is lent: needs only PyTorch (no vLLM, no network;
# random weights), finishes in a few minutes on one H100/H200 (the timeout below is 8), and rewrites
# docs/bench/gpu_spatial_encoder.json after every case (a time-out keeps what finished), which
# `python -m bench.report --render` puts on docs/BENCHMARKS.md. It ends with a labelled projection of a VSI-Bench
# run (uniform and space-aware) on this GPU. Extra arguments go to the script
# (e.g. `--reps 3`; `--device cpu --tiny` checks it on a CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT_JSON:-docs/bench/gpu_spatial_encoder.json}
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout 480 "${PYTHON:-python}" -m bench.gpu_spatial_encoder \
    --device cuda --dtype bfloat16 --json "$out" "$@"
echo "wrote $out"
