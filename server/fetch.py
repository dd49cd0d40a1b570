"""Fetching media from http(s) URLs without becoming a proxy into the private network.

Every hop of a redirect chain is checked: the scheme must be http(s), every address the host resolves to must
be public (no loopback, private, link-local, CGNAT, multicast or reserved ranges) unless the operator allows
private addresses, and after connecting the peer's address is checked again (a DNS answer that changes between
the check and the connection cannot sneak through). The body is streamed against a byte cap and the whole
fetch runs under one deadline.
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


async def _check_host(url: str, policy: FetchPolicy, param: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise APIError(400, "Only http(s) URLs with a host name can be fetched.", param)
    if policy.allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise APIError(400, f"The host {parts.hostname!r} could not be resolved.", param) from exc
    if not infos or not all(_is_public(str(info[4][0])) for info in infos):
        raise APIError(400, PRIVATE_REFUSED, param)


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
                await _check_host(url, policy, param)
                async with client.stream("GET", url, follow_redirects=False) as response:
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
