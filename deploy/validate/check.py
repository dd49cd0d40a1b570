"""``make validate-deploy``: lint and schema-check the deployment files, offline, in a few seconds.

- Dockerfile: hadolint (which also runs its built-in ShellCheck on RUN lines); the entrypoint: ShellCheck.
- docker-compose.yml: the compose-spec JSON schema vendored by check-jsonschema.
- Kubernetes: every kustomization under deploy/kubernetes rendered (kustomize_lite, cross-checked against
  ``kubectl kustomize`` where kubectl exists) plus the core-kind routing manifests, validated in strict mode
  against the Kubernetes schemas of the oldest and newest versions we support.

Run with the Python of .cache/deploy-tools (the Makefile does); the tools are taken from that environment only.
What needs a Docker engine, a cluster or a GPU is in docs/DEPLOY.md, and what the files mean is in tests/deploy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from compose_files import load, plain
from kustomize_lite import render, resource_id

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
RENDERED = ROOT / ".cache" / "deploy" / "rendered"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Core kinds only: routing/envoy-gateway.yaml is Gateway API and Envoy Gateway CRDs, which have no schema here
# (tests/deploy checks its references instead).
PLAIN_MANIFESTS = (KUBERNETES / "routing" / "ingress-nginx.yaml",)
COMPOSE_OVERRIDES = sorted((ROOT / "deploy" / "compose").glob("*.yml"))  # layered over docker-compose.yml


def run(title: str, argv: list[str | Path], must_not_print: str | None = None) -> bool:
    started = time.monotonic()
    done = subprocess.run([str(arg) for arg in argv], cwd=ROOT, capture_output=True, text=True)
    output = (done.stdout + done.stderr).strip()
    ok = done.returncode == 0 and not (must_not_print and must_not_print in output)
    print(f"{'ok  ' if ok else 'FAIL'} {title} ({time.monotonic() - started:.1f}s)")
    if output and not ok:
        print("     " + output.replace("\n", "\n     "))
    return ok


def render_all() -> list[Path]:
    """Each kustomization rendered to .cache/deploy/rendered/<dir>.yaml (a kubectl cross-check where possible)."""
    shutil.rmtree(RENDERED, ignore_errors=True)
    RENDERED.mkdir(parents=True)
    outputs = []
    for kustomization in sorted(KUBERNETES.rglob("kustomization.yaml")):
        directory = kustomization.parent
        documents = render(directory)
        out = RENDERED / (str(directory.relative_to(KUBERNETES)).replace("/", "-") + ".yaml")
        out.write_text(yaml.safe_dump_all(documents, sort_keys=False))
        outputs.append(out)
        print(f"ok   render {directory.relative_to(ROOT)} ({len(documents)} resources)")
        if shutil.which("kubectl"):
            compare_with_kubectl(directory, documents)
    return outputs


def compare_with_kubectl(directory: Path, documents: list[dict]) -> None:
    built = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True)
    theirs = {resource_id(doc): doc for doc in yaml.safe_load_all(built.stdout) if doc}
    ours = {resource_id(doc): doc for doc in documents}
    if theirs != ours:
        raise SystemExit(f"FAIL kustomize_lite and kubectl kustomize disagree on {directory.relative_to(ROOT)}")
    print(f"ok   same as kubectl kustomize {directory.relative_to(ROOT)}")


def compose_overrides_untagged() -> list[Path]:
    """Each Compose override file without Compose's ``!override`` tags, which the schema checker cannot read."""
    out_dir = ROOT / ".cache" / "deploy" / "compose"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    outputs = []
    for path in COMPOSE_OVERRIDES:
        out = out_dir / path.name
        out.write_text(yaml.safe_dump(plain(load(path)), sort_keys=False))
        outputs.append(out)
    return outputs


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # keep our lines in order with the tools' output under make
    results = [
        run("hadolint Dockerfile", [BIN / "hadolint", "--no-color", "Dockerfile"]),
        run("shellcheck deploy/docker/entrypoint.sh", [BIN / "shellcheck", "deploy/docker/entrypoint.sh"]),
        run(
            "compose-spec schema docker-compose.yml",
            [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"],
        ),
        *(
            run(
                f"compose-spec schema {override.relative_to(ROOT)}",
                [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", untagged],
            )
            for override, untagged in zip(COMPOSE_OVERRIDES, compose_overrides_untagged(), strict=True)
        ),
    ]
    manifests = [*render_all(), *PLAIN_MANIFESTS]
    for version in KUBERNETES_VERSIONS:
        results.append(
            run(
                f"kubernetes-validate --strict v{version} ({len(manifests)} files)",
                [BIN / "kubernetes-validate", "--strict", "--quiet", "-k", version, *manifests],
                must_not_print="Couldn't find schema",  # a kind without a schema is not a pass
            )
        )
    failed = results.count(False)
    print(f"validate-deploy: {len(results) - failed} checks passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
