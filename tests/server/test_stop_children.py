"""A stop during start-up kills a process tree that is still growing, and no process of it prints a traceback.

vLLM's engine spawns its worker while the operator may already be pressing Ctrl-C; a child killed while it spawns
leaves the grandchild reading a half-written start-up pipe (``EOFError: Ran out of input``). CI once saw exactly
that. Here a child spawns grandchildren in a loop, as fast as it can, and :func:`stop_children` must end them all
with stderr clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import time

    import psutil

    from server.runtime.lifecycle import stop_children


    def idle():
        time.sleep(60)


    def spawn_forever():
        context = mp.get_context("spawn")
        while True:
            context.Process(target=idle).start()


    if __name__ == "__main__":
        spawner = mp.get_context("spawn").Process(target=spawn_forever)
        spawner.start()
        deadline = time.monotonic() + 60
        while len(psutil.Process().children(recursive=True)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_children()
        left = [p for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]
        left = [p for p in left if "resource_tracker" not in " ".join(p.cmdline())]
        print("left", len(left), flush=True)
    """
)


REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_growing_tree_is_killed_without_a_traceback(tmp_path: Path) -> None:
    script = tmp_path / "tree.py"
    script.write_text(SCRIPT)
    environment = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    for _ in range(3):  # the old listing-then-killing failed on the first try of three here
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environment
        )
        assert done.returncode == 0, done.stderr
        assert "left 0" in done.stdout, done.stdout + done.stderr
        assert "Traceback" not in done.stderr, done.stderr
