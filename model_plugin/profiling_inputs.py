"""The dummy video of vLLM's memory-profiling pass is the largest video the server's caps allow.

vLLM sizes the KV cache from the memory left after a profiling pass over dummy inputs. Qwen2.5-VL's builder
counts the dummy video's frames at the processor's largest frame size (thousands of tokens a frame, so 2 frames
fit the context) and caps them at 14; the caps' ``limit_mm_per_prompt`` video options (frames, width, height) can
then only shrink that video. Spatial-MLLM also runs VGGT on every frame, whose activations grow with frames x
pixels: a pass over 2 frames leaves the KV cache the memory VGGT needs at the first 16-frame request. Here the
frames are counted at the caps' frame size instead, up to the caps' frame count and the context length.
"""

from __future__ import annotations

from collections.abc import Mapping

from vllm.config.multimodal import BaseDummyOptions, VideoDummyOptions
from vllm.inputs import MultiModalDataDict
from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLDummyInputsBuilder

VIDEO = "video"


class LargestVideoDummyInputs(Qwen2_5_VLDummyInputsBuilder):
    """Qwen2.5-VL's dummy inputs, with the video at the caps' frames x size when the caps give all three."""

    def get_dummy_mm_data(
        self, seq_len: int, mm_counts: Mapping[str, int], mm_options: Mapping[str, BaseDummyOptions]
    ) -> MultiModalDataDict:
        data = super().get_dummy_mm_data(seq_len, mm_counts, mm_options)
        videos = mm_counts.get(VIDEO, 0)
        caps = mm_options.get(VIDEO) if mm_options else None
        if (
            not videos
            or not isinstance(caps, VideoDummyOptions)
            or not (caps.num_frames and caps.width and caps.height)
        ):
            return data
        widest, tallest = self.info.get_image_size_with_most_features()
        width, height = min(widest, caps.width), min(tallest, caps.height)
        frames = self.frames_that_fit(seq_len, videos, width, height, caps.num_frames)
        data[VIDEO] = self._get_dummy_videos(
            width=width, height=height, num_frames=frames, num_videos=videos, overrides=caps
        )
        return data

    def frames_that_fit(self, seq_len: int, videos: int, width: int, height: int, most: int) -> int:
        """The most frames (at most ``most``) at ``width`` x ``height`` whose tokens, for ``videos`` videos, fit
        ``seq_len``; at least one."""
        processor = self.info.get_image_processor()

        def tokens(frames: int) -> int:
            return self.info.get_num_video_tokens(
                image_width=width, image_height=height, num_frames=frames, image_processor=processor, mm_kwargs={}
            )

        frames = most
        while frames > 1 and videos * tokens(frames) > seq_len:
            frames -= 1
        return frames
