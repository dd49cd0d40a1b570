"""``python -m bench.vsibench run`` end to end against the live tiny-model server, on a synthetic mini VSI-Bench.

The tiny model answers with random tokens, so accuracy is about zero; what is checked is the machinery: every
question asked once and recorded in the seed's results format, resume without re-asking, one upload per video
reused by all its questions (and by the resumed run), failures recorded without ending the run, metrics and
table on the outputs.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from vsibench_mini import MiniBench, write_mini_vsibench

from bench.vsibench.__main__ import main
from bench.vsibench.prompts import MCA_SUFFIX, NA_SUFFIX
from bench.vsibench.scoring import MCA_QUESTION_TYPES, NA_QUESTION_TYPES

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"
ROW_KEYS = {"sample", "prompt", "model_output", "cleaned_model_output", "cleaned_gt_answer", "reward", "correct"}
CHAT_200 = re.compile(r'^spatial_mllm_requests_total\{route="/v1/chat/completions",status="200"\} (\S+)$', re.M)
SAMPLING_MISS = re.compile(r'^spatial_mllm_sampling_cache_total\{result="miss"\} (\S+)$', re.M)


def _counter(live, pattern: re.Pattern[str]) -> int:
    match = pattern.search(httpx.get(f"{live.base}/metrics", timeout=10).text)
    return int(float(match.group(1))) if match else 0


def chat_requests_served(live) -> int:
    """Successful chat completions so far, from the server's own counter."""
    return _counter(live, CHAT_200)


def videos_sampled(live) -> int:
    """Sampling-cache misses so far: how many times the server decoded and sampled a video."""
    return _counter(live, SAMPLING_MISS)


def server_files(live, scenes: list[str]) -> dict[str, list[str]]:
    """Uploaded file ids on the server by scene (file name ``<scene>.mp4``)."""
    listed = httpx.get(f"{live.base}/v1/files", headers=live.headers, timeout=10).json()["data"]
    return {scene: [f["id"] for f in listed if f["filename"] == f"{scene}.mp4"] for scene in scenes}


