"""VGGT preprocessing and loading for space-aware sampling (tiny checkpoint, CPU)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_plugin.config import VGGTSpatialEncoderConfig
from model_plugin.reference import SpatialMLLMForConditionalGeneration
from sampling.geometry import GeometryNetwork, candidate_indices, preprocess_frames, vggt_input_size


def _frames(count: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_candidates_are_the_seeds_linspace() -> None:
    assert candidate_indices(500).tolist() == np.linspace(0, 499, 128, dtype=int).tolist()
    assert candidate_indices(50).tolist() == list(range(50))
    with pytest.raises(ValueError):
        candidate_indices(0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((480, 640), (392, 518, False)), ((640, 480), (392, 518, True)), ((1080, 1920), (294, 518, False))],
)
def test_input_size(size: tuple[int, int], expected: tuple[int, int, bool]) -> None:
    assert vggt_input_size(*size) == expected


def test_portrait_frames_are_turned_clockwise() -> None:
    portrait = _frames(2, 80, 60, seed=1)
    turned = np.ascontiguousarray(np.rot90(portrait, k=-1, axes=(1, 2)))
    assert torch.equal(preprocess_frames(portrait), preprocess_frames(turned))
    assert preprocess_frames(portrait).shape == (2, 3, 392, 518)


def test_preprocess_output_range_and_shape() -> None:
    images = preprocess_frames(_frames(3, 48, 64))
    assert images.shape == (3, 3, 392, 518)
    assert images.dtype == torch.float32 and images.min() >= 0.0 and images.max() <= 1.0
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frames(_frames(1, 48, 64).astype(np.float32))


@pytest.mark.parametrize("arch", ["v1.1", "v1.0"])
def test_points_match_the_reference_models_vggt(request: pytest.FixtureRequest, arch: str) -> None:
    """Both checkpoint layouts give their VGGT (v1.1 ``spatial_encoder.vggt_model.*``, v1.0 ``vggt.*``)."""
    from model_plugin.reference import Qwen2_5_VL_VGGTForConditionalGeneration

    if arch == "v1.0":
        checkpoint = request.getfixturevalue("tiny_checkpoint_v1_0")
        vggt = Qwen2_5_VL_VGGTForConditionalGeneration.from_pretrained(checkpoint).eval().vggt
    else:
        checkpoint = request.getfixturevalue("tiny_checkpoint")
        vggt = SpatialMLLMForConditionalGeneration.from_pretrained(checkpoint).eval().spatial_encoder.vggt_model
    network = GeometryNetwork.load(checkpoint)
    images = preprocess_frames(_frames(3, 42, 56, seed=3))
    points, conf = network.world_points(images)
    with torch.no_grad():
        ref_points, ref_conf = vggt.predict_world_points(images[None])
    assert points.shape == (3, *images.shape[2:], 3) and conf.shape == (3, *images.shape[2:])
    assert torch.equal(points, ref_points[0]) and torch.equal(conf, ref_conf[0])


def test_standalone_vggt_file_loads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    prefix = "spatial_encoder.vggt_model."
    weights = load_file(tiny_checkpoint / "model.safetensors")
    standalone = tmp_path / "vggt.safetensors"
    save_file({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}, standalone)
    spatial = json.loads((tiny_checkpoint / "config.json").read_text())["spatial_config"]
    network = GeometryNetwork.load(standalone, config=VGGTSpatialEncoderConfig(**spatial))
    images = preprocess_frames(_frames(2, 42, 56, seed=4))
    assert torch.equal(network.world_points(images)[0], GeometryNetwork.load(tiny_checkpoint).world_points(images)[0])


def test_a_checkpoint_without_vggt_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "other.safetensors"
    save_file({"model.embed_tokens.weight": torch.zeros(2, 2)}, bogus)
    with pytest.raises(ValueError, match="does not hold a VGGT"):
        GeometryNetwork.load(bogus)


def test_preprocessing_raises_no_warning() -> None:
    """Our own UserWarning (torch wrapping PIL's read-only array) once showed on the first space-aware request."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        preprocess_frames(_frames(2, 42, 56))


def test_the_geometry_worker_loads_neither_qwen_nor_vllm() -> None:
    """The worker process (``sampling.geometry_pass``, then ``sampling.geometry`` for VGGT) starts in seconds only
    if VGGT's config comes without Qwen2.5-VL's and transformers' auto classes (``model_plugin.spatial_config``):
    through them it took twice as long to import, on every server start and worker restart."""
    heavy = ("vllm", "transformers.models.qwen2_5_vl", "transformers.models.auto.auto_factory")
    code = f"import sys, sampling.geometry_pass, sampling.geometry; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
