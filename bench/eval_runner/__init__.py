"""What every benchmark client shares: ask a dataset's questions about its videos through the OpenAI-compatible API,
each video uploaded once, ``--concurrency`` requests in flight grouped by video, a progress bar, and an output
folder that resumes after an interruption. A benchmark (``bench.vsibench``, ``bench.scanqa``) supplies only its
data, prompt, results row and metrics (:class:`bench.eval_runner.runner.Benchmark`)."""
