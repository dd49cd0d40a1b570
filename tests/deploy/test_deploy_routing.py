"""The three proxy configurations state the same rules: deploy/nginx/spatial-mllm.conf (the one
tests/server/test_replicas.py runs in front of two replicas), the ingress-nginx Ingress and the Envoy Gateway
policy. Same key (X-Video-Id, consistent hashing), same failover (a replica that cannot be reached is skipped),
same body limit and streaming, same timeouts."""

from __future__ import annotations

import re

import yaml
from deploy_files import K8S, ROOT, find, load_yaml

from server.runtime.settings import ServerSettings

NGINX = ROOT / "deploy" / "nginx" / "spatial-mllm.conf"
HEADER = "X-Video-Id"


def nginx_directives() -> dict[str, list[str]]:
    """Each directive of the plain nginx file (comments dropped) -> its arguments, one entry per occurrence."""
    text = re.sub(r"#[^\n]*", "", NGINX.read_text())
    directives: dict[str, list[str]] = {}
    for statement in re.findall(r"([a-z_]+)\s+([^;{}]*);", text):
        directives.setdefault(statement[0], []).append(statement[1].strip())
    return directives


def test_plain_nginx_hashes_the_header_consistently_and_fails_over() -> None:
    nginx = nginx_directives()
    assert nginx["hash"] == ["$http_" + HEADER.lower().replace("-", "_") + " consistent"]
    assert nginx["proxy_next_upstream"] == ["error timeout"] and nginx["proxy_next_upstream_tries"] == ["3"]
    assert nginx["proxy_request_buffering"] == ["off"] and nginx["proxy_buffering"] == ["off"]
    (body,) = nginx["client_max_body_size"]
    assert int(body.removesuffix("m")) << 20 >= ServerSettings().max_video_bytes
    assert len(nginx["server"]) >= 2 and all("max_fails=1" in s for s in nginx["server"])


def test_ingress_nginx_states_the_rules_of_the_tested_nginx() -> None:
    nginx = nginx_directives()
    annotations = load_yaml(K8S / "routing" / "ingress-nginx.yaml")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "upstream-hash-by"] == nginx["hash"][0].removesuffix(" consistent")
    assert annotations[prefix + "proxy-body-size"] == nginx["client_max_body_size"][0]
    for annotation, directive in [
        ("proxy-next-upstream", "proxy_next_upstream"),
        ("proxy-next-upstream-tries", "proxy_next_upstream_tries"),
        ("proxy-request-buffering", "proxy_request_buffering"),
        ("proxy-buffering", "proxy_buffering"),
    ]:
        assert annotations[prefix + annotation] == nginx[directive][0], annotation
    for annotation, directive in [
        ("proxy-read-timeout", "proxy_read_timeout"),
        ("proxy-send-timeout", "proxy_send_timeout"),
        ("proxy-connect-timeout", "proxy_connect_timeout"),
    ]:
        assert annotations[prefix + annotation] + "s" == nginx[directive][0], annotation


def test_envoy_gateway_states_the_rules_of_the_tested_nginx() -> None:
    nginx = nginx_directives()
    documents = list(yaml.safe_load_all((K8S / "routing" / "envoy-gateway.yaml").read_text()))
    route, policy = find(documents, "HTTPRoute")["spec"], find(documents, "BackendTrafficPolicy")["spec"]
    assert policy["loadBalancer"]["consistentHash"] == {"type": "Header", "header": {"name": HEADER}}
    assert "connect-failure" in policy["retry"]["retryOn"]["triggers"]  # nginx's "error": could not connect
    passive = policy["healthCheck"]["passive"]
    assert passive["splitExternalLocalOriginErrors"] and passive["consecutiveLocalOriginFailures"] == 1  # max_fails=1
    assert passive["baseEjectionTime"] == "10s" and all("fail_timeout=10s" in s for s in nginx["server"])
    assert route["rules"][0]["timeouts"]["request"] == nginx["proxy_read_timeout"][0]
    assert policy["timeout"]["tcp"]["connectTimeout"] == nginx["proxy_connect_timeout"][0]
