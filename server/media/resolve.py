"""Where a request's media comes from: ``data:`` URLs, http(s) URLs and uploaded file ids, each checked before
a byte is decoded, and the rewrite of a chat message's video parts into prepared-frame references.

Content parts we accept for video: ``{"type": "video_url", "video_url": {"url": ...}}`` where the URL is a
``data:`` URL, an http(s) URL or a ``file-...`` id, and OpenAI's ``{"type": "file", "file": {"file_id": ...}}``
(or ``file_data`` as a data URL). http(s) images are fetched here too (through the same address checks) and
handed to vLLM inline; ``data:`` images go to vLLM as they are.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sampling.cache import content_hash
from sampling.errors import VideoError
from sampling.uniform import smart_resize
from server.api.protocol import MIN_FRAMES, VideoSampling
from server.errors import APIError
from server.frames.media_connector import PreparedVideo, PreparedVideoStore
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.media.fetch import FetchPolicy, fetch_bytes
from server.media.image_frames import FrameList, frames_video, merge_frame_lists
from server.media.media_access import MediaAccess
from server.metrics import UPLOAD_BYTES, VIDEO_FRAMES
from server.runtime.settings import ServerSettings
from server.uploads.file_store import FileStore

VIDEO_MIME_OK = ("video/", "application/octet-stream", "application/mp4")
MAX_PARTS_PER_MESSAGE = 256
MAX_IMAGE_BYTES = 20 << 20


@dataclass(frozen=True)
class VideoBytes:
    """A video's bytes with their SHA-256 (computed once; uploads carry it from the upload)."""

    data: bytes | bytearray
    digest: str
    file_id: str | None = None  # the upload it came from (a space-aware selection is kept with it)


INVALID_BASE64 = "The data URL's base64 payload is invalid."
B64_CHUNK = 1 << 20  # base64 characters per step (a multiple of 4; ~4 ms each); see parse_data_url
MAX_DATA_URL_HEADER = 1024


