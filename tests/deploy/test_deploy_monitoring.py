"""The Grafana dashboard: wired to the provisioned datasource, and every metric it plots is one the server exports."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from deploy_files import ROOT, load_yaml

DASHBOARD = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "spatial-mllm.json").read_text())
METRIC = re.compile(r"\b(vllm:[a-z0-9_:]+|spatial_mllm_[a-z0-9_]+)")
SUFFIXES = {"_bucket": "histogram", "_count": "histogram", "_sum": "histogram", "_total": "counter"}


def _referenced() -> dict[str, str | None]:
    """Metric family -> the type its series suffix implies (None: a gauge or untyped)."""
    families: dict[str, str | None] = {}
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            for name in METRIC.findall(target["expr"]):
                suffix = next((s for s in SUFFIXES if name.endswith(s)), None)
                families[name.removesuffix(suffix) if suffix else name] = SUFFIXES.get(suffix or "")
    return families


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    (provider,) = load_yaml(provisioning / "dashboards" / "dashboards.yml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"  # where docker-compose.yml mounts them
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        assert panel["targets"] and all(t["datasource"]["uid"] == datasource["uid"] for t in panel["targets"])


def test_dashboard_covers_our_metrics() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    import server.metrics as ours

    exported = {m._name: m._type for m in vars(ours).values() if isinstance(m, MetricWrapperBase)}
    referenced = {name: kind for name, kind in _referenced().items() if name.startswith("spatial_mllm_")}
    assert set(exported) == set(referenced), "plot every spatial_mllm_* metric, and only those"
    assert all(kind is None or exported[name] == kind for name, kind in referenced.items())


@pytest.mark.engine
def test_dashboard_metrics_exist_on_a_live_server(live) -> None:
    """vLLM's names change between releases: check them against a running spatial-mllm-serve's /metrics."""
    text = httpx.get(f"{live.base}/metrics", timeout=30).text
    types = {
        name.removesuffix("_total") if kind == "counter" else name: kind  # text format 0.0.4 names counters x_total
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE)
    }
    for name, kind in _referenced().items():
        assert name in types, f"{name} is not exported"
        assert kind is None or types[name] == kind, f"{name} is a {types[name]}, the dashboard reads it as a {kind}"
