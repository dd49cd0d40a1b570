"""Compose override files as Compose reads them: YAML with Compose's ``!override`` / ``!reset`` tags, merged over
docker-compose.yml by Compose's rules (mappings merge, sequences append, ``command`` and tagged values replace).

The schema checker and PyYAML know no such tags; ``load`` reads the tags (the tagged value kept, the tag noted),
``merge`` gives the model Compose runs, for validation and tests only (deploy with ``docker compose``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPLACED_KEYS = frozenset({"command", "entrypoint"})  # Compose overrides these rather than appending


class Replace:
    """A value tagged ``!override`` in an override file: it replaces the base's value instead of merging."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    """SafeLoader plus Compose's ``!override`` and ``!reset`` tags."""


def _construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_ComposeLoader.add_constructor("!override", lambda loader, node: Replace(_construct(loader, node)))
_ComposeLoader.add_constructor("!reset", lambda loader, node: Replace(None))


def load(path: Path) -> Any:
    """A Compose file; tagged values come back wrapped in :class:`Replace`."""
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


def plain(value: Any) -> Any:
    """The file's data without the tags (what the compose-spec schema validates)."""
    if isinstance(value, Replace):
        return plain(value.value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def merge(base: Any, override: Any, key: str | None = None) -> Any:
    """``override`` layered over ``base`` by Compose's merge rules (the subset our files use)."""
    if isinstance(override, Replace):
        return plain(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else plain(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_KEYS:
        return base + plain(override)
    return plain(override)