def parse_data_url(url: str | bytes | memoryview, max_bytes: int, param: str, accept: Callable[[str], bool]) -> bytes:
    """Decoded bytes of a base64 ``data:`` URL; 415 for a MIME type ``accept`` refuses, 413 past ``max_bytes``.

    Decoded a few MB at a time: base64 decoding holds the GIL, so one large call in a worker thread would stall
    the event loop as surely as decoding on it; between steps other threads (the loop) run."""
    head = bytes(url[: MAX_DATA_URL_HEADER + 5]) if not isinstance(url, str) else url[: MAX_DATA_URL_HEADER + 5]
    header_text = head.decode("latin-1") if isinstance(head, bytes) else head
    comma = header_text.find(",")
    if comma == -1:
        raise APIError(400, "Malformed data URL: no ',' separates the header from the data.", param)
    mime, _, encoding = header_text[5:comma].rpartition(";")
    if encoding.lower() != "base64":
        raise APIError(400, "Only base64 data URLs are supported.", param)
    mime = mime.partition(";")[0].strip().lower()
    if mime and not accept(mime):
        raise APIError(415, f"Unsupported media type {mime[:64]!r} for this part.", param)
    if (len(url) - comma - 1) * 3 // 4 > max_bytes:
        raise APIError(413, f"The inline media exceeds the limit of {max_bytes} bytes.", param)
    decoded = bytearray((len(url) - comma - 1) * 3 // 4)
    filled = 0
    try:
        for start in range(comma + 1, len(url), B64_CHUNK):
            piece = base64.b64decode(url[start : start + B64_CHUNK], validate=True)
            decoded[filled : filled + len(piece)] = piece
            filled += len(piece)
    except (binascii.Error, ValueError) as exc:
        raise APIError(400, INVALID_BASE64, param) from exc
    del decoded[filled:]
    return decoded


FRAME_LIST_MIME = "video/jpeg"
FRAME_LIST_INSTEAD = (
    "send the video file itself (data:video/mp4;base64,..., an http(s) URL, or a file id from POST /v1/files), or "
    "the frames as two or more image_url parts of one message: they are served as one video."
)
FRAME_LIST_REFUSED = (
    "data:video/jpeg;base64, frame lists (vLLM's comma-separated JPEG frames) are not accepted: " + FRAME_LIST_INSTEAD
)


def inline_video_bytes(url: str | bytes | bytearray | memoryview, max_bytes: int, param: str = "") -> bytearray:
    """A video ``data:`` URL's bytes (415 for a non-video type, 413 past ``max_bytes``, saying where to go).

    vLLM's own ``data:video/jpeg;base64,<frame>,<frame>,...`` is refused from its header alone, before a byte is
    decoded (unbounded frame lists were vLLM's CVE-2026-34755 / GHSA-pq5c-rjhq-qp7p), saying what to send instead."""
    if _data_url_mime(url) == FRAME_LIST_MIME:
        raise APIError(400, FRAME_LIST_REFUSED, param)
    try:
        return parse_data_url(url, max_bytes, param, _is_video_mime)
    except APIError as exc:
        if exc.status == 413:
            raise APIError(413, exc.message + " Upload larger videos with POST /v1/files.", param) from exc
        if exc.message == INVALID_BASE64 and _has_several_payloads(url):  # a frame list under another video type
            hint = " It holds several comma-separated payloads, like vLLM's frame lists: " + FRAME_LIST_INSTEAD
            raise APIError(400, INVALID_BASE64 + hint, param) from exc
        raise


def _header_text(url: str | bytes | bytearray | memoryview) -> str:
    """A ``data:`` URL's first bytes as text: enough for its header, however long the payload."""
    head = url[: MAX_DATA_URL_HEADER + 5]
    return head if isinstance(head, str) else bytes(head).decode("latin-1")


def _data_url_mime(url: str | bytes | bytearray | memoryview) -> str:
    """The MIME type of a ``data:`` URL's header (lower case, parameters dropped)."""
    return _header_text(url)[5:].partition(",")[0].partition(";")[0].strip().lower()


def _has_several_payloads(url: str | bytes | bytearray | memoryview) -> bool:
    """Whether a comma follows the header's: vLLM's frame-list layout (asked only on a refusal: it may copy)."""
    comma = _header_text(url).find(",")
    payload = url[comma + 1 :]
    return comma != -1 and ("," in payload if isinstance(payload, str) else b"," in bytes(payload))


def _is_video_mime(mime: str) -> bool:
    return mime.startswith(VIDEO_MIME_OK)


def _is_image_mime(mime: str) -> bool:
    return mime.startswith("image/")


def _parts(messages: list[Any]) -> Iterator[tuple[int, int, dict[str, Any]]]:
    for m, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            if len(content) > MAX_PARTS_PER_MESSAGE:
                raise APIError(400, f"A message may hold at most {MAX_PARTS_PER_MESSAGE} content parts.", "messages")
            for p, part in enumerate(content):
                if isinstance(part, dict):
                    yield m, p, part


class MediaResolver:
    """Turns a request's media references into bytes, and video parts into prepared frames for vLLM."""

    def __init__(
        self,
        settings: ServerSettings,
        files: FileStore,
        preparer: VideoPreparer,
        http: httpx.AsyncClient,
        prepared: PreparedVideoStore,
        access: MediaAccess | None = None,
    ) -> None:
        self.settings = settings
        self.prepared = prepared
        self.files = files
        self.preparer = preparer
        self.http = http
        self.access = access or MediaAccess()
        self.max_images = 1

    def sampling_spec(self, requested: VideoSampling | None, prefix: str = "video_sampling.") -> SamplingSpec:
        """The request's sampling with server defaults filled in; 400 naming the field (``prefix`` + name) when
        it asks for more than the caps or less than the model takes."""
        s = self.settings
        requested = requested or VideoSampling()
        if requested.num_frames is not None and requested.num_frames > s.max_num_frames:
            raise APIError(400, f"num_frames may be at most {s.max_num_frames}.", prefix + "num_frames")
        if requested.num_frames is not None and requested.num_frames < MIN_FRAMES:
            message = f"num_frames must be at least {MIN_FRAMES} (frame counts are rounded to an even number)."
            raise APIError(400, message, prefix + "num_frames")
        if requested.max_pixels is not None and requested.max_pixels > s.max_pixels_per_frame:
            raise APIError(400, f"max_pixels may be at most {s.max_pixels_per_frame}.", prefix + "max_pixels")
        if requested.max_pixels is not None and requested.max_pixels < s.min_pixels_per_frame:
            message = f"max_pixels must be at least {s.min_pixels_per_frame} (this server's minimum pixels per frame)."
            raise APIError(400, message, prefix + "max_pixels")
        if requested.fps is not None and requested.num_frames is not None:
            raise APIError(400, "Give either num_frames or fps, not both.", prefix.rstrip(".") or "fps")
        strategy = requested.strategy or s.default_strategy
        if requested.fps is not None and strategy == "space_aware":
            # space-aware candidates are the seed's fixed count (--space-aware-candidates), never a rate
            raise APIError(400, "fps applies to uniform sampling; space_aware takes num_frames.", prefix + "fps")
        num_frames = None if requested.fps is not None else (requested.num_frames or s.default_num_frames)
        self._check_fixed_size(requested, prefix)
        return SamplingSpec(
            strategy=strategy,
            num_frames=num_frames,
            fps=requested.fps,
            max_frames=s.max_num_frames,
            min_pixels=s.min_pixels_per_frame,
            max_pixels=requested.max_pixels or s.max_pixels_per_frame,
            total_pixels=s.max_total_pixels,
            resized_height=requested.resized_height,
            resized_width=requested.resized_width,
            time_axis=requested.time_axis or s.default_time_axis,
        )

    def _check_fixed_size(self, requested: VideoSampling, prefix: str) -> None:
        """400 unless ``resized_height``/``resized_width`` come together, alone (not with ``max_pixels``) and,
        rounded as qwen-vl-utils rounds them, within the per-frame pixel cap."""
        height, width = requested.resized_height, requested.resized_width
        if height is None and width is None:
            return
        if height is None or width is None:
            field = "resized_height" if height is None else "resized_width"
            raise APIError(400, "Give resized_height and resized_width together.", prefix + field)
        if requested.max_pixels is not None:
            raise APIError(400, "Give either max_pixels or resized_height/resized_width.", prefix + "max_pixels")
        try:
            rounded_h, rounded_w = smart_resize(height, width)
        except VideoError as exc:
            raise APIError(400, str(exc), prefix + "resized_height") from exc
        cap = self.settings.max_pixels_per_frame
        if rounded_h * rounded_w > cap:
            field = "resized_height" if rounded_h >= rounded_w else "resized_width"
            raise APIError(
                400,
                f"resized_height x resized_width rounds to {rounded_h}x{rounded_w} = {rounded_h * rounded_w} pixels; "
                f"the server allows at most {cap} per frame.",
                prefix + field,
            )

    async def video_bytes(
        self, url: str, param: str, owner: str = "", inline: Mapping[str, bytes] | None = None
    ) -> VideoBytes:
        """The bytes behind a video reference (data URL, http(s) URL, ``owner``'s ``file-`` id, or a data URL
        the body parser already decoded: ``inline``, see :mod:`server.media.inline_media`)."""
        s = self.settings
        if url.startswith("file-"):
            try:
                stored, data = await asyncio.to_thread(self.files.read, url, owner)
            except APIError as exc:  # the store names its own field; here the field is the video part
                raise APIError(exc.status, exc.message, param, exc.retry_after) from exc
            return VideoBytes(data, stored.sha256, stored.id)
        if inline and url in inline:
            data = inline[url]
            source = "data_url"
        elif url[:5].lower() == "data:":
            data = await asyncio.to_thread(inline_video_bytes, url, s.max_video_bytes, param)
            source = "data_url"
        elif url[:7].lower() == "http://" or url[:8].lower() == "https://":
            self.access.check_domain(url, param)
            data = await fetch_bytes(self.http, url, self._policy(), param)
            source = "url"
        elif url[:7].lower() == "file://":
            data = await asyncio.to_thread(self.access.read_local, url, s.max_video_bytes, param)
            source = "file_url"
        else:
            raise APIError(
                400, "A video must be a data: URL, an http(s) URL, a file:// URL (with --allowed-local-media-path) "
                "or an uploaded file id.", param
            )  # fmt: skip
        UPLOAD_BYTES.labels(source).inc(len(data))
        return VideoBytes(data, await asyncio.to_thread(content_hash, data))

    async def prepare_video(
        self, url: str, param: str, spec: SamplingSpec, owner: str = "", inline: Mapping[str, bytes] | None = None
    ) -> PreparedVideo:
        """The frames of the video behind ``url`` under ``spec``. An uploaded file's record holds its digest, so its
        prepared frames are found before its file is opened: the upload is read only when it must be decoded."""
        if url.startswith("file-"):
            try:
                stored = await asyncio.to_thread(self.files.get, url, owner)
            except APIError as exc:  # the store names its own field; here the field is the video part
                raise APIError(exc.status, exc.message, param, exc.retry_after) from exc

            async def read() -> bytes:
                return (await self.video_bytes(url, param, owner)).data

            return await self.preparer.prepare(read, stored.sha256, spec, param, stored.id)
        video = await self.video_bytes(url, param, owner, inline)
        return await self.preparer.prepare(video.data, video.digest, spec, param)

    def _policy(self) -> FetchPolicy:
        s = self.settings
        return FetchPolicy(s.max_video_bytes, s.fetch_timeout_s, s.fetch_max_redirects, s.allow_private_urls)

    async def image_bytes(self, url: str, param: str) -> bytes:
        """The bytes behind an image reference (data URL, http(s) URL, or ``file://`` under the allowed path)."""
        if url[:5].lower() == "data:":
            return await asyncio.to_thread(parse_data_url, url, MAX_IMAGE_BYTES, param, _is_image_mime)
        if url[:7].lower() == "http://" or url[:8].lower() == "https://":
            s = self.settings
            self.access.check_domain(url, param)
            policy = FetchPolicy(MAX_IMAGE_BYTES, s.fetch_timeout_s, s.fetch_max_redirects, s.allow_private_urls)
            return await fetch_bytes(self.http, url, policy, param)
        if url[:7].lower() == "file://":
            return await asyncio.to_thread(self.access.read_local, url, MAX_IMAGE_BYTES, param)
        raise APIError(400, "An image must be a data: URL, an http(s) URL or a file:// URL.", param)

    async def _inline_image(self, url: str, param: str) -> str:
        if url[:5].lower() == "data:":
            await self.image_bytes(url, param)  # checks type and size; vLLM decodes it as it is
            return url
        encoded = await asyncio.to_thread(base64.b64encode, await self.image_bytes(url, param))
        return "data:image/*;base64," + encoded.decode()

    async def prepare_frame_list(self, frames: FrameList, spec: SamplingSpec) -> PreparedVideo:
        """One message's images as one video (see :mod:`server.media.image_frames`), decoded in the media pool."""
        sources = zip(frames.urls, frames.params, strict=True)
        images = await asyncio.gather(*(self.image_bytes(url, param) for url, param in sources))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.preparer.pool, frames_video, list(images), frames.params, spec)

    def _video_url_of(self, part: dict[str, Any], param: str) -> str | None:
        kind = part.get("type")
        if kind == "video_url":
            ref = part.get("video_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
        elif kind == "file":
            ref = part.get("file") or {}
            url = ref.get("file_id") or ref.get("file_data") if isinstance(ref, dict) else None
        else:
            return None
        if not isinstance(url, str) or not url:
            raise APIError(400, "A video part needs a URL or a file id.", f"{param}.{kind}")
        return url

    async def rewrite_messages(
        self,
        messages: list[Any],
        spec: SamplingSpec,
        max_videos: int,
        owner: str = "",
        inline: Mapping[str, bytes] | None = None,
        images_as_video: bool = True,
    ) -> list[str]:
        """Replace each video part by a prepared-frame reference (in place); returns the references to release.

        File ids resolve in ``owner``'s uploads only (the caller's API key). With ``images_as_video``, a message's
        two or more images (and no video) become one video of those frames.

        Videos are fetched, decoded and sampled concurrently (in worker threads); any failure releases what was
        already prepared and raises.
        """
        frame_lists = merge_frame_lists(messages) if images_as_video else []
        videos: list[tuple[dict[str, Any], str, str]] = []
        images: list[tuple[dict[str, Any], str]] = []
        for m, p, part in _parts(messages):
            param = f"messages[{m}].content[{p}]"
            if any(part is frames.part for frames in frame_lists):
                continue
            url = self._video_url_of(part, param)
            part.pop("uuid", None)  # cache identities are ours to derive from content, never a client's
            if url is not None:
                videos.append((part, url, f"{param}.{part['type']}"))
            elif part.get("type") == "image_url":
                images.append((part, f"{param}.image_url"))
        if len(videos) + len(frame_lists) > max_videos:
            raise APIError(400, f"A request may carry at most {max_videos} video(s).", "messages")

        if len(images) > self.max_images:
            raise APIError(400, f"A request may carry at most {self.max_images} image(s).", "messages")
        for part, param in images:
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str) or not url:
                raise APIError(400, "An image part needs a URL.", param)
            part["image_url"] = {"url": await self._inline_image(url, param)}

        # Tokens are taken only once every video is ready, so a failure or a client leaving mid-way pins nothing.
        videos_ready = await asyncio.gather(
            *(self.prepare_video(url, param, spec, owner, inline) for _, url, param in videos),
            *(self.prepare_frame_list(frames, spec) for frames in frame_lists),
        )
        for index, video in enumerate(videos_ready):
            VIDEO_FRAMES.labels("video" if index < len(videos) else "images").observe(len(video.frames))
        prepared = [self.prepared.put(video) for video in videos_ready]
        parts = [part for part, _, _ in videos] + [frames.part for frames in frame_lists]
        for part, ref in zip(parts, prepared, strict=True):
            part.clear()
            part.update({"type": "video_url", "video_url": {"url": ref}})
        return prepared