def run_cli(live, bench: MiniBench, out: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--base-url", live.base, "--api-key", live.key,
            "--annotations", str(bench.annotations), "--videos", str(bench.videos), "--out", str(out),
            "--max-tokens", "6", "--no-progress", *extra,
        ]
    )  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_seed_rows(rows: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The seed's results format, in dataset order, with the seed's prompt wording."""
    assert [r["sample"] for r in rows] == expected
    for row in rows:
        assert set(row) == ROW_KEYS
        sample = row["sample"]
        assert row["prompt"].startswith(sample["question"] + "\n")
        if sample["question_type"] in MCA_QUESTION_TYPES:
            assert row["prompt"] == f"{sample['question']}\nOptions:\n" + "\n".join(sample["options"]) + (
                f"\n{MCA_SUFFIX}"
            )
        else:
            assert row["prompt"] == f"{sample['question']}\n{NA_SUFFIX}"
        assert isinstance(row["model_output"], str) and row["model_output"]
        assert 0.0 <= row["reward"] <= 1.0 and row["correct"] == (row["reward"] == 1.0)


def assert_metrics_shape(metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    assert set(metrics) == {"per_question_type", "acc", "mra", "all"}
    for group in ("acc", "mra", "all"):
        assert set(metrics[group]) == {"micro", "macro"}
        assert all(0.0 <= v <= 1.0 for v in metrics[group].values())
    counts = {}
    for row in rows:
        counts[row["sample"]["question_type"]] = counts.get(row["sample"]["question_type"], 0) + 1
    assert {q: v["count"] for q, v in metrics["per_question_type"].items()} == counts


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> MiniBench:
    return write_mini_vsibench(tmp_path_factory.mktemp("vsibench-mini"), prefix="mini")


@pytest.fixture(autouse=True)
def delete_uploads_afterwards(live):
    """The server is shared by the session (tests/server checks its upload store is empty): leave nothing there."""
    yield
    for entry in httpx.get(f"{live.base}/v1/files", headers=live.headers, timeout=10).json()["data"]:
        if entry["filename"].startswith(("mini_scene", "sa_scene")):
            response = httpx.delete(f"{live.base}/v1/files/{entry['id']}", headers=live.headers, timeout=10)
            assert response.status_code == 200, response.text


def test_run_resumes_reuses_uploads_and_writes_seed_outputs(live, mini: MiniBench, tmp_path: Path, capsys) -> None:
    out = tmp_path / "uniform-8f"
    assert {r["question_type"] for r in mini.rows} == set(MCA_QUESTION_TYPES) | set(NA_QUESTION_TYPES)

    # 1) interrupted early: only the first 10 questions
    served, sampled = chat_requests_served(live), videos_sampled(live)
    assert run_cli(live, mini, out, "--strategy", "uniform", "--num-frames", "8", "--limit", "10",
                   "--concurrency", "4") == 0  # fmt: skip
    assert chat_requests_served(live) - served == 10
    assert videos_sampled(live) - sampled == 3  # each video sampled once, for all its questions
    first = read_jsonl(out / "partial.jsonl")
    assert sorted(r["sample"]["id"] for r in first) == [r["id"] for r in mini.rows[:10]]
    assert_seed_rows(json.loads((out / "results.json").read_text()), mini.rows[:10])
    uploads = json.loads((out / "files.json").read_text())
    assert len(uploads) == 3  # the first 10 rows touch all three videos
    summary = capsys.readouterr().out
    assert re.search(r"answered 10 questions in [\d.]+ s wall: [\d.]+ requests/s at concurrency 4", summary)
    assert "(3 uploads, 0 answered earlier, 0 failed; 10/10 done)" in summary

    # 2) resumed: only the other 14 are asked, the first 10 answers stay as they were, no new upload
    served, sampled = chat_requests_served(live), videos_sampled(live)
    assert run_cli(live, mini, out, "--strategy", "uniform", "--num-frames", "8", "--concurrency", "4") == 0
    assert chat_requests_served(live) - served == 14
    assert videos_sampled(live) == sampled  # same uploads, same sampling: all cache hits
    lines = read_jsonl(out / "partial.jsonl")
    assert len(lines) == 24 and lines[:10] == first
    assert "(0 uploads, 10 answered earlier, 0 failed; 24/24 done)" in capsys.readouterr().out
    assert json.loads((out / "files.json").read_text()) == uploads
    results = json.loads((out / "results.json").read_text())
    assert_seed_rows(results, mini.rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert_metrics_shape(metrics, results)
    assert len(metrics["per_question_type"]) == 10

    # one file per video on the server, the one every question used
    video_of = {r["scene_name"]: f"{r['dataset']}/{r['scene_name']}" for r in mini.rows}
    assert server_files(live, mini.scenes) == {s: [uploads[video_of[s]]["id"]] for s in mini.scenes}

    # 3) nothing left to ask: no request at all; outputs unchanged
    served = chat_requests_served(live)
    assert run_cli(live, mini, out, "--strategy", "uniform", "--num-frames", "8") == 0
    assert chat_requests_served(live) == served
    assert json.loads((out / "results.json").read_text()) == results

    # another setting in the same folder is refused instead of mixing answers
    with pytest.raises(SystemExit, match="other settings"):
        run_cli(live, mini, out, "--strategy", "space_aware", "--num-frames", "4")

    # `table` reads the new metrics.json
    capsys.readouterr()
    assert main(["table", str(out / "metrics.json"), "--per-type"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| Model | Micro Acc | Micro MRA | Micro All | Macro Acc | Macro MRA | Macro All |")
    assert table[2].startswith("| uniform-8f | ") and table[2].count("|") == 18
    assert " - |" not in table[2]  # every type has a score


def test_space_aware_run_records_failures_and_retries_them(live, tmp_path: Path, capsys) -> None:
    bench = write_mini_vsibench(tmp_path / "bench", prefix="sa", n_videos=1, per_video=4, missing_videos=1)
    out = tmp_path / "sa-4f"
    served, sampled = chat_requests_served(live), videos_sampled(live)
    assert run_cli(live, bench, out, "--strategy", "space_aware", "--num-frames", "4", "--concurrency", "2") == 1
    assert chat_requests_served(live) - served == 4
    assert videos_sampled(live) - sampled == 1  # VGGT ran once for the video's four questions
    summary = capsys.readouterr().out
    assert "4 questions failed" in summary and "video not found" in summary
    failures = read_jsonl(out / "failures.jsonl")
    assert sorted(f["id"] for f in failures) == [r["id"] for r in bench.rows if r["scene_name"] == bench.scenes[1]]
    results = json.loads((out / "results.json").read_text())
    assert_seed_rows(results, [r for r in bench.rows if r["scene_name"] == bench.scenes[0]])
    assert_metrics_shape(json.loads((out / "metrics.json").read_text()), results)
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["video_sampling"] == {"strategy": "space_aware", "num_frames": 4}
    assert run["config"]["temperature"] == 0.1 and run["config"]["top_p"] == 0.001 and run["config"]["model"] == MODEL
    assert run["runs"][0]["answered"] == 4 and run["runs"][0]["failed"] == 4

    # the missing video appears: only its questions are asked again
    (bench.videos / "scannet").mkdir(exist_ok=True)
    source = bench.videos / "arkitscenes" / f"{bench.scenes[0]}.mp4"
    shutil.copy(source, bench.videos / "scannet" / f"{bench.scenes[1]}.mp4")
    served = chat_requests_served(live)
    assert run_cli(live, bench, out, "--strategy", "space_aware", "--num-frames", "4", "--concurrency", "2") == 0
    assert chat_requests_served(live) - served == 4
    assert_seed_rows(json.loads((out / "results.json").read_text()), bench.rows)
    assert [len(ids) for ids in server_files(live, bench.scenes).values()] == [1, 1]


def test_a_wrong_key_is_one_clear_line_not_a_traceback(live, mini: MiniBench, tmp_path: Path, capsys) -> None:
    assert run_cli(live, mini, tmp_path / "nokey", "--api-key", "wrong", "--limit", "1") == 2
    err = capsys.readouterr().err.strip()
    assert "--api-key" in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_help_shows_the_strategy_default(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "default: uniform" in capsys.readouterr().out
