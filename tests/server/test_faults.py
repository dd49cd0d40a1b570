"""Faults: the decoder hangs. (The engine process dying mid-request is the last test of ``test_replicas.py``, on
the replica the proxy test leaves: a server start of its own cost minutes of the suite.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from media import encode_mp4

from server.errors import APIError
from server.frames.video_prep import SamplingSpec, VideoPreparer
from server.runtime.settings import ServerSettings


def test_a_hanging_decoder_is_bounded_by_the_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    video = encode_mp4(frames, tmp_path / "v.mp4").read_bytes()
    preparer = VideoPreparer(ServerSettings(decode_timeout_s=0.5))

    async def hang(*args):  # the request's deadline covers waiting for a decoder too (server/frames/decode_pool.py)
        await asyncio.sleep(3)

    monkeypatch.setattr(preparer, "_prepare_uniform", hang)
    spec = SamplingSpec("uniform", 4, None, 16, 3136, 12544, 10**8)
    with pytest.raises(APIError) as caught:
        asyncio.run(preparer.prepare(video, "digest", spec, "video"))
    assert caught.value.status == 503 and caught.value.retry_after and "longer than" in caught.value.message
    assert not preparer._in_flight
    preparer.shutdown()
