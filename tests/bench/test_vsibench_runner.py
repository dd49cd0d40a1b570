"""The ``run`` machinery without an engine: prompts, annotation loading, the output folder, and the runner
against an in-process fake of the API (503 + Retry-After, a failing question, expired uploads)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from vsibench_mini import CARD, MiniBench, write_mini_vsibench

import bench.eval_runner.runner as runner
from bench.vsibench.dataset import FrameFoldersUnsupported, annotation_files, load_questions, video_path
from bench.vsibench.prompts import MCA_SUFFIX, NA_SUFFIX, question_text
from bench.vsibench.runner import RunOptions, run_benchmark
from bench.vsibench.store import RunDir

# --------------------------------------------------------------------------------------------------------
# prompts: the seed's wording


def test_multiple_choice_prompt_has_options_block_and_letter_instruction() -> None:
    sample = {"id": 1, "question_type": "route_planning", "question": "Q?", "options": ["A. left", "B. right"]}
    expected = "Q?\nOptions:\nA. left\nB. right\nAnswer with the option's letter from the given choices directly."
    assert question_text(sample) == expected
    assert MCA_SUFFIX == "Answer with the option's letter from the given choices directly."


def test_numeric_prompt_has_short_answer_instruction() -> None:
    sample = {"id": 2, "question_type": "object_counting", "question": "How many chair(s)?", "options": None}
    assert question_text(sample) == "How many chair(s)?\nPlease answer the question using a single word or phrase."
    assert NA_SUFFIX == "Please answer the question using a single word or phrase."


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"id": 3, "question_type": "object_colour", "question": "?"}, "unknown question type"),
        ({"id": 4, "question_type": "route_planning", "question": "?", "options": None}, "must include 'options'"),
    ],
)
def test_bad_rows_are_refused(sample: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        question_text(sample)


# --------------------------------------------------------------------------------------------------------
# annotations and videos


@pytest.fixture
def mini(tmp_path: Path) -> MiniBench:
    return write_mini_vsibench(tmp_path / "bench", prefix="unit", n_videos=2, per_video=5)


def test_dataset_card_names_the_full_test_split(mini: MiniBench) -> None:
    assert annotation_files(mini.annotations) == [mini.annotations / "test.jsonl"]
    assert load_questions(mini.annotations) == mini.rows
    assert load_questions(mini.annotations / "test.jsonl", limit=3) == mini.rows[:3]


def test_parquet_card_falls_back_to_jsonl_without_pyarrow(mini: MiniBench) -> None:
    (mini.annotations / "README.md").write_text(CARD.replace("path: test.jsonl", "path: test.parquet"))
    (mini.annotations / "test.parquet").write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert annotation_files(mini.annotations) == [mini.annotations / "test.jsonl"]
    else:
        assert annotation_files(mini.annotations) == [mini.annotations / "test.parquet"]


def test_plain_folder_without_card(mini: MiniBench) -> None:
    (mini.annotations / "README.md").unlink()
    assert annotation_files(mini.annotations) == [mini.annotations / "test.jsonl"]


def test_duplicate_ids_are_refused(mini: MiniBench) -> None:
    path = mini.annotations / "test.jsonl"
    path.write_text(path.read_text() + json.dumps(mini.rows[0]) + "\n")
    with pytest.raises(ValueError, match="duplicate question id 1000"):
        load_questions(path)


def test_frame_folders_are_refused_with_an_explanation(mini: MiniBench, tmp_path: Path) -> None:
    sample = dict(mini.rows[0])
    assert video_path(mini.videos, sample) == mini.videos / sample["dataset"] / f"{sample['scene_name']}.mp4"
    frames = tmp_path / "frames" / "sa_sampling" / sample["scene_name"]
    frames.mkdir(parents=True)
    (frames / f"{sample['scene_name']}_frame_000000.png").write_bytes(b"")
    with pytest.raises(FrameFoldersUnsupported, match="not a list of frames"):
        video_path(tmp_path / "frames", sample)
    with pytest.raises(FileNotFoundError):
        video_path(tmp_path / "nowhere", sample)


# --------------------------------------------------------------------------------------------------------
# output folder


def test_interrupted_line_is_dropped_and_settings_are_guarded(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "out")
    row = {"sample": {"id": 7}, "model_output": "A"}
    store.append_answer(row)
    store.close()
    with store.partial.open("a") as handle:
        handle.write('{"sample": {"id": 8}, "mod')  # killed mid-write
    assert store.load_answers() == {"7": row}
    assert store.partial.read_text() == json.dumps(row) + "\n"  # safe to append again
    store.claim({"strategy": "uniform"})
    store.claim({"strategy": "uniform"})
    with pytest.raises(SystemExit, match="other settings"):
        store.claim({"strategy": "space_aware"})


# --------------------------------------------------------------------------------------------------------
# the runner against a fake API


class FakeAPI:
    """Enough of the server for the runner: models, Files API and chat completions answering the ground truth."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.truth = {(r["scene_name"], question_text(r)): r["ground_truth"] for r in rows}
        self.files: dict[str, str] = {}  # id -> file name
        self.uploads: list[str] = []
        self.chats: list[dict[str, Any]] = []
        self.busy_once: set[str] = set()  # question texts answered 503 the first time
        self.bad: set[str] = set()  # question texts answered 400
        self.expire_on_use: set[str] = set()  # file ids that vanish when a chat uses them
        self.delay_s = 0.0  # per request, to interrupt a run mid-way or to see requests overlap
        self.timeline: list[tuple[str, str]] = []  # ("start" | "end", file id) of each chat request

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        chat = request.url.path == "/v1/chat/completions"
        file_id = json.loads(request.content)["messages"][0]["content"][0]["file"]["file_id"] if chat else ""
        if chat:
            self.timeline.append(("start", file_id))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        response = self.handler(request)
        if chat:
            self.timeline.append(("end", file_id))
        return response

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx2.Response(200, json={"object": "list", "data": [{"id": "fake", "object": "model",
                                                                          "created": 0, "owned_by": "t"}]})  # fmt: skip
        if path == "/v1/files" and request.method == "POST":
            name = re.search(rb'filename="([^"]+)"', request.content).group(1).decode()
            file_id = f"file-{len(self.uploads)}"
            self.files[file_id] = name
            self.uploads.append(name)
            return httpx2.Response(200, json={"id": file_id, "object": "file", "bytes": 1, "created_at": 0,
                                              "filename": name, "purpose": "user_data"})  # fmt: skip
        if path.startswith("/v1/files/"):
            file_id = path.rsplit("/", 1)[1]
            if file_id not in self.files:
                return _error(404, f"No such file: {file_id!r}.", "file_id")
            return httpx2.Response(200, json={"id": file_id, "object": "file", "bytes": 1, "created_at": 0,
                                              "filename": self.files[file_id], "purpose": "user_data"})  # fmt: skip
        assert path == "/v1/chat/completions"
        body = json.loads(request.content)
        self.chats.append(body)
        file_id = body["messages"][0]["content"][0]["file"]["file_id"]
        text = body["messages"][0]["content"][1]["text"]
        if file_id in self.expire_on_use:
            self.expire_on_use.discard(file_id)
            self.files.pop(file_id)
        if file_id not in self.files:
            return _error(404, f"No such file: {file_id!r}.", "file_id")
        if text in self.busy_once:
            self.busy_once.discard(text)
            return httpx2.Response(503, headers={"Retry-After": "1"}, json={"error": {"message": "busy"}})
        if text in self.bad:
            return _error(400, "bad question", "messages")
        answer = self.truth[(self.files[file_id].removesuffix(".mp4"), text)]
        return httpx2.Response(
            200,
            json={
                "id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"<answer>{answer}</answer>"}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                          "prompt_tokens_details": {"cached_tokens": 4}},
            },
        )  # fmt: skip


