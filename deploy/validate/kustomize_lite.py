"""Render our kustomizations without the kustomize binary, for validation and tests only (deploy with kustomize).

Supports exactly what deploy/kubernetes uses: ``resources`` (files and directories) and ``patches`` holding JSON 6902
operations with a ``target``. Any other field is an error rather than silently ignored, so a kustomization that
grows beyond this subset fails validation until this file (or a real kustomize) covers it. Where kubectl is
installed, ``deploy/validate/check.py`` also compares the output with ``kubectl kustomize``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "patches"}
PATCH_FIELDS = {"path", "target"}
TARGET_FIELDS = {"group", "version", "kind", "name"}


class UnsupportedKustomization(ValueError):
    """The kustomization uses something this renderer does not implement."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources ``kustomize build directory`` would emit (order aside)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    if unknown := set(spec) - KUSTOMIZATION_FIELDS:
        raise UnsupportedKustomization(f"{directory}: unsupported fields {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    ids = [resource_id(doc) for doc in resources]
    if duplicates := {i for i in ids if ids.count(i) > 1}:
        raise UnsupportedKustomization(f"{directory}: duplicate resources {sorted(duplicates)}")
    for patch in spec.get("patches", []):
        apply_patch(directory, patch, resources)
    return resources


def resource_id(doc: dict[str, Any]) -> tuple[str, str, str]:
    return doc["apiVersion"], doc["kind"], doc["metadata"]["name"]


def apply_patch(directory: Path, patch: dict[str, Any], resources: list[dict[str, Any]]) -> None:
    if set(patch) != PATCH_FIELDS or set(patch["target"]) - TARGET_FIELDS:
        raise UnsupportedKustomization(f"{directory}: only JSON 6902 patches with path and target are supported")
    operations = yaml.safe_load((directory / patch["path"]).read_text())
    if not isinstance(operations, list):
        raise UnsupportedKustomization(f"{directory / patch['path']}: strategic-merge patches are not supported")
    matched = [index for index, doc in enumerate(resources) if _matches(doc, patch["target"])]
    if not matched:
        raise UnsupportedKustomization(f"{directory}: patch target {patch['target']} matches no resource")
    for index in matched:
        resources[index] = apply_json_patch(resources[index], operations)


def _matches(doc: dict[str, Any], target: dict[str, str]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": doc["kind"], "name": doc["metadata"]["name"]}
    return all(actual[key] == value for key, value in target.items())


def apply_json_patch(doc: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``, ``replace`` and ``remove`` (the others are refused), on a copy."""
    doc = copy.deepcopy(doc)
    for operation in operations:
        op = operation["op"]
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op == "add" and isinstance(node, list):
            node.insert(len(node) if last == "-" else int(last), operation["value"])
        elif op == "add":
            node[last] = operation["value"]
        elif op in ("replace", "remove"):
            key = int(last) if isinstance(node, list) else last
            if key not in (range(len(node)) if isinstance(node, list) else node):  # RFC 6902: it must exist
                raise KeyError(f"JSON patch {op}: {operation['path']} does not exist")
            if op == "replace":
                node[key] = operation["value"]
            else:
                del node[key]
        else:
            raise UnsupportedKustomization(f"JSON patch op {op!r} is not supported")
    return doc
