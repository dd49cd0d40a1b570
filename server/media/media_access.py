"""Which media locations a client may name beyond uploads and ``data:`` URLs, with vLLM's own flags and semantics.

``--allowed-local-media-path DIR`` lets ``file://`` URLs read files under ``DIR`` (resolved, so ``..`` and links
cannot leave it); without it ``file://`` is refused. ``--allowed-media-domains A B`` restricts http(s) URLs to those
host names (exact match, as vLLM checks them); without it any public host may be fetched. Both are vLLM's options,
parsed by vLLM's parser: a client that works against ``vllm serve`` works here with the same flags.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from server.errors import APIError


@dataclass(frozen=True)
class MediaAccess:
    """The operator's allow-list for ``file://`` paths and http(s) hosts."""

    local_root: Path | None = None
    domains: tuple[str, ...] = ()

    @classmethod
    def from_args(cls, args: Namespace) -> MediaAccess:
        """From vLLM's parsed ``--allowed-local-media-path`` / ``--allowed-media-domains``; a bad path fails here."""
        root_arg = getattr(args, "allowed_local_media_path", "") or ""
        root = None
        if root_arg:
            root = Path(root_arg).resolve()
            if not root.is_dir():
                raise ValueError(f"--allowed-local-media-path {root_arg}: not an existing directory")
        return cls(root, tuple(getattr(args, "allowed_media_domains", None) or ()))

    def check_domain(self, url: str, param: str) -> None:
        """400 when domains are restricted and ``url``'s host is not one of them."""
        host = urlsplit(url).hostname
        if self.domains and host not in self.domains:
            raise APIError(
                400, f"The URL's host {host!r} is not allowed; the server allows --allowed-media-domains "
                f"{' '.join(self.domains)}.", param
            )  # fmt: skip

    def read_local(self, url: str, max_bytes: int, param: str) -> bytes:
        """The bytes of a ``file://`` URL under the allowed directory (blocking: call it from a worker thread)."""
        if self.local_root is None:
            raise APIError(400, "file:// URLs need the server started with --allowed-local-media-path DIR.", param)
        parts = urlsplit(url)
        path = Path(url2pathname(parts.netloc + parts.path))
        resolved = path.resolve()
        if self.local_root not in resolved.parents:
            # no paths in the message: a client learns nothing of the server's file system
            raise APIError(400, "The file must lie under the server's --allowed-local-media-path folder.", param)
        if not resolved.is_file():
            raise APIError(400, "No such file under the server's --allowed-local-media-path folder.", param)
        if resolved.stat().st_size > max_bytes:
            raise APIError(413, f"The file exceeds the limit of {max_bytes} bytes.", param)
        return resolved.read_bytes()
