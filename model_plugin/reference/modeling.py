"""Spatial-MLLM on transformers: Qwen2.5-VL whose visual tokens carry VGGT features through the connector.

It computes what the original ``SpatialMLLMForConditionalGeneration.forward`` computes (Qwen ViT embeddings,
VGGT aggregator on the same resized frames divided by 255, connector, scatter into the placeholder tokens,
M-RoPE as Qwen2.5-VL) on transformers 5, by handing the fused embeddings to Qwen2.5-VL's own forward as
precomputed encoder outputs. The frames travel as ``video_tchw`` / ``image_tchw`` like in the original.

Images are a documented extension: the original crashes on them; here an image is two identical temporal
frames, the rule Qwen itself applies, so the spatial encoder and connector see a 2-frame "video".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.conversion_mapping import (
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling

from model_plugin.config import V1_0_ARCHITECTURE, SpatialMLLMConfig
from model_plugin.connector import MLPAddConnector
from model_plugin.reference.mrope import Qwen2_5_VLModelSeedPositions
from model_plugin.spatial_encoder import SpatialEncoder, frames_to_unit_range, pad_to_temporal_multiple


def _register_legacy_key_layout() -> None:
    """Let ``from_pretrained`` read the transformers 4.51 layout (``visual.*``, ``model.*``) of the public
    checkpoints, with the same renamings transformers applies to plain Qwen2.5-VL."""
    for name in ("SpatialMLLMForConditionalGeneration", V1_0_ARCHITECTURE):
        if get_checkpoint_conversion_mapping(name) is None:
            register_checkpoint_conversion_mapping(
                name, get_checkpoint_conversion_mapping("Qwen2_5_VLForConditionalGeneration")
            )


_register_legacy_key_layout()


class SpatialReferenceBase(Qwen2_5_VLForConditionalGeneration):
    """Qwen2.5-VL (seed M-RoPE rule) whose visual embeddings get ``spatial_delta`` of the same frames added.

    Subclasses build their spatial modules (``build_spatial_modules``) and compute the delta per visual token.
    """

    def __init__(self, config) -> None:
        # Qwen2_5_VLForConditionalGeneration.__init__ with the inner model that keeps the seed's M-RoPE rule.
        super(Qwen2_5_VLForConditionalGeneration, self).__init__(config)
        self.model = Qwen2_5_VLModelSeedPositions(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.build_spatial_modules(config)
        self.post_init()

    def build_spatial_modules(self, config) -> None:
        """Assign the spatial encoder and connector modules (names as the checkpoint's prefixes)."""
        raise NotImplementedError

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """Per item [T, 3, H, W] frames in [0, 1] (T padded to the temporal patch) -> rows to add, Qwen's order."""
        raise NotImplementedError

    def fuse_visual_features(
        self, pixel_values: torch.Tensor, grid_thw: torch.Tensor, frames: Sequence[torch.Tensor], modality: str
    ) -> BaseModelOutputWithPooling:
        """Qwen ViT embeddings + the spatial delta for each item, split per item like Qwen's own."""
        visual = self.model.visual
        embeds = visual(pixel_values.type(visual.dtype), grid_thw=grid_thw).pooler_output
        temporal = self.config.vision_config.temporal_patch_size
        videos = []
        for clip, (t, _, _) in zip(frames, grid_thw.tolist(), strict=True):
            clip = pad_to_temporal_multiple(frames_to_unit_range(clip), temporal)
            if clip.shape[0] != t * temporal:
                raise ValueError(f"{clip.shape[0]} frames given for a grid of {t} temporal patches")
            videos.append(clip.to(embeds.device))
        delta = self.spatial_delta(videos, grid_thw, modality)
        if delta.shape != embeds.shape:
            raise ValueError(
                f"spatial features give {tuple(delta.shape)} but the visual embeddings are "
                f"{tuple(embeds.shape)}: frames or grid sizes differ between the two encoders"
            )
        fused = embeds + delta.to(embeds.dtype)
        sizes = (grid_thw.prod(-1) // visual.spatial_merge_size**2).tolist()
        return BaseModelOutputWithPooling(pooler_output=torch.split(fused, sizes))

    def _prepare_multimodal_encoder_kwargs_for_generation(self, model_kwargs: dict) -> dict:
        """Encode pixels through the fused path before prefill.

        transformers' ``generate`` pre-encodes pixels with the base model's ``get_*_features`` (the plain ViT)
        and drops them; left alone, generation would silently skip the spatial encoder.
        """
        encoded = model_kwargs.setdefault("mm_encoder_outputs", {})
        for modality, pixels_key, grid_key, frames_key in (
            ("video", "pixel_values_videos", "video_grid_thw", "video_tchw"),
            ("image", "pixel_values", "image_grid_thw", "image_tchw"),
        ):
            pixels = model_kwargs.pop(pixels_key, None)
            frames = model_kwargs.pop(frames_key, None)
            if pixels is None:
                continue
            if frames is None:
                raise ValueError(f"{frames_key} (the resized frames) is required with {pixels_key}")
            if modality == "image":
                frames = [img if img.dim() == 4 else img.unsqueeze(0) for img in frames]
            encoded[modality] = self.fuse_visual_features(pixels, model_kwargs[grid_key], frames, modality)
        return model_kwargs

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values=None,
        inputs_embeds: torch.Tensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        video_grid_thw: torch.Tensor | None = None,
        image_tchw: Sequence[torch.Tensor] | None = None,
        video_tchw: Sequence[torch.Tensor] | None = None,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ):
        """Qwen2.5-VL's forward with fused visual features; ``*_tchw`` are the resized frames ([T,3,H,W])."""
        encoded = dict(mm_encoder_outputs or {})
        if pixel_values_videos is not None:
            if video_tchw is None:
                raise ValueError("video_tchw (the resized frames of each video) is required with pixel_values_videos")
            encoded["video"] = self.fuse_visual_features(pixel_values_videos, video_grid_thw, video_tchw, "video")
        if pixel_values is not None:
            if image_tchw is None:
                raise ValueError("image_tchw (the resized images) is required with pixel_values")
            images = [img if img.dim() == 4 else img.unsqueeze(0) for img in image_tchw]
            encoded["image"] = self.fuse_visual_features(pixel_values, image_grid_thw, images, "image")
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            mm_token_type_ids=mm_token_type_ids,
            second_per_grid_ts=second_per_grid_ts,
            image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw,
            mm_encoder_outputs=encoded or None,
            **kwargs,
        )


class SpatialMLLMForConditionalGeneration(SpatialReferenceBase):
    """v1.1: Qwen2.5-VL + ``spatial_encoder`` (VGGT with heads) + ``connector``, keys as the public checkpoints."""

    config_class = SpatialMLLMConfig
    _keys_to_ignore_on_load_unexpected = [r"^spatial_encoder\.vggt_model\.track_head\."]  # noqa: RUF012

    def build_spatial_modules(self, config: SpatialMLLMConfig) -> None:
        self.spatial_encoder = SpatialEncoder(config.spatial_config, with_heads=True)
        self.connector = MLPAddConnector.from_config(config)

    def spatial_delta(self, frames: Sequence[torch.Tensor], grid_thw: torch.Tensor, modality: str) -> torch.Tensor:
        """connector(VGGT layer); an image is its two identical temporal frames."""
        spatial, patch_start_idx = self.spatial_encoder(frames, self.connector.spatial_embeds_layer_idx)
        return self.connector.spatial_delta(spatial, patch_start_idx, grid_thw)
