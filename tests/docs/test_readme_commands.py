"""Every command the README shows works when pasted: extracted from README.md, not copied into the test.

* ``make demo`` is started as written (on a free port, ``HOME`` in a temporary folder so the demo's cache is
  fresh); the README's curl line, the curl line the demo prints when ready, and the README's Python SDK snippet
  then run against it exactly as written except for the port.
* ``make tiny`` and the README's CPU line for vLLM's own server (``python -m vllm.entrypoints.openai.api_server``)
  run as written except for the port, and that server answers a video question.
* Commands with placeholders (``OUT_DIR``, ``URL``, ``{a,b}``, ``[--opt]``) are templates: each flag they show
  must be one the program's ``--help`` lists.
* A few commands cannot run on a CPU machine without the Hugging Face hub; they are listed here with the reason,
  and a README command that is neither run, checked nor listed fails the test.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from media import data_url, encode_mp4
from processes import READY_LINE, free_port, stop, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
README = (REPO_ROOT / "README.md").read_text()
PROGRAMS = ("make ", "curl ", "python -m ", "spatial-mllm-serve", "vllm ")
VLLM_CPU_LINE = "python -m vllm.entrypoints.openai.api_server"
PLACEHOLDER = re.compile(r"(?<!\$)\b[A-Z][A-Z0-9_]{1,}\b|\{[^}]*,[^}]*\}|\[[^\]]*\]|\.\.\.")
# Commands that need what CI lacks, with the reason; everything else must be run or checked here.
NOT_HERE = {
    "make test": "CI's own command (.ci/run calls it)",
    "make bench": "takes ~15 min; tests/bench/test_report.py runs its quick form",
    "Diankun/": "downloads a real checkpoint from the Hugging Face hub and needs a GPU",
    "vllm serve": "the GPU wheel's command; the CPU wheel's `vllm` exits early (README, known issue)",
}


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        yield match.group(1), match.group(2)


def command_lines(text: str) -> list[str]:
    """Shell commands shown anywhere: lines of shell blocks (backslash continuations joined) and inline spans."""
    found: list[str] = []
    for language, body in fenced_blocks(text):
        if language in ("", "bash", "sh", "shell", "console"):
            for line in re.sub(r"\\\n\s*", " ", body).splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith(PROGRAMS):
                    found.append(line)
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"`\s*\n\s*", "` ", prose.replace("\n", " "))):
        if span.startswith(PROGRAMS):
            found.append(span.strip())
    return found


def python_snippets(text: str) -> list[str]:
    return [body for language, body in fenced_blocks(text) if language == "python"]


def help_program(command: str) -> list[str] | None:
    """The program part of a template command (``python -m bench.vsibench run``), or None when not a program."""
    words = command.split()
    if words[:2] == ["python", "-m"]:
        program = [sys.executable, "-m", words[2]]
        program += [w for w in words[3:4] if re.fullmatch(r"[a-z][a-z_-]*", w)]  # a subcommand
        return program
    if words[0] == "spatial-mllm-serve":
        return [sys.executable, "-m", "server"]
    return None


@functools.cache
def help_text(program: tuple[str, ...]) -> str:
    shown = subprocess.run([*program, "--help"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert shown.returncode == 0, shown.stderr[-2000:]
    return shown.stdout


def not_here(command: str) -> str | None:
    return next((why for key, why in NOT_HERE.items() if key in command), None)


RUN_HERE = ("make demo", "curl ", "make tiny", VLLM_CPU_LINE)  # run by the engine tests below


def checked_by_help() -> list[str]:
    """Program invocations (templates or not) that are not run here: their flags are checked against the
    program's ``--help``. A command that is run shows by running that its flags exist."""
    return [
        c
        for c in command_lines(README)
        if not not_here(c) and not c.startswith(RUN_HERE) and help_program(c) is not None
    ]


@pytest.mark.parametrize("command", sorted(set(checked_by_help())))
def test_shown_flags_exist(command: str) -> None:
    program = help_program(command)
    assert program is not None
    flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", command))
    missing = sorted(f for f in flags if f not in help_text(tuple(program)))
    assert not missing, f"`{command}` shows flags that `--help` does not list: {missing}"


def test_every_command_is_run_checked_or_listed() -> None:
    unhandled = [
        c for c in command_lines(README) if not (not_here(c) or c.startswith(RUN_HERE) or help_program(c) is not None)
    ]
    assert not unhandled, f"README commands this test neither runs nor checks: {unhandled}"
    placeholders = [c for c in command_lines(README) if c.startswith(RUN_HERE) and PLACEHOLDER.search(c)]
    assert not placeholders, f"commands meant to be pasted carry placeholders: {placeholders}"


