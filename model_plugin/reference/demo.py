"""``python -m model_plugin.reference.demo``: the tiny checkpoint answering a question about a generated video.

It exercises the whole reference path on CPU in seconds (checkpoint in the original layout, processor,
ViT + VGGT + connector, generate). The weights are random, so the answer is random text.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

DEFAULT_CHECKPOINT = Path(".cache/tiny-spatial-mllm")


def synthetic_video(frames: int = 4, height: int = 112, width: int = 140, seed: int = 0) -> torch.Tensor:
    """A moving colour gradient with noise, [T, 3, H, W] uint8: enough structure for every encoder to work."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(frames).view(-1, 1, 1, 1).float()
    y = torch.linspace(0, 1, height).view(1, 1, -1, 1)
    x = torch.linspace(0, 1, width).view(1, 1, 1, -1)
    channels = torch.arange(3).view(1, -1, 1, 1).float()
    base = 127.5 * (1 + torch.sin(6.0 * x + 4.0 * y + 0.5 * t + 2.0 * channels))
    noise = torch.randint(-20, 21, (frames, 3, height, width), generator=gen).float()
    return (base + noise).clamp(0, 255).to(torch.uint8)


def main(argv: list[str] | None = None) -> None:
    from transformers import AutoProcessor

    from model_plugin.reference import SpatialMLLMForConditionalGeneration
    from model_plugin.reference.inference import generate_answer
    from model_plugin.tiny import write_tiny_checkpoint

    parser = argparse.ArgumentParser(prog="python -m model_plugin.reference.demo")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--question", default="How many chairs are in this room?")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args(argv)

    if not (args.checkpoint / "config.json").exists():
        print(f"building the tiny checkpoint in {args.checkpoint} ...")
        write_tiny_checkpoint(args.checkpoint)
    model = SpatialMLLMForConditionalGeneration.from_pretrained(args.checkpoint).eval()
    processor = AutoProcessor.from_pretrained(args.checkpoint)
    start = time.perf_counter()
    answer = generate_answer(model, processor, [synthetic_video()], args.question, args.max_new_tokens)
    print(f"question: {args.question}\nanswer (random weights): {answer!r}\n({time.perf_counter() - start:.2f} s)")


if __name__ == "__main__":
    main()
