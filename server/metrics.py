"""Our Prometheus metrics. They live in the default registry, which vLLM's ``/metrics`` already exposes beside
its own ``vllm:*`` series, so one scrape sees both."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

DECODE_SECONDS = Histogram(
    "spatial_mllm_decode_seconds", "Time to open a video and decode the sampled frames.", buckets=SECONDS_BUCKETS
)
SAMPLING_SECONDS = Histogram(
    "spatial_mllm_sampling_seconds",
    "Time to choose and prepare frames (decode included), by strategy.",
    ["strategy"],
    buckets=SECONDS_BUCKETS,
)
SAMPLING_CACHE = Counter(
    "spatial_mllm_sampling_cache_total",
    "Sampling-cache lookups by result (hit, miss, joined, prepare_on_upload for an upload that started it, or "
    "stored_selection: a miss served by the space-aware selection stored with the upload, with no VGGT pass).",
    ["result"],
)
UPLOAD_BYTES = Counter("spatial_mllm_upload_bytes_total", "Bytes of video received, by how they came.", ["source"])
REQUESTS = Counter("spatial_mllm_requests_total", "HTTP requests by route and status code.", ["route", "status"])
REJECTED = Counter("spatial_mllm_rejected_total", "Requests refused by admission control.", ["reason"])

# space-aware sampling's geometry worker (server.frames.geometry_worker)
SPACE_AWARE_STAGE_SECONDS = Histogram(
    "spatial_mllm_space_aware_stage_seconds",
    "Seconds per stage of space-aware sampling: candidate_decode (decode + VGGT preprocessing, API process), "
    "queue (waiting for the worker), vggt, selection (in the worker), resize (chosen frames, API process).",
    ["stage"],
    buckets=SECONDS_BUCKETS,
)
GEOMETRY_QUEUE_DEPTH = Gauge("spatial_mllm_geometry_queue_depth", "Space-aware passes waiting for the worker.")
PASSES_RUNNING = Gauge("spatial_mllm_geometry_passes_running", "Space-aware VGGT passes running (at most 1).")
GEOMETRY_MEMORY = Gauge(
    "spatial_mllm_geometry_memory_bytes",
    "The geometry worker's memory budget, and the peak of its last pass (measured on a GPU, estimated on a CPU).",
    ["kind"],
)
GEOMETRY_RESTARTS = Counter("spatial_mllm_geometry_restarts_total", "Geometry worker restarts after it died.")
GEOMETRY_PASSES = Counter(
    "spatial_mllm_geometry_passes_total",
    "Space-aware passes by outcome: done, cancelled (nobody waited any more), failed, lost (the worker died).",
    ["outcome"],
)
VIDEO_FRAMES = Histogram(
    "spatial_mllm_video_frames",
    "Frames handed to the model per video, by where they came from (a sampled video or a list of images).",
    ["source"],
    buckets=(2, 4, 8, 16, 32, 64, 128),
)
