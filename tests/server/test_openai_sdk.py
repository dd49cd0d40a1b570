"""The official ``openai`` SDK, unmodified, against our server: sync, async, streaming, usage, Files API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from media import data_url

pytestmark = pytest.mark.engine
MODEL = "spatial-mllm-tiny"


def _client(live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0, timeout=120)


def _video_message(url: str, question: str = "How many chairs are in this room?") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": question}],
        }
    ]


def test_models_lists_served_name(live) -> None:
    models = _client(live).models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_non_streaming_with_video_data_url(live, room_video: Path) -> None:
    reply = _client(live).chat.completions.create(
        model=MODEL, messages=_video_message(data_url(room_video)), max_tokens=6, temperature=0
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens == 6
    # 8 frames (the test server's default) of 112x140, resized under its 12544-pixel cap to 112x112:
    # 4 temporal x (4 x 4) merged patches = 64 video tokens, plus the chat template and question
    assert 64 + 10 < reply.usage.prompt_tokens < 64 + 40


def test_chat_streaming_includes_usage(live, room_video: Path) -> None:
    stream = _client(live).chat.completions.create(
        model=MODEL,
        messages=_video_message(data_url(room_video)),
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_async_client_and_sampling_parameters(live, room_video: Path) -> None:
    async def ask() -> list:
        client = openai.AsyncOpenAI(base_url=f"{live.base}/v1", api_key=live.key, max_retries=0, timeout=120)
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model=MODEL,
                    messages=_video_message(data_url(room_video)),
                    max_completion_tokens=4,
                    temperature=0.8,
                    top_p=0.9,
                    seed=seed,
                    n=2,
                    logprobs=True,
                    top_logprobs=2,
                    extra_body={"top_k": 20, "video_sampling": {"num_frames": 4}},
                )
                for seed in (1, 2)
            )
        )
        await client.close()
        return replies

    replies = asyncio.run(ask())
    for reply in replies:
        assert len(reply.choices) == 2
        assert reply.usage.completion_tokens == 8
        for choice in reply.choices:
            assert len(choice.logprobs.content) == 4
            assert all(len(token.top_logprobs) == 2 for token in choice.logprobs.content)
    # 4 frames -> 2 temporal x 20 = 40 video tokens: fewer prompt tokens than with the default 8 frames
    assert replies[0].usage.prompt_tokens == replies[1].usage.prompt_tokens


def test_seeded_sampling_is_reproducible_and_greedy_matches(live, room_video: Path) -> None:
    client = _client(live)
    url = data_url(room_video)
    kwargs = {"model": MODEL, "messages": _video_message(url), "max_tokens": 6}
    first = client.chat.completions.create(**kwargs, temperature=1.0, seed=7)
    second = client.chat.completions.create(**kwargs, temperature=1.0, seed=7)
    assert first.choices[0].message.content == second.choices[0].message.content
    stopped = client.chat.completions.create(**kwargs, temperature=0, stop=["\n"], presence_penalty=0.5)
    assert "\n" not in stopped.choices[0].message.content


def test_multi_turn_conversation(live, room_video: Path) -> None:
    client = _client(live)
    messages = _video_message(data_url(room_video))
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "And how many tables?"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + 4


def test_file_upload_reused_hits_caches(live, room_video: Path) -> None:
    client = _client(live)
    with room_video.open("rb") as handle:
        uploaded = client.files.create(file=handle, purpose="user_data")
    assert uploaded.id.startswith("file-") and uploaded.bytes == room_video.stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "room.mp4"
    assert uploaded.id in [f.id for f in client.files.list().data]

    content = [
        {"type": "file", "file": {"file_id": uploaded.id}},
        {"type": "text", "text": "How far is the sofa from the door?"},
    ]
    first = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3, temperature=0
    )
    second = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=3, temperature=0
    )
    assert first.choices[0].message.content == second.choices[0].message.content
    assert second.usage.prompt_tokens_details is not None
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    # the same file id as a video_url part
    third = client.chat.completions.create(
        model=MODEL, messages=_video_message(uploaded.id), max_tokens=3, temperature=0
    )
    assert third.choices[0].message.content

    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
