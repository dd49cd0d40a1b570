"""The lmms-eval model class: each document's video uploaded once (file id reused), ``video_sampling`` sent, requests
run concurrently, and a failed request fails the run instead of being scored as an answer.

lmms-eval's stock ``openai`` backend turns a failure into the text ``"[... after N retries] ..."``, which VSI-Bench's
numeric scoring reads as the answer N; here every failure is collected and raised once all requests have finished.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms
from tqdm import tqdm

from bench.eval_runner.client import Decoding, QuestionAsker, make_client, resolve_model
from bench.eval_runner.uploads import VideoFiles


class RequestsFailed(RuntimeError):
    """Some documents got no answer from the server."""


def video_and_text(messages: list[dict[str, Any]]) -> tuple[Path, str]:
    """The one video and the joined text of a document's chat messages (lmms-eval's ``doc_to_messages`` form)."""
    videos: list[Path] = []
    texts: list[str] = []
    for message in messages:
        for part in message["content"]:
            kind = part.get("type")
            if kind == "video":
                videos.append(Path(part["url"]))
            elif kind == "text":
                texts.append(part["text"])
            else:
                raise ValueError(f"spatial_mllm takes video and text parts; got a {kind!r} part")
    if len(videos) != 1:
        raise ValueError(f"spatial_mllm asks about one video per document; got {len(videos)}")
    return videos[0], "\n".join(texts)


class SpatialMLLM(lmms):
    """``--model_args base_url=http://host:8000,strategy=space_aware,num_frames=16[,api_key=...,model=...,
    num_concurrent=8,max_retries=3,timeout=600]``."""

    is_simple = False

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        api_key: str | None = None,
        model: str | None = None,
        strategy: str = "uniform",
        num_frames: int = 16,
        num_concurrent: int = 8,
        max_retries: int = 3,
        timeout: float = 600.0,
        **_: Any,  # lmms-eval's batch_size, device...: nothing to do for an HTTP client
    ) -> None:
        super().__init__()
        self.base_url = base_url
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.model = model
        self.strategy = strategy
        self.num_frames = int(num_frames)
        self.num_concurrent = max(1, int(num_concurrent))
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)

    def generate_until(self, requests) -> list[GenerationResult]:
        return asyncio.run(self._answer_all(requests))

    async def _answer_all(self, requests) -> list[GenerationResult]:
        client = make_client(self.base_url, self.api_key, self.max_retries, self.timeout)
        model = await resolve_model(client, self.model)
        files = VideoFiles(client, {}, save=lambda _: None)
        slots = asyncio.Semaphore(self.num_concurrent)
        progress = tqdm(total=len(requests), desc="spatial_mllm", disable=self.rank != 0)

        async def answer(request) -> GenerationResult:
            _, doc_to_messages, gen_kwargs, doc_id, task, split = request.args
            video, text = video_and_text(doc_to_messages(self.task_dict[task][split][doc_id]))
            decoding = Decoding(
                temperature=float(gen_kwargs.get("temperature") or 0.0),
                top_p=float(gen_kwargs.get("top_p") or 1.0),
                max_tokens=int(gen_kwargs.get("max_new_tokens") or 16),
            )
            sampling = {"strategy": self.strategy, "num_frames": self.num_frames}
            asker = QuestionAsker(client, model, sampling, decoding)
            async with slots:
                file_id = await files.file_id(str(video.resolve()), video)
                reply = await asker.ask(file_id, text)
            progress.update(1)
            return GenerationResult(
                text=reply.text,
                token_counts=TokenCounts(input_tokens=reply.prompt_tokens, output_tokens=reply.completion_tokens),
            )

        try:
            outcomes = await asyncio.gather(*(answer(r) for r in requests), return_exceptions=True)
        finally:
            progress.close()
            await client.close()
        failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, BaseException)]
        if failures:
            index, first = failures[0]
            raise RequestsFailed(
                f"{len(failures)} of {len(requests)} requests failed (not scored); first, request {index}: {first!r}"
            )
        return list(outcomes)

    def loglikelihood(self, requests):
        raise NotImplementedError("spatial_mllm generates answers; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("spatial_mllm answers single-round questions")