def _error(status: int, message: str, param: str) -> httpx2.Response:
    return httpx2.Response(status, json={"error": {"message": message, "type": "x", "param": param, "code": status}})


@pytest.fixture
def fake(mini: MiniBench, monkeypatch: pytest.MonkeyPatch) -> FakeAPI:
    api = FakeAPI(mini.rows)

    def make_client(base_url: str, api_key: str, max_retries: int, timeout_s: float) -> openai.AsyncOpenAI:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(api.handle))
        return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=max_retries, http_client=http)

    monkeypatch.setattr(runner, "make_client", make_client)
    return api


def _options(mini: MiniBench, out: Path, **kw: Any) -> RunOptions:
    base = {"base_url": "http://fake", "annotations": mini.annotations, "videos": mini.videos, "out": out}
    return RunOptions(**base, **{"strategy": "space_aware", "concurrency": 3, "progress": False, **kw})


def test_runner_retries_busy_records_failures_reuses_uploads(mini: MiniBench, fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out"
    busy, bad = mini.rows[1], mini.rows[2]
    fake.busy_once.add(question_text(busy))
    fake.bad.add(question_text(bad))

    stats = asyncio.run(run_benchmark(_options(mini, out)))
    assert (stats.answered, stats.failed, stats.uploads, stats.questions) == (9, 1, 2, 10)
    assert sorted(fake.uploads) == sorted(f"{s}.mp4" for s in mini.scenes)  # one upload per video
    assert len(fake.chats) == 11  # 10 questions + the 503 retried by the SDK
    for body in fake.chats:  # the seed's decoding, the requested sampling, video part before the text
        assert body["model"] == "fake"
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.1, 0.001, 1024)
        assert body["video_sampling"] == {"strategy": "space_aware", "num_frames": 16}
        assert [part["type"] for part in body["messages"][0]["content"]] == ["file", "text"]
    asked = [b["messages"][0]["content"][1]["text"] for b in fake.chats]
    assert asked.count(question_text(busy)) == 2

    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["id"], f["error"].split(":")[0]) for f in failures] == [(bad["id"], "BadRequestError")]
    results = json.loads((out / "results.json").read_text())
    assert [r["sample"]["id"] for r in results] == [r["id"] for r in mini.rows if r is not bad]
    assert all(r["reward"] == 1.0 and r["correct"] for r in results)  # the fake answers the ground truth
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["all"] == {"micro": 1.0, "macro": 1.0}
    assert stats.cached_prompt_tokens == 4 * 9

    # resumed: only the failed question is asked again, with the stored file ids (no upload)
    fake.bad.clear()
    fake.chats.clear()
    stats = asyncio.run(run_benchmark(_options(mini, out)))
    assert (stats.answered, stats.failed, stats.uploads, stats.already_answered) == (1, 0, 0, 9)
    assert [b["messages"][0]["content"][1]["text"] for b in fake.chats] == [question_text(bad)]
    assert len(json.loads((out / "results.json").read_text())) == 10
    assert [run["answered"] for run in json.loads((out / "run.json").read_text())["runs"]] == [9, 1]


