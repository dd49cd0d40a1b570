"""Bytes -> frames (decoder processes, cache), the space-aware geometry worker, frames -> vLLM."""
