"""One benchmark question about an uploaded video through the OpenAI-compatible API, with the seed's decoding.

The seed's evaluations generate with ``do_sample=True, temperature=0.1, top_p=0.001`` and ``max_new_tokens`` 1024
(VSI-Bench) or 256 (ScanQA); ``generate`` takes whatever else (``top_k``, ``repetition_penalty``) from the
checkpoint's ``generation_config.json``. Only the explicit values are sent here, so the server fills the rest from
the same file (vLLM's default ``--generation-config auto``), which keeps both paths on the same sampling
parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import openai


@dataclass(frozen=True)
class Decoding:
    """The seed's explicit generation arguments (``inference_batch`` in eval_vsibench.py; eval_scanqa.py's differ
    only in ``max_tokens=256``)."""

    temperature: float = 0.1
    top_p: float = 0.001
    max_tokens: int = 1024


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int


def make_client(base_url: str, api_key: str, max_retries: int, timeout_s: float) -> openai.AsyncOpenAI:
    """The SDK client; its retries cover 503 + ``Retry-After`` (admission control), 429, 5xx and dropped
    connections, honouring the server's ``Retry-After``."""
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return openai.AsyncOpenAI(base_url=base, api_key=api_key, max_retries=max_retries, timeout=timeout_s)


async def resolve_model(client: openai.AsyncOpenAI, model: str | None) -> str:
    """The given model name, else the server's only (first) served model."""
    if model:
        return model
    models = await client.models.list()
    if not models.data:
        raise SystemExit("the server lists no model; pass --model")
    return models.data[0].id


def user_message(file_id: str, text: str) -> dict[str, Any]:
    """One user message: the uploaded video by file id (OpenAI's ``file`` part), then the question, the order of
    the seed's messages."""
    return {
        "role": "user",
        "content": [{"type": "file", "file": {"file_id": file_id}}, {"type": "text", "text": text}],
    }


class QuestionAsker:
    """Sends one question about an uploaded video and returns the model's answer text."""

    def __init__(self, client: openai.AsyncOpenAI, model: str, sampling: Mapping[str, Any], decoding: Decoding) -> None:
        self.client = client
        self.model = model
        self.sampling = dict(sampling)  # the request's ``video_sampling``
        self.decoding = decoding

    def settings(self) -> dict[str, Any]:
        """Everything an answer depends on besides the question (recorded to keep one output folder consistent)."""
        return {"model": self.model, "video_sampling": dict(self.sampling), **asdict(self.decoding)}

    async def ask(self, file_id: str, text: str) -> Answer:
        reply = await self.client.chat.completions.create(
            model=self.model,
            messages=[user_message(file_id, text)],
            temperature=self.decoding.temperature,
            top_p=self.decoding.top_p,
            max_tokens=self.decoding.max_tokens,
            extra_body={"video_sampling": self.sampling},
        )
        usage = reply.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        return Answer(
            text=reply.choices[0].message.content or "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
        )
