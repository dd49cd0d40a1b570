"""The full-size VGGT-1B modules have exactly the official parameter names and shapes (built on meta)."""

from __future__ import annotations

import torch
from conftest import fixture_path

from model_plugin.vggt import VGGT

BUILT = ("aggregator", "camera_head", "point_head", "depth_head")
PARAMS_M = {"aggregator": 909.1, "camera_head": 216.2, "point_head": 32.65, "depth_head": 32.65}


def _official() -> dict[str, tuple[int, ...]]:
    rows = fixture_path("vggt_full_keys", "keys_and_shapes.tsv").read_text().splitlines()
    out = {}
    for row in rows:
        name, shape = row.split("\t")
        out[name] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return out


def test_full_size_keys_and_shapes_match_vggt_1b() -> None:
    official = _official()
    assert {name.split(".")[0] for name in official} == {*BUILT, "track_head"}
    with torch.device("meta"):
        model = VGGT()
    ours = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    expected = {name: shape for name, shape in official.items() if name.split(".")[0] in BUILT}
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    mismatched = {k: (ours[k], expected[k]) for k in expected if ours[k] != expected[k]}
    assert mismatched == {}
    for part, millions in PARAMS_M.items():
        count = sum(p.numel() for p in getattr(model, part).parameters())
        assert abs(count / 1e6 - millions) < 0.05, (part, count)


def test_serving_encoder_builds_only_the_aggregator() -> None:
    with torch.device("meta"):
        model = VGGT(enable_camera=False, enable_point=False, enable_depth=False)
    assert {name.split(".")[0] for name in model.state_dict()} == {"aggregator"}
