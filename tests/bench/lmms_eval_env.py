"""lmms-eval's own environment for the tests: ``.cache/lmms-eval-env``, kept apart from the server's venv (lmms-eval's
pins clash with vLLM's), made with uv from the exact pins in ``bench/lmms_eval_plugin/requirements.txt`` plus this
project installed without dependencies (so lmms-eval finds the ``spatial_mllm`` entry point). Rebuilt when the
pins, ``pyproject.toml`` or the sync options change; uv's cache makes a rebuild a matter of seconds on a machine that
had one.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_DIR = REPO_ROOT / ".cache" / "lmms-eval-env"
REQUIREMENTS = REPO_ROOT / "bench" / "lmms_eval_plugin" / "requirements.txt"
# no --compile-bytecode: of the thousands of files here the four lmms-eval runs import a part, whose .pyc the first
# run writes (test_lmms_eval.lmms_env); compiling all of them at install took about a minute on 2 cores
SYNC_OPTIONS = ("--quiet",)


def _uv() -> str:
    found = shutil.which("uv") or REPO_ROOT / ".cache" / "uv-bootstrap" / "bin" / "uv"
    if not Path(found).exists():
        raise RuntimeError("uv is needed to build lmms-eval's environment: run `make setup` (it bootstraps uv)")
    return str(found)


def lmms_eval_python() -> Path:
    """The environment's Python, built or refreshed first when its inputs changed."""
    inputs = REQUIREMENTS.read_bytes() + (REPO_ROOT / "pyproject.toml").read_bytes() + " ".join(SYNC_OPTIONS).encode()
    stamp = hashlib.sha256(inputs).hexdigest()
    python = ENV_DIR / "bin" / "python"
    marker = ENV_DIR / ".installed"
    if python.exists() and marker.exists() and marker.read_text() == stamp:
        return python
    uv = _uv()
    if not python.exists():
        subprocess.run([uv, "venv", "--quiet", "--python", "3.11", str(ENV_DIR)], check=True)
    subprocess.run([uv, "pip", "sync", *SYNC_OPTIONS, "--python", str(python), str(REQUIREMENTS)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "--no-deps", "-e", str(REPO_ROOT)], check=True
    )
    marker.write_text(stamp)
    return python
