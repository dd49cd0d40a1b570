"""What both Spatial-MLLM architectures share on vLLM: vLLM's own Qwen2.5-VL plus a spatial stage in the
multimodal embedding step.

Everything Qwen2.5-VL does (ViT, LLM, M-RoPE, processor, dummy inputs, weight names) is inherited. After the
ViT embeds a video (or image), VGGT runs on the same frames and the architecture's connector adds its features,
so vLLM's encoder cache holds the fused embeddings and a repeated video skips both encoders. The spatial
modules are tower modules: a text-only deployment (``limit_mm_per_prompt`` 0 for image and video) does not
build them.

Frames for the spatial encoder: no second copy travels. The frames VGGT needs are exactly the ones the ViT's
patches were cut from, so they are rebuilt by un-patchifying ``pixel_values(_videos)``. With
``mm_device_do_normalize`` on (the default for this model) the patches are the raw resized pixels (0..255) and
the rebuild is exact; with it off they are normalised and the normalisation is inverted and rounded to the
original integer pixels. Odd frame counts arrive padded by the processor (last frame doubled) and images as
two identical temporal frames.

An architecture (``vllm_model`` for v1.1, ``vllm_model_v1_0`` for v1.0) says which modules it builds, how their
features become one delta per visual token, and its checkpoint prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import torch
from vllm.config import VllmConfig
from vllm.logger import init_logger
from vllm.model_executor.models.qwen2_5_vl import (
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLMultiModalProcessor,
)
from vllm.model_executor.models.utils import AutoWeightsLoader
from vllm.multimodal import MULTIMODAL_REGISTRY

from model_plugin.capabilities import refuse_unsupported_capabilities
from model_plugin.hf_processor import SpatialProcessingInfo
from model_plugin.profiling_inputs import LargestVideoDummyInputs

VIDEO, IMAGE = "video", "image"
PARAMETERS_LOG_PREFIX = "Spatial-MLLM parameters: "  # one JSON object follows (bench/full_size_check.py reads it)

# Under vLLM's logger: vLLM configures only its own hierarchy in the engine processes, where this runs.
logger = init_logger("vllm.spatial_mllm")

# Each architecture's class decorates itself with this: Qwen2.5-VL's own multimodal processor; its info, whose HF
# processor reuses vLLM's tokenizer (model_plugin.hf_processor); its dummy inputs with the profiling video at the
# caps' size (model_plugin.profiling_inputs).
with_qwen2_5_vl_processor = MULTIMODAL_REGISTRY.register_processor(
    Qwen2_5_VLMultiModalProcessor, info=SpatialProcessingInfo, dummy_inputs=LargestVideoDummyInputs
)


def unpatchify(patches: torch.Tensor, grid_thw: list[int], patch: int, temporal: int, merge: int) -> torch.Tensor:
    """Invert Qwen2-VL's patchify: [t*h*w, C*temporal*patch*patch] -> [t*temporal, C, h*patch, w*patch]."""
    t, h, w = grid_thw
    x = patches.reshape(t, h // merge, w // merge, merge, merge, -1, temporal, patch, patch)
    # (t, hb, wb, mh, mw, C, tt, ph, pw) -> (t, tt, C, hb, mh, ph, wb, mw, pw)
    x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8)
    return x.reshape(t * temporal, -1, h * patch, w * patch)