@pytest.mark.engine
def test_readme_cpu_line_for_vllms_own_server(tmp_path: Path) -> None:
    """``make tiny``, then the README's CPU line for vLLM's server, pasted (the venv's python, a free port): it
    starts on this machine and answers a video question through the plugin alone. This is also the suite's test of
    the plugin in vLLM's own server, independently of ours: the entry point alone registers it, and a ``video_url``
    data URL becomes video tokens in the prompt. It runs before the demo's tests, so its server and the demo's
    are never up at once."""
    from model_plugin.reference.demo import synthetic_video

    (line,) = [c for c in command_lines(README) if c.startswith(f"{VLLM_CPU_LINE} --model")]
    assert "make tiny" in command_lines(README)
    made = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.synced", "tiny"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert made.returncode == 0, made.stderr[-3000:]
    port = free_port()
    command = line.replace("python ", f"{sys.executable} ", 1).replace("--port 8000", f"--port {port}")
    assert f"--port {port}" in command
    env = {key: value for key, value in os.environ.items() if not key.startswith("VLLM_CPU_KVCACHE")}
    log = tmp_path / "vllm.log"
    with log.open("w") as out:
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=REPO_ROOT, env=env, stdout=out, stderr=out)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_ready(base, process, log, 420)
        frames = synthetic_video(frames=8, height=112, width=140, seed=1).permute(0, 2, 3, 1).numpy()
        video = encode_mp4(np.ascontiguousarray(frames), tmp_path / "room.mp4")
        content = [{"type": "video_url", "video_url": {"url": data_url(video)}}, {"type": "text", "text": "Chairs?"}]
        messages = [{"role": "user", "content": content}]
        body = {"model": ".cache/tiny-spatial-mllm", "messages": messages, "max_tokens": 8, "temperature": 0}
        reply = httpx.post(f"{base}/v1/chat/completions", json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] == 8
        # 8 frames of 112x140 -> 4 x 4 x 5 = 80 video tokens in the prompt
        assert answer["usage"]["prompt_tokens"] > 80
        models = httpx.get(f"{base}/v1/models", timeout=10).json()
        assert models["data"][0]["id"] == ".cache/tiny-spatial-mllm"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path, Path]]:
    """``make demo`` as the README says, on a free port; yields (port, HOME, log)."""
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    log = home / "demo.log"
    env = {**os.environ, "HOME": str(home), "VLLM_CPU_KVCACHE_SPACE": "1"}
    env.pop("SPATIAL_MLLM_CACHE", None)
    # `-o .venv/.synced`: the environment is already set up (this test runs inside it); make must not re-sync it
    command = ["make", "--no-print-directory", "-o", ".venv/.synced", "demo", f"DEMO_PORT={port}"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process, log, 420, ready_line=READY_LINE)
        yield port, home, log
    finally:
        stop(process)


def _at_port(text: str, port: int) -> str:
    return text.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("localhost:8000", f"localhost:{port}")


def _run_shell(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, env=env, cwd=home)


def _assert_answer(result: subprocess.CompletedProcess[str], command: str) -> None:
    """The command succeeded and the server answered with what the route promises (a chat answer or a file)."""
    assert result.returncode == 0, f"`{command}` failed: {result.stderr[-2000:]}"
    assert '"error"' not in result.stdout, result.stdout[-2000:]
    expected = '"object":"file"' if "/v1/files" in command else '"choices"'
    assert expected in result.stdout.replace(" ", ""), result.stdout[-2000:]


@pytest.mark.engine
def test_readme_curl_lines_answer(demo: tuple[int, Path, Path]) -> None:
    port, home, _ = demo
    curls = [c for c in command_lines(README) if c.startswith("curl ") and not not_here(c)]
    assert curls, "the README shows no curl line for the demo"
    for command in curls:
        _assert_answer(_run_shell(_at_port(command, port), home), command)


@pytest.mark.engine
def test_the_printed_curl_line_answers(demo: tuple[int, Path, Path]) -> None:
    _, home, log = demo
    printed = [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("curl ")]
    assert printed, log.read_text()[-3000:]
    _assert_answer(_run_shell(printed[-1], home), printed[-1])


@pytest.mark.engine
def test_readme_python_snippets_run(demo: tuple[int, Path, Path]) -> None:
    port, home, _ = demo
    snippets = [s for s in python_snippets(README) if "OpenAI(" in s]
    assert snippets, "the README shows no openai SDK snippet"
    for snippet in snippets:
        code = _at_port(snippet, port) + "\nprint(reply.choices[0].message.content is not None)\n"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=home,
            env={**os.environ, "HOME": str(home)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip().endswith("True")
