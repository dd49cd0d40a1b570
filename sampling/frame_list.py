"""Space-aware frames as the original's evaluation sees them: saved frames read back as a list of images.

The original's space-aware VSI-Bench run saves the chosen frames (full resolution, lossless PNG) and passes the
list of paths as the video. qwen-vl-utils 0.0.14 then resizes every frame twice: first as an image
(``fetch_image``, which its ``fetch_video`` calls with 28 where the ViT patch size 14 is expected, so sides
become multiples of 56 under the image pixel bounds, with PIL's bicubic), then as a video frame (the video rules
and torchvision's antialiased bicubic, as for a decoded video). The final size can differ from a single resize
of the decoded frames, and the pixels do. :func:`resize_like_frame_list` reproduces both steps.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sampling.uniform import UniformSpec, resize_frames, resized_size, smart_resize

# qwen-vl-utils 0.0.14: fetch_video passes its 28-pixel factor as fetch_image's patch size, which doubles it
IMAGE_STEP_FACTOR = 2 * 28
IMAGE_STEP_MIN_PIXELS = 4 * IMAGE_STEP_FACTOR**2  # IMAGE_MIN_TOKEN_NUM * factor**2
IMAGE_STEP_MAX_PIXELS = 16384 * IMAGE_STEP_FACTOR**2  # IMAGE_MAX_TOKEN_NUM * factor**2


def image_step_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the first, per-image resize (the seed's frame elements carry no pixel bounds)."""
    return smart_resize(height, width, IMAGE_STEP_FACTOR, IMAGE_STEP_MIN_PIXELS, IMAGE_STEP_MAX_PIXELS)


def resize_like_frame_list(frames: np.ndarray, spec: UniformSpec) -> torch.Tensor:
    """uint8 [T, H, W, 3] full-resolution frames -> uint8 [T, 3, h, w] as qwen-vl-utils makes them from the list
    of saved frames: PIL bicubic to the image-step size, then the video resize under ``spec``'s bounds."""
    height, width = frames.shape[1:3]
    first = image_step_size(height, width)
    if first == (height, width):
        images = np.ascontiguousarray(frames)
    else:
        images = np.stack(
            [np.asarray(Image.fromarray(frame).resize(first[::-1], Image.Resampling.BICUBIC)) for frame in frames]
        )
    padded = len(frames) + len(frames) % 2  # the list is padded to whole temporal patches before the video step
    return resize_frames(images, resized_size(padded, *first, spec))