def test_expired_uploads_are_uploaded_again(mini: MiniBench, fake: FakeAPI, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    asyncio.run(run_benchmark(_options(mini, out, limit=4)))
    assert len(fake.uploads) == 2
    stored = json.loads((out / "files.json").read_text())

    # the server lost one file (restart, TTL) before the next run, and the other one during it
    first, second = (stored[f"{r['dataset']}/{r['scene_name']}"]["id"] for r in mini.rows[:2])
    del fake.files[first]
    fake.expire_on_use.add(second)
    stats = asyncio.run(run_benchmark(_options(mini, out, progress=True)))
    assert (stats.answered, stats.failed, stats.uploads) == (6, 0, 2)
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]  # live scores in the progress bar
    assert re.search(r"10/10 .*acc=100\.0, mra=100\.0, all=100\.0, fail=0", bar)
    assert len(fake.uploads) == 4
    assert first not in json.dumps(json.loads((out / "files.json").read_text()))


def test_frame_folder_run_stops_before_any_request(mini: MiniBench, fake: FakeAPI, tmp_path: Path) -> None:
    frames = tmp_path / "frames" / mini.rows[0]["dataset"] / mini.rows[0]["scene_name"]
    frames.mkdir(parents=True)
    (frames / f"{mini.rows[0]['scene_name']}_frame_000000.png").write_bytes(b"")
    opts = RunOptions(base_url="http://fake", annotations=mini.annotations, videos=tmp_path / "frames",
                      out=tmp_path / "out", progress=False)  # fmt: skip
    with pytest.raises(SystemExit, match="frames"):
        asyncio.run(run_benchmark(opts))
    assert fake.chats == [] and fake.uploads == []


def test_interrupted_run_resumes_where_it_stopped(mini: MiniBench, fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out"
    fake.delay_s = 0.05

    partial = out / "partial.jsonl"

    async def interrupted() -> None:
        task = asyncio.create_task(run_benchmark(_options(mini, out, concurrency=1)))
        while not partial.exists() or len(partial.read_text().splitlines()) < 3:
            await asyncio.sleep(0.005)
        task.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(interrupted())
    kept = partial.read_text().splitlines()
    assert 3 <= len(kept) < 10
    fake.chats.clear()
    stats = asyncio.run(run_benchmark(_options(mini, out)))
    assert (stats.already_answered, stats.answered, len(fake.chats)) == (len(kept), 10 - len(kept), 10 - len(kept))
    assert (out / "partial.jsonl").read_text().splitlines()[: len(kept)] == kept
    assert len(json.loads((out / "results.json").read_text())) == 10


def test_each_video_is_asked_alone_first_then_in_parallel(mini: MiniBench, fake: FakeAPI, tmp_path: Path) -> None:
    """The server samples a video on its first request; asking the rest only after it keeps that to once."""
    fake.delay_s = 0.02
    stats = asyncio.run(run_benchmark(_options(mini, tmp_path / "out", concurrency=4)))
    assert stats.answered == 10
    for file_id in {f for _, f in fake.timeline}:
        events = [kind for kind, f in fake.timeline if f == file_id]
        assert events[:2] == ["start", "end"]  # nothing else about this video while its first question runs
        rest = events[2:]
        assert max(rest[: i + 1].count("start") - rest[: i + 1].count("end") for i in range(len(rest))) > 1
