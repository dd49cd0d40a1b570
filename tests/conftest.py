"""Shared test configuration: where the golden fixtures live and how tests find them.

Fixtures are read from ``../shared/fixtures`` beside the checkout (never copied into the repo). A missing
fixture directory is a hard failure, not a skip: a green run must mean the fixtures were reproduced.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = Path(os.environ.get("SPATIAL_MLLM_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


def fixture_path(*parts: str) -> Path:
    """Path inside the shared golden-fixture tree; fails the test when it is absent."""
    path = FIXTURES_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"golden fixture missing: {path} (set SPATIAL_MLLM_FIXTURES or check out ../shared)")
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight checkpoint (original 4.51 layout, seed 0), built once per test session."""
    from model_plugin.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-spatial-mllm"), seed=0)
