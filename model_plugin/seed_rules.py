"""Constants of the original Spatial-MLLM's inference that every path feeding the model must follow.

Kept free of imports so the server's settings and the sampling code can read them without loading torch or
transformers.
"""

# The original's inference and VSI-Bench scripts call the Qwen2.5-VL processor without the sampled frame rate;
# transformers 4.51.3 then assumes 2.0 fps, so one temporal patch (2 frames) is 1.0 s whatever the video.
SEED_SAMPLED_FPS = 2.0

# The original's generate() arguments (src/inference.py, eval_vsibench.py); transformers merges them over the
# checkpoint's generation_config.json (which adds top_k and repetition_penalty), and so does vLLM with these as
# ``override_generation_config`` (``max_new_tokens`` becomes the default ``max_tokens``).
SEED_GENERATION = {"temperature": 0.1, "top_p": 0.001, "max_new_tokens": 1024}
