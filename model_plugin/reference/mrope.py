"""Qwen2.5-VL's M-RoPE positions as transformers 4.51 computes them (the rule Spatial-MLLM was trained with).

transformers 5 continues the text after an image or video at ``max(h, w) / merge`` past the block start. The
4.51 rule, which vLLM also follows, continues at the block's largest position + 1, and that largest position
includes the time-scaled temporal extent of a video. With 3 or more temporal patches the two differ, so the
reference model uses this one.
"""

from __future__ import annotations

import itertools

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

TEXT, IMAGE, VIDEO = 0, 1, 2


class Qwen2_5_VLModelSeedPositions(Qwen2_5_VLModel):
    """Qwen2.5-VL's inner model with the transformers 4.51 position rule; nothing else differs."""

    def get_rope_index(
        self,
        input_ids: torch.LongTensor,
        mm_token_type_ids: torch.IntTensor,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        merge = self.config.vision_config.spatial_merge_size
        tokens_per_second = self.config.vision_config.tokens_per_second
        position_ids = torch.zeros(3, *input_ids.shape, dtype=input_ids.dtype, device=input_ids.device)
        images = iter(image_grid_thw if image_grid_thw is not None else [])
        videos = iter(video_grid_thw if video_grid_thw is not None else [])
        seconds = iter(second_per_grid_ts if second_per_grid_ts is not None else itertools.repeat(1.0))
        deltas = []
        for row, ids in enumerate(input_ids):
            keep = attention_mask[row].bool() if attention_mask is not None else torch.ones_like(ids, dtype=torch.bool)
            types = mm_token_type_ids[row][keep].tolist()
            blocks, next_pos = [], 0
            for kind, group in itertools.groupby(types):
                length = len(list(group))
                if kind == TEXT:
                    block = torch.arange(length, device=ids.device).expand(3, -1) + next_pos
                else:
                    grid = next(videos) if kind == VIDEO else next(images)
                    interval = tokens_per_second * float(next(seconds)) if kind == VIDEO else 1.0
                    block = self.get_vision_position_ids(next_pos, grid, 1, merge, interval, device=ids.device)
                blocks.append(block)
                next_pos = int(block.max()) + 1
            positions = torch.cat(blocks, dim=1)
            position_ids[:, row, keep] = positions.to(position_ids.dtype)
            deltas.append(int(positions.max()) + 1 - len(types))
        return position_ids, torch.tensor(deltas, device=input_ids.device).unsqueeze(1)
