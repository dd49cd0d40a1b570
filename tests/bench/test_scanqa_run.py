"""``python -m bench.scanqa run`` end to end against the live tiny-model server, on a synthetic mini ScanQA.

The tiny model answers with random tokens, so the scores are about zero; what is checked is the machinery: the
seed's question and frame request, every question asked once and recorded in the seed's results format, resume
without re-asking, one upload per video, metrics that ``score`` reproduces, and the server refusing a fixed frame
size above its pixel cap.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from scanqa_mini import MiniScanQA, write_mini_scanqa
from test_vsibench_run import chat_requests_served, read_jsonl, server_files, videos_sampled

from bench.scanqa.__main__ import main

pytestmark = pytest.mark.engine
SEED_ROW_KEYS = {"dataset", "sample_id", "prompt", "pred_response", "gt_response", "question_type"}
METRIC_KEYS = ["count", "n_predictions", "CIDEr", "BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L",
               "EM", "EM_n_correct"]  # fmt: skip
SMALL = ("--resized-height", "56", "--resized-width", "84")  # within the test server's 12544-pixel cap


@pytest.fixture(autouse=True)
def delete_uploads_afterwards(live):
    """The server is shared by the session (tests/server checks its upload store is empty): leave nothing there."""
    yield
    for entry in httpx.get(f"{live.base}/v1/files", headers=live.headers, timeout=10).json()["data"]:
        if entry["filename"].startswith("sqa_scene"):
            response = httpx.delete(f"{live.base}/v1/files/{entry['id']}", headers=live.headers, timeout=10)
            assert response.status_code == 200, response.text


def run_cli(live, bench: MiniScanQA, out: Path, *extra: str) -> int:
    return main(
        [
            "run",
            "--base-url", live.base, "--api-key", live.key,
            "--annotations", str(bench.annotations), "--videos", str(bench.videos), "--out", str(out),
            "--max-tokens", "4", "--no-progress", *extra,
        ]
    )  # fmt: skip


def assert_seed_rows(rows: list[dict], expected: list[dict]) -> None:
    assert [r["sample_id"] for r in rows] == [e["id"] for e in expected]
    for row, sample in zip(rows, expected, strict=True):
        assert set(row) == SEED_ROW_KEYS
        assert row["prompt"] == sample["conversations"][0]["value"]  # the seed's question, verbatim
        assert row["gt_response"] == sample["conversations"][1]["value"]
        assert (row["dataset"], row["question_type"]) == ("scanqa", sample["metadata"]["question_type"])
        assert isinstance(row["pred_response"], str) and row["pred_response"] == row["pred_response"].strip()


def test_mini_scanqa_end_to_end(live, tmp_path: Path, capsys) -> None:
    bench = write_mini_scanqa(tmp_path / "bench", prefix="sqa")
    out = tmp_path / "out"

    # 1) interrupted early: the first 4 questions
    served, sampled = chat_requests_served(live), videos_sampled(live)
    assert run_cli(live, bench, out, *SMALL, "--limit", "4", "--concurrency", "3") == 0
    assert chat_requests_served(live) - served == 4
    assert videos_sampled(live) - sampled == 2  # each video sampled once for all its questions
    first = read_jsonl(out / "partial.jsonl")
    assert_seed_rows(json.loads((out / "results.json").read_text()), bench.rows[:4])
    assert "(2 uploads, 0 answered earlier, 0 failed; 4/4 done)" in capsys.readouterr().out
    run = json.loads((out / "run.json").read_text())
    assert run["config"]["video_sampling"] == {
        "strategy": "uniform", "num_frames": 16, "resized_height": 56, "resized_width": 84,
    }  # fmt: skip
    assert (run["config"]["temperature"], run["config"]["top_p"], run["config"]["max_tokens"]) == (0.1, 0.001, 4)

    # 2) resumed: only the other 2 asked, earlier answers kept, no new upload, no new sampling
    served, sampled = chat_requests_served(live), videos_sampled(live)
    assert run_cli(live, bench, out, *SMALL, "--concurrency", "3") == 0
    assert chat_requests_served(live) - served == 2
    assert videos_sampled(live) == sampled
    assert read_jsonl(out / "partial.jsonl")[:4] == first
    assert "(0 uploads, 4 answered earlier, 0 failed; 6/6 done)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert_seed_rows(results, bench.rows)
    uploads = json.loads((out / "files.json").read_text())
    assert server_files(live, bench.scenes) == {s: [uploads[s]["id"]] for s in bench.scenes}

    # the run's metrics are what `score` computes from its results file
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == METRIC_KEYS and (metrics["count"], metrics["n_predictions"]) == (6, 6)
    assert main(["score", str(out / "results.json"), "--annotations", str(bench.annotations)]) == 0
    assert json.loads(capsys.readouterr().out) == metrics


def test_the_seeds_frame_size_above_the_server_cap_fails_clearly(live, tmp_path: Path, capsys) -> None:
    bench = write_mini_scanqa(tmp_path / "bench", prefix="sqa", n_videos=1, per_video=1)
    out = tmp_path / "out"
    assert run_cli(live, bench, out) == 1  # the default 480x640 rounds to 476x644, over the 12544-pixel cap
    failures = read_jsonl(out / "failures.jsonl")
    assert len(failures) == 1 and "BadRequestError" in failures[0]["error"]
    assert "video_sampling.resized_width" in failures[0]["error"] and "12544" in failures[0]["error"]
    assert json.loads((out / "results.json").read_text()) == [] and json.loads((out / "metrics.json").read_text()) == {}
