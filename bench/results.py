"""How every benchmark module ends: print its markdown table and, when asked, write the raw result as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(result: dict[str, Any], to_markdown: Callable[[dict[str, Any]], str], json_path: Path | None) -> None:
    """The table on stdout (the log ``bench.report`` keeps), the samples in ``json_path`` (what it renders)."""
    print(to_markdown(result))
    if json_path:
        json_path.write_text(json.dumps(result, indent=1))
