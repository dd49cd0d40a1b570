"""The offline pre-sampling CLI writes the seed's frame-folder layout, for both strategies.

The command runs in this process (``main`` with the command line's arguments): a child Python would only add
seconds of imports. The one check that needs a fresh process, that decord's own log lines stay quiet, runs the
real ``python -m sampling``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from media import encode_mp4
from PIL import Image

from model_plugin.reference.demo import synthetic_video
from sampling.presample import main, seed_uniform_indices
from sampling.uniform import linspace_indices


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    for name, frames in (("scene0001.mp4", 12), ("scene0002.mp4", 20), ("scene0003.MOV", 10)):
        pixels = synthetic_video(frames=frames, height=64, width=96, seed=frames).permute(0, 2, 3, 1).numpy()
        encode_mp4(np.ascontiguousarray(pixels), root / name, fps=4)
    (root / "notes.txt").write_text("not a video, and not *.mp4 either")
    (root / "broken.mp4").write_bytes(b"not really an mp4")
    return root


def test_seed_uniform_indices() -> None:
    assert seed_uniform_indices(12, 16) == list(range(12))
    # candidates are floor(i * 999 / 127); the 4 kept are candidates 0, 42, 84 and 127
    assert seed_uniform_indices(1000, 4) == [0, 330, 660, 999]
    assert len(seed_uniform_indices(1000, 16)) == 16


def test_help_names_which_original_each_uniform_rule_follows(capsys: pytest.CaptureFixture[str]) -> None:
    """The numbers --help quotes are what each side computes: the offline script truncates, the server rounds."""
    assert seed_uniform_indices(32, 8) == [0, 4, 8, 13, 17, 22, 26, 31]
    assert linspace_indices(0, 31, 8) == [0, 4, 9, 13, 18, 22, 27, 31]  # the server's (qwen-vl-utils)
    shown = " ".join(_run(capsys, "--help").stdout.split())
    assert "sa_sampling.py" in shown and "qwen-vl-utils" in shown
    assert "0,4,8,13,17,22,26,31" in shown and "0,4,9,13,18,22,27,31" in shown


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> Done:
    """``python -m sampling presample ARGS`` in this process: exit code and what it printed."""
    capsys.readouterr()
    try:
        code = main(["presample", *args])
    except SystemExit as exit_:  # argparse refusals
        code = exit_.code
    out, err = capsys.readouterr()
    return Done(code, out, err)


def test_uniform_presample_layout(video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = _run(capsys, str(video_dir), str(tmp_path), "--strategy", "uniform", "--num-frames", "8")
    assert done.returncode == 1  # broken.mp4 is reported and skipped
    assert "skipped broken.mp4" in done.stderr
    files = sorted((tmp_path / "uniform_sampling" / "scene0002").iterdir())
    expected = [f"scene0002_frame_{i:06d}.png" for i in seed_uniform_indices(20, 8)]
    assert [f.name for f in files] == expected
    assert Image.open(files[0]).size == (96, 64)  # full-resolution decoded frames
    assert len(list((tmp_path / "uniform_sampling" / "scene0001").iterdir())) == 8


def test_space_aware_presample_with_checkpoint_weights(
    video_dir: Path, tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _run(
        capsys,
        str(video_dir),
        str(tmp_path),
        "--strategy",
        "space_aware",
        "--num-frames",
        "4",
        "--weights",
        str(tiny_checkpoint),
    )
    assert "3 video(s) written" in done.stdout, done.stderr[-2000:]
    for name, total in (("scene0001", 12), ("scene0002", 20)):
        files = sorted((tmp_path / "sa_sampling" / name).iterdir())
        assert 1 <= len(files) <= 4
        indices = [int(re.fullmatch(rf"{name}_frame_(\d{{6}})\.png", f.name).group(1)) for f in files]
        assert indices == sorted(set(indices)) and all(0 <= i < total for i in indices)


def test_every_video_extension_is_read_and_other_files_are_named(video_dir: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "sampling", "presample", str(video_dir), str(tmp_path), "--num-frames", "8"]
    done = subprocess.run(command, capture_output=True, text=True)  # default strategy: uniform, no weights
    assert "3 video(s) written under" in done.stdout and "uniform_sampling" in done.stdout, done.stderr
    assert len(list((tmp_path / "uniform_sampling" / "scene0003").iterdir())) == 8  # upper-case .MOV
    assert "skipped notes.txt: not a video file name" in done.stderr
    assert ".cc:" not in done.stderr and "moov atom" not in done.stderr  # decord's own log lines stay quiet


def test_a_short_video_gets_a_warning(video_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = _run(capsys, str(video_dir), str(tmp_path), "--num-frames", "16")
    assert "warning: scene0001.mp4 has only 12 of the 16 frames asked" in done.stderr
    assert "warning: scene0003.MOV has only 10 of the 16 frames asked" in done.stderr
    assert "scene0002.mp4 has only" not in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--num-frames", "1"), "at least 2"),
        (("--strategy", "space_aware"), "needs --weights"),
    ],
)
def test_bad_options_are_refused_in_one_line(
    video_dir: Path, tmp_path: Path, args: tuple[str, ...], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _run(capsys, str(video_dir), str(tmp_path), *args)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "uniform_sampling").exists() and not (tmp_path / "sa_sampling").exists()
