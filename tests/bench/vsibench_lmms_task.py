"""The mini VSI-Bench as an lmms-eval task, in the stock ``vsibench`` task's format, for ``--include_path``.

``vsibench_mini`` is lmms-eval's own ``vsibench`` (its template and utils, unmodified) on a local ``dataset_path:
json``; the videos lie where its utils look (``$HF_HOME/vsibench/<dataset>/<scene>.mp4``). ``vsibench_mini_data_url``
differs only in handing the video over as a ``data:`` URL (the task-side wrapper a user writes to send videos
inline), for the backend's ``pass_video_url`` mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vsibench_mini import MiniBench, write_mini_vsibench

TASK = "vsibench_mini"
DATA_URL_TASK = "vsibench_mini_data_url"
DATA_URL_UTILS = """
import base64
from pathlib import Path

from lmms_eval.tasks.vsibench import utils as stock


def doc_to_messages(doc, lmms_eval_specific_kwargs=None):
    messages = stock.vsibench_doc_to_messages(doc, lmms_eval_specific_kwargs)
    for part in messages[0]["content"]:
        if part["type"] == "video":
            part["url"] = "data:video/mp4;base64," + base64.b64encode(Path(part["url"]).read_bytes()).decode()
    return messages
"""


@dataclass(frozen=True)
class LmmsTask:
    include_path: Path
    hf_home: Path
    bench: MiniBench


def write_lmms_task(root: Path, stock_template: Path) -> LmmsTask:
    """Videos, annotations and the two task yamls under ``root`` (which the server must allow for ``file://``)."""
    bench = write_mini_vsibench(root / "data", "lmms", n_videos=2, per_video=5)
    hf_home = root / "hf"
    hf_home.mkdir()
    (hf_home / "vsibench").symlink_to(bench.videos, target_is_directory=True)
    include = root / "tasks"
    include.mkdir()
    data_files = json.dumps({"test": str(bench.annotations / "test.jsonl")})
    for task, extra in ((TASK, ""), (DATA_URL_TASK, "doc_to_messages: !function data_url_utils.doc_to_messages\n")):
        (include / f"{task}.yaml").write_text(
            f"include: {stock_template}\ntask: {task}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files: {data_files}\ntest_split: test\n{extra}"
        )
    (include / "data_url_utils.py").write_text(DATA_URL_UTILS)
    return LmmsTask(include, hf_home, bench)
