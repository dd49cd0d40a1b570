"""Which evaluation a VSI-Bench run reproduces: the prompts and answer extraction of v1.1 (the seed's
``src/evaluation/vsibench``) or of v1.0 (branch ``v1.0``'s ``evaluate/``), each model with its own. Both branches
decode alike (temperature 0.1, top_p 0.001, 1024 new tokens: ``client.Decoding``).

``--prompts`` picks one; without it the served model's architecture decides (its config.json, found from the
``root`` that ``/v1/models`` reports: a local checkpoint folder or a Hugging Face repository id).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.vsibench import prompts, prompts_v1_0
from bench.vsibench.scoring import clean_text


@dataclass(frozen=True)
class PromptSet:
    name: str
    question_text: Callable[[Mapping[str, Any]], str]
    clean_text: Callable[[str], str]


PROMPT_SETS = {
    "v1.1": PromptSet("v1.1", prompts.question_text, clean_text),
    "v1.0": PromptSet("v1.0", prompts_v1_0.question_text, prompts_v1_0.clean_text),
}


def for_architectures(architectures: list[str]) -> PromptSet:
    """v1.0's evaluation for ``Qwen2_5_VL_VGGTForConditionalGeneration``, v1.1's for anything else."""
    from model_plugin.config import V1_0_ARCHITECTURE  # here: ``score`` needs no transformers import

    return PROMPT_SETS["v1.0" if V1_0_ARCHITECTURE in architectures else "v1.1"]


def checkpoint_architectures(root: str) -> list[str] | None:
    """``architectures`` of the checkpoint at ``root`` (folder or hub id); None when its config is unreachable."""
    config = Path(root) / "config.json"
    if not config.is_file():
        try:
            from huggingface_hub import hf_hub_download

            config = Path(hf_hub_download(root, "config.json"))
        except Exception:  # offline, private or not a repository id: the caller falls back and says so
            return None
    return list(json.loads(config.read_text()).get("architectures") or [])


async def served_prompt_set(client, model: str) -> PromptSet:
    """The prompt set of the served ``model``'s architecture (v1.1's, with a warning, when it is unknowable)."""
    card = next((m for m in (await client.models.list()).data if m.id == model), None)
    root = getattr(card, "root", None) if card is not None else None
    architectures = checkpoint_architectures(root) if root else None
    if architectures is None:
        print(
            f"warning: cannot read the architecture of {model!r}; using v1.1's prompts (see --prompts)", file=sys.stderr
        )
        return PROMPT_SETS["v1.1"]
    return for_architectures(architectures)
