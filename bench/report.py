"""``make bench`` / ``python -m bench.report``: run every CPU benchmark and regenerate docs/BENCHMARKS.md.

Each benchmark runs as ``python -m bench.<module> --json FILE`` in its own process (engines and peak-memory
counters start fresh; one crash does not take the others down); this process then renders the module's
``to_markdown`` table and, where the module has one, its ``plot`` into ``docs/bench/``, and fills
``bench/report_template.md``. ``--only`` re-runs some sections and keeps the others' last results (read back
from ``docs/bench/*.json``); ``--quick`` shrinks every benchmark to check the pipeline in a few minutes (the
whole pipeline, protocol included, once cheaply). Every section follows :mod:`bench.protocol`; the header's
repetition counts are read from the saved results, not written by hand.

The GPU section renders ``docs/bench/gpu_spatial_encoder.json`` when ``bench/gpu/run.sh`` wrote it on a GPU (or
runs it when CUDA is here); otherwise it says the page has no GPU numbers, after checking the script with
``--device cpu --tiny``. The page's header names the commit it was generated from.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".cache" / "bench-logs"
TEMPLATE = Path(__file__).with_name("report_template.md")


@dataclass(frozen=True)
class Section:
    name: str  # key in the template and file stem in docs/bench/
    module: str  # bench.<module>, run with ``--json``
    args: tuple[str, ...]  # the full run
    quick_args: tuple[str, ...]  # the pipeline check
    unit: str  # what one repetition is, for the header's count
    plot: bool = True  # render the module's plot into docs/bench/NAME.png (where the module has one)

    def command(self, quick: bool) -> list[str]:
        return ["python", "-m", f"bench.{self.module}", *(self.quick_args if quick else self.args)]


# end-to-end on small frames (~160 video tokens) so 5 repetitions of the whole sweep fit the budget; the module's
# default, 640x480 clips (~3,100 video tokens), costs ~8 s per uncached request on 2 cores, so that size gets one
# row (q = 18, 8 clients, ours vs plain vLLM) at 2 repetitions
SMALL_CLIP = ("--clip", "140x112", "--pixels", "3136", "15680")
# fmt: off
SECTIONS = [
    Section(
        "end_to_end", "bench_end_to_end",
        (*SMALL_CLIP, "--questions", "1", "8", "18", "--concurrency", "1", "8", "--reps", "5"),
        (*SMALL_CLIP, "--questions", "1", "2", "--concurrency", "2", "--reps", "1", "--no-plain-vllm"),
        "passes per path and question count",
    ),
    Section(
        "end_to_end_640", "bench_end_to_end",
        ("--questions", "18", "--concurrency", "8", "--paths", "vllm_c8", "ours_c8", "--reps", "2"),
        (*SMALL_CLIP, "--questions", "2", "--concurrency", "2", "--paths", "vllm_c2", "ours_c2", "--reps", "1"),
        "passes per path", plot=False,
    ),
    Section("server_overhead", "bench_server_overhead", ("--rounds", "8"), ("--rounds", "1"), "rounds"),
    # T = 128 only (the original's candidate count): its algorithm takes ~20 s per call there on 2 idle cores
    Section(
        "select_frames", "bench_select_frames", ("--frames", "128", "--sizes", "392x518", "294x518", "--reps", "5"),
        ("--frames", "8", "--sizes", "98x126", "--reps", "1"), "runs per contender and size",
    ),
    Section(
        "decode", "bench_decode", ("--reps", "5"), ("--reps", "1", "--seconds", "2", "--candidates", "16"),
        "runs per contender",
    ),
    Section(
        "space_aware_split", "bench_space_aware_split", ("--candidates", "32", "--reps", "5"),
        ("--candidates", "4", "--k", "2", "--reps", "1", "--seconds", "1"), "requests",
    ),
    Section(
        "stream_gap", "bench_stream_gap", (), ("--data-url-mb", "4", "--upload-mb", "8", "--tokens", "200"),
        "stream per condition",
    ),
    # VGGT's real layer count at the tiny widths: the default depth 2 holds one extra layer, lost in noise.
    # Peak memory, not time: 2 repetitions (each starts two engines, ~2 min; both samples are in the JSON).
    Section(
        "engine_footprint", "engine_footprint", ("--spatial-depth", "24", "--reps", "2"), ("--reps", "1"),
        "fresh processes per variant",
    ),
]
# fmt: on
GPU_SCRIPT = "bench/gpu/run.sh"
GPU_RESULT = "gpu_spatial_encoder.json"


def run_section(section: Section, out_dir: Path, quick: bool, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark in a child process and return its JSON result (its output goes to .cache/bench-logs/)."""
    result_path = out_dir / f"{section.name}.json"
    command = [sys.executable, *section.command(quick)[1:], "--json", str(result_path)]
    started = time.monotonic()
    LOGS.mkdir(parents=True, exist_ok=True)
    with (LOGS / f"{section.name}.log").open("w") as log:
        subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=True)
    result = json.loads(result_path.read_text())
    result.setdefault("meta", {}).update(wall_s=round(time.monotonic() - started, 1), quick=quick)
    result_path.write_text(json.dumps(result, indent=1))
    return result


def environment() -> str:
    """Machine and versions, for the top of the page."""
    import numpy
    import torch

    try:
        import vllm

        vllm_version = vllm.__version__
    except Exception as exc:  # the report still renders where vLLM is broken or absent
        vllm_version = f"unavailable ({type(exc).__name__})"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return (
        f"Generated from commit `{commit()}` at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, "
        f"{len(os.sched_getaffinity(0))} CPUs, torch threads {torch.get_num_threads()}; Python "
        f"{platform.python_version()}, torch {torch.__version__}, vLLM {vllm_version}, numpy {numpy.__version__}; "
        "tiny random-weight checkpoint (`python -m model_plugin.tiny`), float32."
    )


