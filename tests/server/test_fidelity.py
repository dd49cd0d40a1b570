"""The served answers equal the original's inference: greedy tokens through the real HTTP server against the
reference model fed inputs built the original's way.

The original (Spatial-MLLM 9fc4738, transformers 4.51.3) samples frames with qwen-vl-utils 0.0.14
(``process_vision_info``, ``nframes``) and calls the processor without the sampled frame rate, which 4.51.3 takes
as 2.0 fps (``SEED_SAMPLED_FPS``; transformers 5 would assume another rate, so it is passed explicitly). Its
``generate`` call sets ``do_sample=True, temperature=0.1, top_p=0.001`` over the checkpoint's
``generation_config.json`` (``top_k`` 1, ``repetition_penalty`` 1.05): the server's requests here set nothing
but ``max_tokens``, so its defaults are under test too. Videos differ in fps, length and frame count, so a
server that placed frames by their real time (``time_axis: real_fps``) would disagree; that opt-in is checked
against the reference given the real sampled rate.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from media import data_url, encode_mp4

from model_plugin.reference.demo import synthetic_video
from model_plugin.reference.inference import build_inputs
from model_plugin.seed_rules import SEED_SAMPLED_FPS

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"
QUESTION = "How many chairs are in this room?"
MAX_TOKENS = 16
# the live server's caps (tests/conftest.py), as the seed's qwen-vl-utils element would carry them
MIN_PIXELS, MAX_PIXELS = 3136, 12544
# (source fps, source frames, height, width, frames requested): the seed's 1.0 s per temporal patch is wrong for
# each in a different way (0.75 s, 0.8 s, 0.42 s per 2 frames)
VIDEOS = {
    "8fps-24f-8": (8, 24, 112, 140, 8),
    "25fps-60f-6": (25, 60, 96, 160, 6),
    "30fps-75f-12": (30, 75, 120, 96, 12),
}


@pytest.fixture(scope="module")
def qwen_vl_utils():
    """qwen_vl_utils.vision_process on its decord backend, as the seed's environment reads videos."""
    from qwen_vl_utils import vision_process

    previous = vision_process.FORCE_QWENVL_VIDEO_READER
    vision_process.FORCE_QWENVL_VIDEO_READER = "decord"
    vision_process.get_video_reader_backend.cache_clear()
    yield vision_process
    vision_process.FORCE_QWENVL_VIDEO_READER = previous
    vision_process.get_video_reader_backend.cache_clear()


def make_video(tmp_path: Path, name: str) -> Path:
    fps, frames, height, width, _ = VIDEOS[name]
    clip = synthetic_video(frames=frames, height=height, width=width, seed=frames + fps)
    return encode_mp4(np.ascontiguousarray(clip.permute(0, 2, 3, 1).numpy()), tmp_path / f"{name}.mp4", fps=fps)


def seed_frames(qwen_vl_utils, path: Path, nframes: int) -> tuple[torch.Tensor, float]:
    """The frames (uint8 [T,3,H,W]) and sampled fps qwen-vl-utils hands the seed's processor."""
    element = {"video": str(path), "nframes": nframes, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    video, sample_fps = qwen_vl_utils.fetch_video(element, return_video_sample_fps=True)
    assert torch.equal(video, video.round()), "qwen-vl-utils frames are integer-valued"
    return video.to(torch.uint8), float(sample_fps)


def reference_tokens(reference, processor, frames: torch.Tensor, fps: float) -> tuple[list[int], list[int]]:
    """Prompt ids and new tokens of the seed's ``generate`` call on the reference model."""
    inputs = build_inputs(processor, [frames], QUESTION, fps=fps)
    prompt_len = inputs["input_ids"].shape[1]
    with torch.no_grad():
        out = reference.generate(**inputs, max_new_tokens=MAX_TOKENS, do_sample=True, temperature=0.1, top_p=0.001)
    return inputs["input_ids"][0].tolist(), out[0, prompt_len:].tolist()


def served_tokens(live, path: Path, sampling: dict) -> tuple[list[int], list[int]]:
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "video_url", "video_url": {"url": data_url(path)}},
                    {"type": "text", "text": QUESTION},
                ],
            }
        ],
        "max_tokens": MAX_TOKENS,  # the only decoding field: the server's defaults must be the seed's
        "return_token_ids": True,
        "video_sampling": sampling,
    }
    response = httpx.post(f"{live.base}/v1/chat/completions", json=body, headers=live.headers, timeout=300)
    assert response.status_code == 200, response.text
    reply = response.json()
    return reply["prompt_token_ids"], reply["choices"][0]["token_ids"]


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_served_tokens_equal_the_seed_inference(
    live, reference, processor, qwen_vl_utils, tmp_path: Path, name: str
) -> None:
    path = make_video(tmp_path, name)
    nframes = VIDEOS[name][-1]
    frames, sample_fps = seed_frames(qwen_vl_utils, path, nframes)
    assert sample_fps != SEED_SAMPLED_FPS  # the two time axes really differ on this video

    ref_prompt, ref_tokens = reference_tokens(reference, processor, frames, SEED_SAMPLED_FPS)
    prompt, tokens = served_tokens(live, path, {"num_frames": nframes})
    assert prompt == ref_prompt
    assert tokens == ref_tokens

    # the opt-in: real timing, equal to the reference given the real sampled rate
    _, real_ref_tokens = reference_tokens(reference, processor, frames, sample_fps)
    _, real_tokens = served_tokens(live, path, {"num_frames": nframes, "time_axis": "real_fps"})
    assert real_tokens == real_ref_tokens


def test_one_shot_route_follows_the_seed_rule(live, reference, processor, qwen_vl_utils, tmp_path: Path) -> None:
    name = "8fps-24f-8"
    path = make_video(tmp_path, name)
    frames, _ = seed_frames(qwen_vl_utils, path, VIDEOS[name][-1])
    _, ref_tokens = reference_tokens(reference, processor, frames, SEED_SAMPLED_FPS)
    response = httpx.post(
        f"{live.base}/v1/video/chat",
        files={"video": (path.name, path.read_bytes(), "video/mp4")},
        data={"question": QUESTION, "max_tokens": str(MAX_TOKENS)},
        headers=live.headers,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    expected = processor.batch_decode([ref_tokens], skip_special_tokens=True)[0]
    assert response.json()["choices"][0]["message"]["content"] == expected
