"""The app and its lifecycle: CLI, settings, pre-flight, launcher, wiring, signals, vLLM seams."""
