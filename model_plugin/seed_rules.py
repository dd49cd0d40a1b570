"""Constants of the original Spatial-MLLM's inference that every path feeding the model must follow.

Kept free of imports so the server's settings and the sampling code can read them without loading torch or
transformers.
"""

# The original's inference and VSI-Bench scripts call the Qwen2.5-VL processor without the sampled frame rate;
# transformers 4.51.3 then assumes 2.0 fps, so one temporal patch (2 frames) is 1.0 s whatever the video.
SEED_SAMPLED_FPS = 2.0
