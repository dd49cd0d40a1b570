"""Kubernetes: each kustomization's container command line, probes, GPUs and volumes; the affinity routing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_files import (
    K8S,
    LIVENESS,
    READINESS,
    ROOT,
    dockerfile_arg,
    entrypoint_argv,
    find,
    image_environment,
    kustomizations,
    load_yaml,
    parse_server_command,
    probe_paths,
)
from kustomize_lite import UnsupportedKustomization, apply_json_patch, render

from server.runtime.settings import ServerSettings

AFFINITY_HEADER = "X-Video-Id"


def _container_environment(documents: list[dict], container: dict) -> dict[str, str]:
    """Image ENV, then envFrom ConfigMaps, then env (secret references become placeholders)."""
    env = image_environment()
    for source in container.get("envFrom", []):
        env.update(find(documents, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", f"placeholder-{entry['name'].lower()}")
    return env


@pytest.mark.parametrize("directory", kustomizations(), ids=lambda path: str(path.relative_to(K8S)))
def test_container_command_line_and_wiring(directory: Path, tmp_path: Path) -> None:
    documents = render(directory)
    deployment = find(documents, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _container_environment(documents, container)
    args, settings = parse_server_command(entrypoint_argv(container["args"], env, tmp_path), env)

    assert args.model == env["MODEL"] and settings.api_keys  # the API-key secret is required, not optional
    (port,) = container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", args.port)
    service = find(documents, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    # readiness (engine and geometry worker) gates traffic and start-up; liveness (engine) alone restarts the pod
    probes = {probe: container[probe]["httpGet"] for probe in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes == {
        "startupProbe": {"path": READINESS, "port": "http"},
        "readinessProbe": {"path": READINESS, "port": "http"},
        "livenessProbe": {"path": LIVENESS, "port": "http"},
    }
    assert {LIVENESS, READINESS} <= probe_paths()
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60  # a cold cache downloads ~9 GB

    resources = container["resources"]
    gpus = args.tensor_parallel_size * args.pipeline_parallel_size * args.data_parallel_size  # one node: all local
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == gpus

    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container["volumeMounts"]}
    claim = mounts[env["HF_HOME"]]["persistentVolumeClaim"]["claimName"]
    assert find(documents, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "emptyDir" in mounts[str(settings.uploads_dir)]
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"

    security = pod["securityContext"]
    assert security["runAsNonRoot"] and security["runAsUser"] == security["fsGroup"] == int(dockerfile_arg("APP_UID"))
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_tensor_parallel_overlay_really_changes_the_gpu_count(tmp_path: Path) -> None:
    container = find(render(K8S / "overlays" / "tensor-parallel-2"), "Deployment")["spec"]["template"]["spec"]
    assert container["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--tensor-parallel-size" in container["containers"][0]["args"]
    (dshm,) = [volume for volume in container["volumes"] if volume["name"] == "dshm"]  # patched by index
    assert dshm["emptyDir"]["sizeLimit"] == "16Gi"


def test_data_parallel_overlay_runs_one_engine_per_gpu_behind_one_server(tmp_path: Path) -> None:
    documents = render(K8S / "overlays" / "data-parallel-2")
    (container,) = find(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = _container_environment(documents, container)
    args, settings = parse_server_command(entrypoint_argv(container["args"], env, tmp_path), env)
    assert (args.data_parallel_size, args.tensor_parallel_size) == (2, 1)
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert settings.max_concurrent_requests == 128  # the patch replaced the value by index: still the right flag
    assert settings.max_concurrent_requests > args.max_num_seqs * args.data_parallel_size - 1


def test_ingress_nginx_hashes_the_affinity_header() -> None:
    ingress = load_yaml(K8S / "routing" / "ingress-nginx.yaml")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/upstream-hash-by"] == "$http_" + AFFINITY_HEADER.lower().replace(
        "-", "_"
    )
    # Bounded-load hashing is seeded per controller pod: one video would spread over replicas.
    assert "nginx.ingress.kubernetes.io/upstream-hash-by-balance-factor" not in annotations
    body_limit = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body_limit.endswith("m") and int(body_limit[:-1]) << 20 >= ServerSettings().max_video_bytes
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = find(render(K8S / "base"), "Service")
    assert backend == {"name": service["metadata"]["name"], "port": {"name": service["spec"]["ports"][0]["name"]}}


def test_envoy_gateway_hashes_the_affinity_header() -> None:
    documents = list(yaml.safe_load_all((K8S / "routing" / "envoy-gateway.yaml").read_text()))
    route, policy = find(documents, "HTTPRoute"), find(documents, "BackendTrafficPolicy")
    service = find(render(K8S / "base"), "Service")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend == {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": route["metadata"]["name"]}
    ]
    balancer = policy["spec"]["loadBalancer"]
    assert balancer["type"] == "ConsistentHash"
    assert balancer["consistentHash"] == {"type": "Header", "header": {"name": AFFINITY_HEADER}}


def test_runbook_documents_the_affinity_header() -> None:
    assert AFFINITY_HEADER in (ROOT / "docs" / "DEPLOY.md").read_text()


def test_kustomize_lite_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    doc = {"spec": {"args": ["a"], "limits": {"nvidia.com/gpu": 1}}}
    patched = apply_json_patch(
        doc,
        [
            {"op": "add", "path": "/spec/args/-", "value": "b"},
            {"op": "add", "path": "/spec/args/0", "value": "z"},
            {"op": "replace", "path": "/spec/limits/nvidia.com~1gpu", "value": 2},
            {"op": "remove", "path": "/spec/args/1"},
        ],
    )
    assert patched == {"spec": {"args": ["z", "b"], "limits": {"nvidia.com/gpu": 2}}} and doc["spec"]["args"] == ["a"]
    with pytest.raises(KeyError):
        apply_json_patch(doc, [{"op": "replace", "path": "/spec/missing", "value": 1}])
    with pytest.raises(UnsupportedKustomization):
        apply_json_patch(doc, [{"op": "move", "from": "/spec/args", "path": "/spec/x"}])
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(UnsupportedKustomization, match="namePrefix"):
        render(tmp_path)
