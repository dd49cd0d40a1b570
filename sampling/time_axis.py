"""Where sampled frames sit on M-RoPE's time axis: the seed's fixed rule, or the video's real timing.

Qwen2.5-VL gives each temporal patch (2 frames) the time position ``second_per_grid * tokens_per_second``.
The original Spatial-MLLM's inference and VSI-Bench scripts call the processor without the sampled frame rate,
so transformers 4.51.3 assumes 2.0 fps: one temporal patch is 1.0 s whatever the video (time positions 0, 2,
4, ... with ``tokens_per_second`` 2). That is the rule its published numbers were measured with, and the
default here (``seed_exact``). ``real_fps`` instead passes the sampled frames' real rate (frames taken / frames
spanned x the video's fps), so positions follow the video's real time: faithful to the clip, not to the seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from model_plugin.seed_rules import SEED_SAMPLED_FPS

TimeAxis = Literal["seed_exact", "real_fps"]
TIME_AXES: tuple[TimeAxis, ...] = ("seed_exact", "real_fps")


def video_metadata(
    indices: Sequence[int], source_fps: float, range_frames: int, duration_s: float, time_axis: TimeAxis
) -> dict[str, Any]:
    """The video metadata vLLM's Qwen2.5-VL processor reads for already sampled frames.

    The processor derives ``second_per_grid_ts = temporal_patch_size / sampled_fps`` with
    ``sampled_fps = len(frames_indices) / total_num_frames * fps``; ``seed_exact`` makes that 2.0.
    """
    common = {"video_backend": "decord", "do_sample_frames": False}
    if time_axis == "seed_exact":
        count = len(indices)
        return {
            "fps": SEED_SAMPLED_FPS,
            "duration": count / SEED_SAMPLED_FPS,
            "total_num_frames": count,
            "frames_indices": list(range(count)),
            **common,
        }
    if time_axis != "real_fps":
        raise ValueError(f"unknown time axis {time_axis!r}; expected one of {', '.join(TIME_AXES)}")
    return {
        "fps": source_fps,
        "duration": duration_s,
        "total_num_frames": range_frames,
        "frames_indices": [int(i) for i in indices],
        **common,
    }