def denormalize_patches(patches: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised patches ([N, C*...], channel-major per patch) -> the original pixels / 255.

    The frames were integers before normalisation, so rounding recovers them exactly.
    """
    channels = mean.numel()
    shaped = patches.float().reshape(patches.shape[0], channels, -1)
    pixels = torch.round(
        (shaped * std.to(patches.device).view(1, -1, 1) + mean.to(patches.device).view(1, -1, 1)) * 255
    )
    return (pixels.clamp(0, 255) / 255.0).reshape(patches.shape)


def heads_of(vggt_prefix: str) -> tuple[str, ...]:
    """Checkpoint prefixes of the VGGT heads under ``vggt_prefix``: serving needs the aggregator only (space-aware
    sampling loads the point head itself)."""
    return tuple(f"{vggt_prefix}{head}." for head in ("camera_head", "point_head", "depth_head", "track_head"))


class SpatialQwen2_5_VL(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL whose visual embeddings get ``spatial_delta`` of the same frames added before caching.

    Subclasses set ``SPATIAL_PREFIXES`` (their module attributes, which must all load), ``SKIPPED_PREFIXES``
    (checkpoint keys never loaded) and implement ``build_spatial_modules`` and ``spatial_delta``.
    """

    SPATIAL_PREFIXES: tuple[str, ...] = ()
    SKIPPED_PREFIXES: tuple[str, ...] = ()

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        refuse_unsupported_capabilities(vllm_config)  # options that would bypass the spatial encoder
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        config = vllm_config.model_config.hf_config
        mm_config = vllm_config.model_config.get_multimodal_config()
        self._pixels_are_raw = bool(mm_config.mm_device_do_normalize)
        with self._mark_tower_model(vllm_config, {IMAGE, VIDEO}):
            self.build_spatial_modules(config)
        vision = config.vision_config
        self._patch = vision.patch_size
        self._temporal = vision.temporal_patch_size
        self._merge = vision.spatial_merge_size
        self._norm_mean, self._norm_std = (None, None) if self._pixels_are_raw else self._normalisation()
        self.spatial_encoder_calls = 0  # counted so tests and metrics can see encoder-cache hits

    def build_spatial_modules(self, config) -> None:
        """Assign the spatial encoder and connector modules (names as the checkpoint's prefixes)."""
        raise NotImplementedError

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """Per item [T, 3, H, W] frames in [0, 1] -> [visual tokens of all items, hidden] to add, in Qwen's order."""
        raise NotImplementedError

    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The checkpoint's image mean and std, read once at build (needed only when patches arrive normalised)."""
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(
            self.model_config.model, trust_remote_code=self.model_config.trust_remote_code
        )
        return torch.tensor(processor.image_mean), torch.tensor(processor.image_std)

    def _unit_range(self, patches: torch.Tensor) -> torch.Tensor:
        """Patch pixels -> float in [0, 1], exactly the resized uint8 frames divided by 255."""
        if self._pixels_are_raw or patches.dtype == torch.uint8:
            return patches.float() / 255.0
        assert self._norm_mean is not None and self._norm_std is not None  # read at build when not raw
        return denormalize_patches(patches, self._norm_mean, self._norm_std)

    def _fuse(
        self, embeds: tuple[torch.Tensor, ...], pixel_values: torch.Tensor, grid_thw: torch.Tensor, modality: str
    ) -> tuple[torch.Tensor, ...]:
        """Add the spatial delta of each item's rebuilt frames to its ViT embeddings."""
        grids = grid_thw.tolist()
        rows = [t * h * w for t, h, w in grids]
        frames = [
            unpatchify(self._unit_range(p), g, self._patch, self._temporal, self._merge)
            for p, g in zip(pixel_values.split(rows), grids, strict=True)
        ]
        self.spatial_encoder_calls += 1
        delta = self.spatial_delta(frames, grid_thw, modality)
        sizes = [e.shape[0] for e in embeds]
        return tuple(e + d.to(e.dtype) for e, d in zip(embeds, delta.split(sizes), strict=True))

    # vLLM's private hooks overridden here (and _mark_tower_model above) are listed in server/runtime/vllm_seams.py
    # (MODEL_SEAMS) and checked against the installed vLLM by tests/server/test_vllm_seams.py.
    def _process_video_input(self, video_input) -> tuple[torch.Tensor, ...]:
        embeds = super()._process_video_input(video_input)
        if video_input["type"] != "pixel_values_videos":
            return embeds  # precomputed embeddings are taken as already fused
        return self._fuse(embeds, video_input["pixel_values_videos"], video_input["video_grid_thw"], VIDEO)

    def _process_image_input(self, image_input) -> tuple[torch.Tensor, ...]:
        embeds = super()._process_image_input(image_input)
        if image_input["type"] != "pixel_values":
            return embeds
        return self._fuse(embeds, image_input["pixel_values"], image_input["image_grid_thw"], IMAGE)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Both checkpoint layouts (Qwen's mapper), spatial modules as named; ``SKIPPED_PREFIXES`` skipped.

        A checkpoint without the spatial modules would otherwise serve plain Qwen2.5-VL without a word, so
        missing weights of any of them are an error naming them.
        """
        kept = ((name, w) for name, w in weights if not name.startswith(self.SKIPPED_PREFIXES))
        loaded = AutoWeightsLoader(self).load_weights(kept, mapper=self.hf_to_vllm_mapper)
        missing = sorted(
            name
            for prefix in self.SPATIAL_PREFIXES
            if isinstance(getattr(self, prefix), torch.nn.Module)
            for name, _ in getattr(self, prefix).named_parameters(prefix=prefix)
            if name not in loaded
        )
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise ValueError(f"the checkpoint lacks Spatial-MLLM weights: {shown}; is it a Spatial-MLLM checkpoint?")
        logger.info("%s%s", PARAMETERS_LOG_PREFIX, json.dumps(self.parameter_counts()))
        return loaded

    def parameter_counts(self) -> dict[str, int]:
        """Parameters this worker holds, per part (a tied lm_head counted once): what is served, not the config.

        ``vggt`` is the spatial encoder as served (the aggregator; VGGT's heads are never loaded here).
        """
        encoder, connector = self.SPATIAL_PREFIXES

        def count(module: torch.nn.Module | None) -> int:
            if not isinstance(module, torch.nn.Module):
                return 0
            unique = {id(p): p.numel() for p in module.parameters()}
            return sum(unique.values())

        return {
            "total": count(self),
            "llm": count(self.language_model),
            "vit": count(self.visual),
            "vggt": count(getattr(self, encoder, None)),
            "connector": count(getattr(self, connector, None)),
        }
