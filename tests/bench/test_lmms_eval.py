"""lmms-eval 0.7.3, unmodified, against the live tiny-model server on a mini VSI-Bench in the stock task's format.

Four ways a researcher runs it: the stock ``openai`` backend sending frames as images (the server serves them as one
video), the same backend passing ``file://`` video URLs with ``media_io_kwargs.video.num_frames`` (the session
server runs with ``--allowed-local-media-path``), the same with the video inlined as a ``data:`` URL, and this
project's ``spatial_mllm`` model class (uploads, ``video_sampling``). Every document must be answered and scored
(lmms-eval scores a failed request's error text as an answer, so answers are checked for its failure marker), and
the server's ``spatial_mllm_video_frames`` histogram must show one video per document with the frame count the
client asked for. lmms-eval runs in its own environment (:mod:`lmms_eval_env`); it exits 0 even when evaluation
raised, so the run's results file is what counts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from lmms_eval_env import lmms_eval_python
from vsibench_lmms_task import DATA_URL_TASK, TASK, LmmsTask, write_lmms_task

pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]
MODEL = "spatial-mllm-tiny"
FRAMES = 6  # what the stock backend asks for (its max_frames_num)
OUR_FRAMES = 4  # what our model class asks for (video_sampling.num_frames)
FAILED_MARK = "LMMS_EVAL_REQUEST_FAILED"
RUN_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def lmms_python() -> Path:
    return lmms_eval_python()


@pytest.fixture(scope="module")
def task(live, lmms_python: Path) -> LmmsTask:
    where = "import lmms_eval, pathlib; print(pathlib.Path(lmms_eval.__file__).parent / 'tasks' / 'vsibench')"
    template = subprocess.run([lmms_python, "-c", where], check=True, capture_output=True, text=True, env=lmms_env())
    return write_lmms_task(live.media_root / "lmms", Path(template.stdout.strip()) / "_default_template_yaml")


def lmms_env(**extra: str) -> dict[str, str]:
    """The environment lmms-eval runs in: its own packages only (no PYTHONPATH into the server's), and Python free to
    write bytecode: the first run writes the .pyc of what lmms-eval imports (torch, transformers, datasets), the
    others reuse them, where a machine that sets PYTHONDONTWRITEBYTECODE would compile them again on every run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def frames_histogram(live, source: str) -> tuple[int, float]:
    """(videos, total frames) the server has handed to the model from ``source`` so far."""
    text = httpx.get(f"{live.base}/metrics", timeout=10).text
    values = []
    for name in ("count", "sum"):
        match = re.search(rf'^spatial_mllm_video_frames_{name}\{{source="{source}"\}} (\S+)$', text, re.M)
        values.append(float(match.group(1)) if match else 0.0)
    return int(values[0]), values[1]


def run_lmms_eval(python: Path, task: LmmsTask, out: Path, model: str, model_args: str, task_name: str) -> float:
    command = [
        str(python), "-m", "lmms_eval", "--model", model, "--model_args", model_args, "--tasks", task_name,
        "--include_path", str(task.include_path), "--output_path", str(out), "--log_samples", "--batch_size", "1",
    ]  # fmt: skip
    env = lmms_env(HF_HOME=str(task.hf_home))
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
    assert list(out.rglob("*_results.json")), "no results: evaluation raised\n" + done.stderr[-6000:]
    return elapsed


def check_scored(out: Path, task: LmmsTask, task_name: str) -> dict[str, float]:
    """Every document answered (no failure text) and scored; returns the task's metrics."""
    results = json.loads(next(out.rglob("*_results.json")).read_text())["results"][task_name]
    samples = [json.loads(line) for path in out.rglob(f"*_samples_{task_name}.jsonl") for line in path.open()]
    assert len(samples) == len(task.bench.rows)
    types = set()
    for sample in samples:
        answer = sample["filtered_resps"]
        answer = answer[0] if isinstance(answer, list) else answer
        assert FAILED_MARK not in answer, answer
        scored = sample["vsibench_overall"]  # the document as the task's process_results scored it
        assert "accuracy" in scored or "MRA:.5:.95:.05" in scored, scored
        types.add(scored["question_type"])
    assert types == {row["question_type"] for row in task.bench.rows}
    assert isinstance(results["vsibench_overall,none"], float)
    return results


STOCK = f"model_version={MODEL},api_key={{key}},base_url={{base}}/v1,max_frames_num={FRAMES},num_concurrent=4"
STOCK += ",timeout=300"
MODES = {
    # mode: (lmms-eval model, model_args, task, histogram source, frames per video)
    "images": ("openai", STOCK, TASK, "images", FRAMES),
    "file_url": ("openai", STOCK + ",pass_video_url=True", TASK, "video", FRAMES),
    "data_url": ("openai", STOCK + ",pass_video_url=True", DATA_URL_TASK, "video", FRAMES),
    "spatial_mllm": (
        "spatial_mllm",
        f"base_url={{base}},api_key={{key}},strategy=space_aware,num_frames={OUR_FRAMES},num_concurrent=4",
        TASK,
        "video",
        OUR_FRAMES,
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_lmms_eval_vsibench(mode: str, lmms_python: Path, live, task: LmmsTask, tmp_path: Path) -> None:
    model, args, task_name, source, frames = MODES[mode]
    before = frames_histogram(live, source)
    elapsed = run_lmms_eval(lmms_python, task, tmp_path, model, args.format(base=live.base, key=live.key), task_name)
    results = check_scored(tmp_path, task, task_name)
    videos, total = frames_histogram(live, source)
    documents = len(task.bench.rows)
    assert (videos - before[0], total - before[1]) == (documents, documents * frames)
    print(f"lmms-eval {mode}: {documents} documents in {elapsed:.1f} s, overall {results['vsibench_overall,none']}")
