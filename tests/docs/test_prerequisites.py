"""`make test` and `make setup` name what the machine lacks, with Debian's packages, before anything runs
(tests/prerequisites.py); the README's list of requirements is that list."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from prerequisites import SETUP, TEST

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tests" / "prerequisites.py"


def _check(target: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), target], capture_output=True, text=True, timeout=60, env={"PATH": path}
    )


def test_missing_programs_are_named_with_their_packages(tmp_path: Path) -> None:
    done = _check("test", str(tmp_path))  # a PATH with no program on it
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("make test: this machine lacks "), done.stderr
    installed = lines[0].split("sudo apt-get install ", 1)[1].split()
    assert {"curl", "git", "default-jre-headless", "chromium", "chromium-driver"} <= set(installed)


def test_setup_needs_no_program_from_path(tmp_path: Path) -> None:
    """What `make demo` needs is a library and a Python module, both found without PATH."""
    done = _check("setup", str(tmp_path))
    assert done.returncode == 0, done.stderr


def test_the_readme_lists_every_package() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    shown = {match for command in re.findall(r"apt-get install ([a-z0-9 .+-]+)", readme) for match in command.split()}
    assert {need.apt for need in TEST} <= shown, shown
    assert {need.apt for need in SETUP} <= shown
