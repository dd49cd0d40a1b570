"""Fetching media from http(s) URLs without becoming a proxy into the private network.

Every hop of a redirect chain is checked: the scheme must be http(s), every address the host resolves to must
be public (no loopback, private, link-local, CGNAT, multicast or reserved ranges) unless the operator allows
private addresses. The DNS answer is pinned per hop: the request connects to the address that was checked (the
URL's host goes in the ``Host`` header and, for https, in SNI and the certificate check), so a host that
rebinds its name between the check and the connection never gets a request into the private network; the
connected peer is checked once more. The body is streamed against a byte cap and the whole fetch runs under one
deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from server.errors import APIError

REDIRECTS = {301, 302, 303, 307, 308}
PRIVATE_REFUSED = (
    "URLs that resolve to private, loopback or link-local addresses are refused "
    "(an operator can allow them with --allow-private-urls)."
)


@dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch."""

    max_bytes: int
    timeout_s: float = 30.0
    max_redirects: int = 3
    allow_private: bool = False


# IPv6 ranges that embed or translate to IPv4 (NAT64, 6to4, IPv4-compatible) or are deprecated site-local:
# Python's ``is_global`` calls some of them global, but they can reach private IPv4 space.
TRANSLATING_V6 = [
    ipaddress.ip_network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "fec0::/10")
]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif any(ip in net for net in TRANSLATING_V6):
            return False
    return ip.is_global and not ip.is_multicast


async def _resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (one lookup: the answer the request will use)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _checked_address(url: str, policy: FetchPolicy, param: str) -> str | None:
    """The public address to connect to for ``url`` (None when private addresses are allowed: no pinning)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(400, "Only http(s) URLs with a host name can be fetched.", param)
    if policy.allow_private:
        return None
    try:
        addresses = await _resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror as exc:
        raise APIError(400, f"The host {parts.hostname!r} could not be resolved.", param) from exc
    if not addresses or not all(_is_public(address) for address in addresses):
        raise APIError(400, PRIVATE_REFUSED, param)
    return addresses[0]


def _pinned_request(url: str, address: str | None) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """(URL to connect to, headers, extensions): the checked address in the URL, the real host in ``Host`` and
    in TLS (SNI and certificate verification)."""
    target = httpx.URL(url)
    if address is None:
        return target, {}, {}
    sni = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return target.copy_with(host=address.split("%", 1)[0]), {"Host": target.netloc.decode("ascii")}, sni


def _check_peer(response: httpx.Response, policy: FetchPolicy, param: str) -> None:
    if policy.allow_private:
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer is None or not _is_public(str(peer[0])):
        raise APIError(400, PRIVATE_REFUSED, param)


async def _read_capped(response: httpx.Response, policy: FetchPolicy, param: str) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise APIError(413, f"The media at the URL is larger than the limit of {policy.max_bytes} bytes.", param)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > policy.max_bytes:
            raise APIError(413, f"The media at the URL is larger than the limit of {policy.max_bytes} bytes.", param)
    return bytes(body)


async def fetch_bytes(client: httpx.AsyncClient, url: str, policy: FetchPolicy, param: str) -> bytes:
    """The body at ``url`` after at most ``policy.max_redirects`` checked redirects, under one deadline."""
    try:
        async with asyncio.timeout(policy.timeout_s):
            for _ in range(policy.max_redirects + 1):
                address = await _checked_address(url, policy, param)
                target, headers, extensions = _pinned_request(url, address)
                stream = client.stream("GET", target, headers=headers, extensions=extensions, follow_redirects=False)
                async with stream as response:
                    _check_peer(response, policy, param)
                    if response.status_code in REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise APIError(400, f"Fetching the media failed with HTTP {response.status_code}.", param)
                    return await _read_capped(response, policy, param)
            raise APIError(400, f"The media URL redirected more than {policy.max_redirects} times.", param)
    except TimeoutError as exc:
        raise APIError(400, f"Fetching the media took longer than {policy.timeout_s:g} s.", param) from exc
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        raise APIError(400, f"Fetching the media failed: {type(exc).__name__}.", param) from exc
