"""A video with fewer frames than asked for: what each strategy does, worded one way for both.

Each strategy keeps its original's rule (fidelity), and neither repeats a frame:

- uniform follows qwen-vl-utils' ``smart_nframes``, which raises: here a 400 naming ``video_sampling.num_frames``
  that says the most frames this video allows.
- space_aware follows the original's ``src/sampling/sa_sampling.py``: candidates are ``min(128, frames)``
  (``linspace`` over the video), ``K = min(num_frames, candidates)``, and its greedy voxel cover stops early when
  no candidate adds a voxel. A 5-frame clip asked for 8 gives (at most) 5 frames, a 1-frame clip 1, with a 200;
  the answer's ``video_frames`` entry then carries ``requested_frames`` and a ``note`` in the same words as
  uniform's refusal.
"""

from __future__ import annotations


def uniform_refusal(range_frames: int, needed: int, most: int) -> str:
    """Why uniform sampling refuses, and the count to ask for instead (``most``: the largest even count it takes)."""
    instead = f"ask for at most {most} frames or send a longer video" if most else "send a longer video"
    return (
        f"The video has {range_frames} frame(s) in the sampled range but {needed} are needed; uniform sampling "
        f"(qwen-vl-utils' rule) refuses rather than repeat frames: {instead}."
    )


def space_aware_note(video_frames: int, candidates: int, asked: int, chosen: int) -> str | None:
    """What space-aware sampling did when it chose fewer frames than ``asked`` (None when it chose them all)."""
    if chosen >= asked:
        return None
    if candidates < asked:
        return (
            f"The video has {video_frames} frame(s) but {asked} were asked; space-aware sampling (the original's "
            f"rule) uses at most every frame rather than repeat one: it chose {chosen}. Ask for at most "
            f"{candidates} frames to choose among them."
        )
    return (
        f"Space-aware sampling chose {chosen} of the {asked} frames asked: no other candidate adds a part of the "
        "scene (the original's rule: its voxel cover stops there)."
    )
