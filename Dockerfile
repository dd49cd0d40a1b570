# syntax=docker/dockerfile:1
# spatial-mllm-serve on the official vLLM image: CUDA, torch, vLLM and its flash-attention kernels come from
# there, this file adds only our package and the few runtime dependencies the image lacks. Runbook: docs/DEPLOY.md.
#
#   docker build -t spatial-mllm-serve .
#   docker run --gpus all --ipc=host -p 8000:8000 -e HF_TOKEN spatial-mllm-serve
#
# The tag must match the `vllm==` pin of pyproject's `gpu` extra (tests/deploy checks it); pin the digest too
# (vllm/vllm-openai:v0.32.0@sha256:...) once your registry mirror has it.
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0

# --- stage 1: our wheel (pure Python); the build tooling and the source tree stay out of the final image ---
FROM python:3.12-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model_plugin ./model_plugin
COPY sampling ./sampling
COPY server ./server
COPY bench ./bench
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- stage 2: the server ---
FROM ${VLLM_IMAGE}

# Runtime dependencies of pyproject's [project] dependencies that the vLLM image does not ship (torch,
# transformers, fastapi, ... it does); tests/deploy keeps the file's pins equal to pyproject's. The constraints
# freeze torch and vLLM at the image's own builds, so a resolver that wanted other versions fails the build
# instead of replacing CUDA wheels; the last step fails it when any requirement of ours is still unmet.
# `uv pip install --system` is how vLLM's docs extend this image; its Python is the system one, which a PEP 668
# marker may guard, hence UV_BREAK_SYSTEM_PACKAGES for this step only.
COPY deploy/docker/extra-requirements.txt deploy/docker/image_deps.py /tmp/spatial-mllm/
COPY --from=wheel /wheels /tmp/spatial-mllm/wheels
RUN export UV_BREAK_SYSTEM_PACKAGES=1 \
    && python3 /tmp/spatial-mllm/image_deps.py freeze torch torchvision vllm > /tmp/spatial-mllm/keep.txt \
    && uv pip install --system --no-cache --constraint /tmp/spatial-mllm/keep.txt \
        --requirement /tmp/spatial-mllm/extra-requirements.txt \
    && uv pip install --system --no-cache --no-deps /tmp/spatial-mllm/wheels/*.whl \
    && python3 /tmp/spatial-mllm/image_deps.py check spatial-mllm-serve \
    && rm -rf /tmp/spatial-mllm

# A fixed unprivileged uid (not 1000, which Ubuntu 24.04 bases already give to `ubuntu`); Kubernetes' fsGroup
# and compose's named volumes rely on it. /data is created here so fresh named volumes inherit the ownership.
ARG APP_UID=10001
RUN useradd --uid ${APP_UID} --gid 0 --create-home --home-dir /home/app --shell /usr/sbin/nologin app \
    && mkdir -p /data/huggingface /data/uploads \
    && chown -R ${APP_UID}:0 /data \
    && chmod -R g+rwX /data /home/app
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/spatial-mllm-entrypoint

# Server options come from SPATIAL_MLLM_<OPTION> variables (see `spatial-mllm-serve --help`), so a compose
# `command:` or Kubernetes `args:` only has to carry what differs. MODEL is read by the entrypoint.
# 0.78 of the GPU for the engine: space-aware sampling's geometry worker holds up to 14.4 GiB on the same GPU.
ENV MODEL=Diankun/Spatial-MLLM-v1.1-Instruct-135K \
    HOME=/home/app \
    HF_HOME=/data/huggingface \
    SPATIAL_MLLM_HOST=0.0.0.0 \
    SPATIAL_MLLM_PORT=8000 \
    SPATIAL_MLLM_UPLOADS_DIR=/data/uploads \
    SPATIAL_MLLM_GPU_MEMORY_UTILIZATION=0.78 \
    VLLM_NO_USAGE_STATS=1
VOLUME ["/data/huggingface", "/data/uploads"]
USER ${APP_UID}
WORKDIR /home/app
EXPOSE 8000

# Liveness: /health answers 503 while the weights download and load (minutes), 200 once the engine serves, 503 if
# it dies; a geometry worker that reloads leaves it at 200 (orchestrators that replace unhealthy containers, Swarm
# or ECS, must not restart the engine for it; /ready is readiness, what docker-compose.yml checks). The long start
# period keeps Docker from calling a loading server unhealthy. Python, because the image need not have curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20m --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SPATIAL_MLLM_PORT', '8000'), timeout=4)"]

ENTRYPOINT ["/usr/local/bin/spatial-mllm-entrypoint"]
CMD []
