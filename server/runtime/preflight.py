"""Configuration mistakes found before the engine starts, each answered in one line that says what to change.

Loading vLLM and the engine takes tens of seconds; a missing model folder, a port in use or a flag this server
does not honour should not cost that wait, nor end in a traceback.
"""

from __future__ import annotations

import errno
import json
import socket
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path

from model_plugin.capabilities import ENCODER_CUDA_GRAPHS, refusal_message

NEED_MODEL = "no model given: pass --model CHECKPOINT_OR_HF_ID (a Spatial-MLLM checkpoint), or --demo for the tiny one"
DEMO_AND_MODEL = "--demo serves the built-in tiny model and takes no --model: drop one of the two"
HEADLESS = "--headless starts no API server: run engines with `vllm serve --headless`, not this"
API_SERVER_COUNT = "--api-server-count: this server runs one API server process; drop the option"
HUB_PROBE_TIMEOUT_S = 1.5
DEFAULT_HUB = "https://huggingface.co"
TRUE_WORDS = ("1", "true", "yes", "on")


class ConfigError(ValueError):
    """A configuration the server refuses; its message is the one line the operator sees."""


def check_model(model: str, environ: Mapping[str, str]) -> None:
    """A local checkpoint must be a folder with ``config.json``; a path-like name that does not exist is a typo."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"--model {model}: the folder has no config.json (point it at a checkpoint folder)")
        return
    if path.exists():
        raise ConfigError(f"--model {model} is a file: point it at the checkpoint's folder")
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ConfigError(f"--model {model}: no such folder (give a checkpoint folder or a Hugging Face id org/name)")
    check_hub_model(model, environ)


def check_hub_model(model: str, environ: Mapping[str, str]) -> None:
    """A Hugging Face id must be in the local cache or the hub must answer; without either, vLLM would retry for
    tens of seconds and end in a traceback."""
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(model, "config.json"), str):
        return
    where = f"not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if environ.get("HF_HUB_OFFLINE", "").lower() in TRUE_WORDS:
        raise ConfigError(f"--model {model}: {where} and HF_HUB_OFFLINE is set: download it there first, or unset it")
    endpoint = environ.get("HF_ENDPOINT") or DEFAULT_HUB
    if not hub_answers(endpoint):
        raise ConfigError(
            f"--model {model}: {where} and {endpoint} cannot be reached: download it into the cache where there is "
            f"network (`hf download {model}`) and run with HF_HUB_OFFLINE=1, or give a checkpoint folder"
        )


def hub_answers(endpoint: str) -> bool:
    """Whether the hub answers at all, within a moment (any HTTP status counts; proxies from the environment
    are used, as huggingface_hub uses them)."""
    import httpx

    try:
        httpx.head(endpoint, timeout=HUB_PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return True


def check_port(host: str | None, port: int) -> None:
    """The port must be a port number that this host lets us listen on now."""
    if not 1 <= port <= 65535:  # 0 would bind a random port that the ready line and probes cannot know
        raise ConfigError(f"--port {port} is not a port number: pick one within 1..65535")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not an address of this machine ({exc.strerror})") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server's own socket will
        try:
            probe.bind(address)
        except OSError as exc:
            where = f"{host or 'all addresses'}:{port}"
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{where} is in use by another process: stop it or pick another --port") from exc
            if exc.errno == errno.EACCES:
                raise ConfigError(f"{where} needs privileges: pick a --port above 1023") from exc
            raise ConfigError(f"cannot listen on {where} ({exc.strerror}): change --host or --port") from exc


def check_front(options: Namespace, positional_model: bool, environ: Mapping[str, str]) -> None:
    """Checks on the options read without vLLM: model (unless given as a positional word) and address."""
    if options.demo and options.model:
        raise ConfigError(DEMO_AND_MODEL)
    if not (options.model or options.demo or positional_model):
        raise ConfigError(NEED_MODEL)
    check_environment(environ)
    check_serving_flags(options)
    check_capability_flags(options)
    check_space_aware_device(options.space_aware_device)
    if options.model:
        check_model(options.model, environ)
    check_port(options.host, options.port)


def check_space_aware_device(setting: str) -> None:
    """A geometry-worker device that is no device, or a GPU this machine lacks. Counting GPUs loads vLLM's
    platform module (a few seconds, still a fraction of vLLM's whole import), so only a named CUDA device pays."""
    from server.runtime.gpu_layout import DEVICE_SETTING, geometry_device, visible_gpu_count

    if setting in ("auto", "cpu"):
        return
    try:
        geometry_device(setting, visible_gpu_count() if DEVICE_SETTING.fullmatch(setting) else 0)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def check_environment(environ: Mapping[str, str]) -> None:
    """vLLM's own key variable would add a second key check with other errors than ours."""
    if environ.get("VLLM_API_KEY"):
        raise ConfigError("VLLM_API_KEY is set: give keys with --api-key or SPATIAL_MLLM_API_KEY (comma-separated)")


def check_serving_flags(options: Namespace) -> None:
    """vLLM serve flags that describe another process layout than this server's one API server."""
    if options.headless:
        raise ConfigError(HEADLESS)
    if options.api_server_count not in (None, 1):
        raise ConfigError(API_SERVER_COUNT)


def check_capability_flags(options: Namespace) -> None:
    """The engine options the model refuses (:mod:`model_plugin.capabilities`), read from the command line as
    given: the same refusal the model class makes once vLLM has loaded, tens of seconds earlier."""
    refused = [option for option, on in _capability_flags_on(options).items() if on]
    if refused:
        raise ConfigError(refusal_message(refused))


def _capability_flags_on(options: Namespace) -> dict[str, bool]:
    return {
        ENCODER_CUDA_GRAPHS: _encoder_cuda_graphs(options.compilation_config),
        "--enable-mm-embeds": bool(options.enable_mm_embeds),
        "--ec-transfer-config": _given(options.ec_transfer_config),
        "--mm-encoder-only": bool(options.mm_encoder_only),
        "--video-pruning-rate": bool(options.video_pruning_rate),
        "--enable-lora": bool(options.enable_lora),
        "--speculative-config": _given(options.speculative_config),
        "--pipeline-parallel-size": (options.pipeline_parallel_size or 1) > 1,
    }


def _given(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "none", "null", "{}")


def _encoder_cuda_graphs(compilation_config: str | None) -> bool:
    """``-cc`` as JSON (``-cc.cudagraph_mm_encoder=true`` arrives here folded into JSON); other forms (``-O3``)
    are left to vLLM's parser and the model's own check."""
    if not compilation_config:
        return False
    try:
        config = json.loads(compilation_config)
    except ValueError:
        return False
    value = config.get("cudagraph_mm_encoder") if isinstance(config, dict) else None
    return value is True or str(value).lower() in TRUE_WORDS


def check_engine_options(args: Namespace, environ: Mapping[str, str]) -> None:
    """Checks on vLLM's parsed options: flags this server cannot honour are refused, not ignored."""
    if args.demo and args.model:
        raise ConfigError(DEMO_AND_MODEL)
    if not args.demo and not args.model:
        raise ConfigError(NEED_MODEL)
    if args.model and not args.demo:
        check_model(args.model, environ)
    check_environment(environ)
    check_serving_flags(args)
    check_gpu_layout(args)


def check_gpu_layout(args: Namespace) -> None:
    """The geometry worker's device exists, and the engines (data parallel x tensor parallel) find their GPUs."""
    from server.runtime.gpu_layout import check_gpus_suffice, geometry_device, visible_gpu_count

    gpus = visible_gpu_count()
    try:
        geometry_device(getattr(args, "space_aware_device", "auto"), gpus)
        check_gpus_suffice(args, gpus)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
