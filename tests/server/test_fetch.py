"""URL fetching refuses the private network, caps bytes, redirects and time (no engine needed)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from server.errors import APIError
from server.media.fetch import FetchPolicy, fetch_bytes

BODY = b"0123456789" * 1000


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect/"):
            hops = int(self.path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/redirect/{hops - 1}" if hops > 1 else "/video")
            self.end_headers()
        elif self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data")
            self.end_headers()
        elif self.path == "/slow":
            import time

            time.sleep(3)
            self.send_response(200)
            self.end_headers()
        elif self.path == "/host":
            body = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/missing":
            self.send_response(404)
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _fetch(url: str, policy: FetchPolicy) -> bytes:
    async def run() -> bytes:
        async with httpx.AsyncClient() as client:
            return await fetch_bytes(client, url, policy, "video_url")

    return asyncio.run(run())


def _status(url: str, policy: FetchPolicy) -> int:
    with pytest.raises(APIError) as caught:
        _fetch(url, policy)
    return caught.value.status


PRIVATE_OK = FetchPolicy(max_bytes=1 << 20, timeout_s=10, max_redirects=3, allow_private=True)


def test_fetches_and_follows_redirects_when_allowed(origin: str) -> None:
    assert _fetch(f"{origin}/video", PRIVATE_OK) == BODY
    assert _fetch(f"{origin}/redirect/3", PRIVATE_OK) == BODY


def test_redirect_limit(origin: str) -> None:
    assert _status(f"{origin}/redirect/4", PRIVATE_OK) == 400


def test_byte_cap(origin: str) -> None:
    assert _status(f"{origin}/video", FetchPolicy(max_bytes=100, allow_private=True)) == 413


def test_deadline(origin: str) -> None:
    assert _status(f"{origin}/slow", FetchPolicy(max_bytes=100, timeout_s=0.5, allow_private=True)) == 400


def test_http_error_status(origin: str) -> None:
    assert _status(f"{origin}/missing", PRIVATE_OK) == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.mp4",
        "http://localhost/x.mp4",
        "http://10.1.2.3/x.mp4",
        "http://192.168.0.1/x.mp4",
        "http://172.16.0.1/x.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/x.mp4",
        "http://[::1]/x.mp4",
        "http://[::ffff:127.0.0.1]/x.mp4",
        "http://[fe80::1]/x.mp4",
        "http://0.0.0.0/x.mp4",
        "http://224.0.0.1/x.mp4",
        "ftp://example.com/x.mp4",
        "file:///etc/passwd",
    ],
)
def test_private_and_odd_urls_are_refused(url: str) -> None:
    assert _status(url, FetchPolicy(max_bytes=1 << 20, timeout_s=5)) == 400


def test_redirect_into_private_network_is_refused(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pretend the test origin (on loopback) is a public host, so the first hop passes both the DNS and the peer
    # check; the redirect to the cloud metadata address must then be refused on its own.
    import server.media.fetch as fetch

    real = fetch._is_public
    monkeypatch.setattr(fetch, "_is_public", lambda address: address == "127.0.0.1" or real(address))
    policy = FetchPolicy(max_bytes=1 << 20, timeout_s=5)
    assert _fetch(f"{origin}/video", policy) == BODY
    assert _status(f"{origin}/to-metadata", policy) == 400


def test_the_checked_address_is_the_one_connected_to(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a name that answers a public address to the check and a private one a moment later. The
    fetch resolves once per hop and connects to the address it checked, with the name in ``Host``."""
    import server.media.fetch as fetch

    port = origin.rsplit(":", 1)[1]
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])  # what the rebinding name answers, in turn
    lookups: list[str] = []

    async def rebinding_resolve(host: str, _: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    real = fetch._is_public
    monkeypatch.setattr(fetch, "_is_public", lambda address: address == "127.0.0.1" or real(address))
    monkeypatch.setattr(fetch, "_resolve", rebinding_resolve)
    policy = FetchPolicy(max_bytes=1 << 20, timeout_s=5)
    assert _fetch(f"http://rebind.test:{port}/host", policy) == f"rebind.test:{port}".encode()
    assert lookups == ["rebind.test"]  # nobody asked DNS again between the check and the connection
    assert _status(f"http://rebind.test:{port}/host", policy) == 400  # the next answer is private: refused


def test_https_keeps_the_host_name_for_sni_and_certificates() -> None:
    from server.media.fetch import _pinned_request

    target, headers, extensions = _pinned_request("https://videos.example.com:8443/a.mp4?x=1", "2001:db8::7")
    assert str(target) == "https://[2001:db8::7]:8443/a.mp4?x=1"
    assert headers == {"Host": "videos.example.com:8443"} and extensions == {"sni_hostname": "videos.example.com"}


def test_private_refusal_names_the_option() -> None:
    with pytest.raises(APIError, match="--allow-private-urls"):
        _fetch("http://10.1.2.3/x.mp4", FetchPolicy(max_bytes=1 << 20, timeout_s=5))
