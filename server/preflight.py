"""Configuration mistakes found before the engine starts, each answered in one line that says what to change.

Loading vLLM and the engine takes tens of seconds; a missing model folder, a port in use or a flag this server
does not honour should not cost that wait, nor end in a traceback.
"""

from __future__ import annotations

import errno
import socket
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path

NEED_MODEL = "no model given: pass --model CHECKPOINT_OR_HF_ID (a Spatial-MLLM checkpoint), or --demo for the tiny one"
DEMO_AND_MODEL = "--demo serves the built-in tiny model and takes no --model: drop one of the two"


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
    if environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(model, "config.json"), str):
            raise ConfigError(f"--model {model}: not in the local Hugging Face cache, and HF_HUB_OFFLINE is set")


def check_port(host: str | None, port: int) -> None:
    """The port must be a port number that this host lets us listen on now."""
    if not 0 <= port <= 65535:
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
    if options.model:
        check_model(options.model, environ)
    elif not options.demo and not positional_model:
        raise ConfigError(NEED_MODEL)
    check_port(options.host, options.port)


def check_engine_options(args: Namespace, environ: Mapping[str, str]) -> None:
    """Checks on vLLM's parsed options: flags this server cannot honour are refused, not ignored."""
    if args.demo and args.model:
        raise ConfigError(DEMO_AND_MODEL)
    if not args.demo and not args.model:
        raise ConfigError(NEED_MODEL)
    if args.model and not args.demo:
        check_model(args.model, environ)
    if environ.get("VLLM_API_KEY"):
        raise ConfigError("VLLM_API_KEY is set: give keys with --api-key or SPATIAL_MLLM_API_KEY (comma-separated)")
    if args.headless:
        raise ConfigError("--headless starts no API server: run engines with `vllm serve --headless`, not this")
    if args.api_server_count not in (None, 1):
        raise ConfigError("--api-server-count: this server runs one API server process; drop the option")
    check_gpu_layout(args)


def check_gpu_layout(args: Namespace) -> None:
    """The geometry worker's device exists, and the engines (data parallel x tensor parallel) find their GPUs."""
    from server.gpu_layout import check_gpus_suffice, geometry_device, visible_gpu_count

    gpus = visible_gpu_count()
    try:
        geometry_device(getattr(args, "space_aware_device", "auto"), gpus)
        check_gpus_suffice(args, gpus)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