def commit() -> str:
    """HEAD's hash, marked when tracked files outside docs/ differ from it (the page would not be reproducible)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (head or "unknown") + (" plus uncommitted changes" if dirty else "")


def gpu_section(out_dir: Path, timeout_s: float, check_script: bool = True) -> str:
    """The GPU table from bench/gpu/run.sh's JSON (run here when CUDA is); otherwise a line saying there is none."""
    import torch

    from bench import gpu_spatial_encoder

    result_path = out_dir / GPU_RESULT
    if torch.cuda.is_available():
        env = {**os.environ, "OUT_JSON": str(result_path), "PYTHON": sys.executable}
        subprocess.run(["bash", GPU_SCRIPT], cwd=ROOT, check=True, timeout=timeout_s, env=env)
    if result_path.exists():
        result = json.loads(result_path.read_text())
        if not result["meta"]["tiny"]:
            return gpu_spatial_encoder.to_markdown(result).rstrip()
    if check_script:
        check = [sys.executable, "-m", "bench.gpu_spatial_encoder", "--device", "cpu", "--dtype", "float32", "--tiny"]
        subprocess.run([*check, "--reps", "1"], cwd=ROOT, check=True, timeout=timeout_s, capture_output=True)
    return (
        "**Not run on a GPU: no GPU numbers on this page.** No GPU was available where it was generated; the script "
        "ran with `--device cpu --tiny` as a check of the script only (CI runs the same check). On a GPU node the "
        "command above times, at VGGT-1B sizes in bf16 with random weights, the aggregator on 16 frames at 476x644 "
        "and 672x896 (one layer kept vs all 24), the space-aware pass (aggregator + point head) on 128 candidates "
        "at 392x518, and the connector, with peak memory from `torch.cuda.max_memory_allocated`; then "
        "`python -m bench.report --render` puts its JSON here."
    )


def repetitions(results: dict[str, dict[str, Any]]) -> str:
    """The header's line: how many repetitions each section's saved result holds, read from its data."""
    parts = []
    for section in SECTIONS:
        result = results.get(section.name)
        if result is None:
            continue
        meta = result["meta"]
        count = meta.get("reps", meta.get("rounds", 1))
        protocol = meta.get("protocol")
        state = "" if protocol is None else (" (**noisy**)" if protocol["noisy"] else "")
        parts.append(f"`{section.name}` {count} {section.unit}{' (quick run)' if meta.get('quick') else ''}{state}")
    return "Repetitions per section, read from the saved results: " + ("; ".join(parts) or "none yet") + "."


def renders(module: Any, result: dict[str, Any]) -> bool:
    """Whether a saved result has the shape the module's table needs (older formats do not)."""
    try:
        module.to_markdown(result)
    except (KeyError, TypeError, IndexError):
        return False
    return True


def render(results: dict[str, dict[str, Any]], gpu: str, out_dir: Path) -> str:
    """Fill the template: tables and plots from each module, commands, environment and GPU text."""
    text = TEMPLATE.read_text()
    for section in SECTIONS:
        module = importlib.import_module(f"bench.{section.module}")
        result = results.get(section.name)
        if result is not None and not renders(module, result):
            result = None  # saved by an older version of the benchmark: say so rather than fail
        if result is None:
            table = f"Not measured yet: run `python -m bench.report --only {section.name}`."
        else:
            table = module.to_markdown(result).rstrip()
            if result["meta"].get("quick"):
                table = "**Quick run (`--quick`): checks the pipeline, not for quoting.**\n\n" + table
            if result["meta"].get("protocol", {}).get("noisy"):
                table = "**Noisy run: the protocol flagged this section (reasons under the table).**\n\n" + table
            if section.plot and hasattr(module, "plot"):
                module.plot(result, out_dir / f"{section.name}.png")
        was_quick = bool(result and result["meta"].get("quick"))
        text = text.replace(f"{{{{table:{section.name}}}}}", table)
        text = text.replace(f"{{{{command:{section.name}}}}}", " ".join(section.command(was_quick)))
    text = text.replace("{{command:gpu_spatial_encoder}}", GPU_SCRIPT)
    text = text.replace("{{environment}}", environment())
    text = text.replace("{{repetitions}}", repetitions(results))
    text = text.replace("{{gpu}}", gpu)
    leftover = re.findall(r"\{\{[^}]+\}\}", text)
    if leftover:
        raise ValueError(f"unfilled placeholders in {TEMPLATE.name}: {leftover}")
    return text


def main(argv: Sequence[str] | None = None) -> None:
    names = [section.name for section in SECTIONS]
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=names, help="run these sections, keep the others' results")
    parser.add_argument("--render", action="store_true", help="run nothing: re-render the page from the saved results")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline, numbers not for quoting")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="writes DOCS/BENCHMARKS.md and DOCS/bench/")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    parser.add_argument(
        "--no-gpu-check", action="store_true", help="without a GPU, skip checking the GPU script on CPU (tests do it)"
    )
    args = parser.parse_args(argv)

    out_dir = args.docs / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        if not args.render and (args.only is None or section.name in args.only):
            print(f"running {' '.join(section.command(args.quick))} ...", flush=True)
            results[section.name] = run_section(section, out_dir, args.quick, args.timeout)
            print(f"  done in {results[section.name]['meta']['wall_s']} s", flush=True)
        elif (out_dir / f"{section.name}.json").exists():
            results[section.name] = json.loads((out_dir / f"{section.name}.json").read_text())
    page = render(results, gpu_section(out_dir, args.timeout, check_script=not args.no_gpu_check), out_dir)
    (args.docs / "BENCHMARKS.md").write_text(page)
    print(f"wrote {args.docs / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
