#!/bin/sh
# The image's entry point. The model comes from $MODEL (the image's default, or compose/Kubernetes env), since the
# CLI itself reads only SPATIAL_MLLM_* variables; SPATIAL_MLLM_MODEL, when set, still takes precedence as the README
# promises. Every other option comes from the command (Dockerfile CMD, compose `command:`, Kubernetes `args:`) or
# from SPATIAL_MLLM_<OPTION> variables; a `--model` in the command wins over both (argparse keeps the last one).
# exec replaces the shell, so the server itself receives the SIGTERM of `docker stop` or the kubelet and drains.
set -eu
exec spatial-mllm-serve --model "${SPATIAL_MLLM_MODEL:-${MODEL:?set MODEL to a Hugging Face model id or a checkpoint directory}}" "$@"
