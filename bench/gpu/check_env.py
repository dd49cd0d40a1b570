"""`make gpu-env-check`'s last step: in the `--extra gpu` environment, import what a GPU deployment imports.

Runs on a machine without a GPU: vLLM's CUDA build, our plugin (both model classes, found through vLLM's plugin
entry point) and the server app must import; a GPU is only needed to run them. Prints one JSON line.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import entry_points, version


def main() -> None:
    start = time.perf_counter()
    import torch
    import vllm
    from vllm.platforms import current_platform

    import model_plugin.vllm_model
    import model_plugin.vllm_model_v1_0
    import server.runtime.app  # noqa: F401 - importing is the check

    plugins = [ep.name for ep in entry_points(group="vllm.general_plugins")]
    if "spatial_mllm" not in plugins:
        raise SystemExit(f"the spatial_mllm vLLM plugin entry point is missing (found {plugins})")
    classes = [
        model_plugin.vllm_model.SpatialMLLMForConditionalGeneration.__name__,
        model_plugin.vllm_model_v1_0.Qwen2_5_VL_VGGTForConditionalGeneration.__name__,
    ]
    print(
        json.dumps(
            {
                "vllm": vllm.__version__,
                "vllm_distribution": version("vllm"),
                "torch": torch.__version__,
                "torch_cuda": torch.version.cuda,
                "cuda_available": torch.cuda.is_available(),
                "vllm_platform": type(current_platform).__name__,
                "model_classes": classes,
                "plugin_entry_points": plugins,
                "import_s": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
