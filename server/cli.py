"""``spatial-mllm-serve``: vLLM's serve options plus ours, every one also settable from the environment.

The parser is vLLM's own (``make_arg_parser``), so every engine option (``--tensor-parallel-size``, ``--dtype``,
``--max-model-len``, ``--gpu-memory-utilization``...) passes straight through; our options are added from the
fields of :class:`server.settings.ServerSettings`. Any option ``--foo-bar`` may instead come from the
environment variable ``SPATIAL_MLLM_FOO_BAR`` (command line wins); list options take commas.
``--api-key`` is vLLM's flag, but keys are checked by our middleware so a 401 has OpenAI's error shape.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from server.settings import ServerSettings

ENV_PREFIX = "SPATIAL_MLLM_"
OUR_GROUP = "spatial-mllm-serve"
TRUE_WORDS = {"1", "true", "yes", "on"}


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per ServerSettings field (except api_keys, which reuses vLLM's ``--api-key``)."""
    group = parser.add_argument_group(OUR_GROUP, "video handling, caps, uploads and admission control")
    hints = typing.get_type_hints(ServerSettings)
    for item in dataclasses.fields(ServerSettings):
        if item.name == "api_keys":
            continue
        flag = "--" + item.name.replace("_", "-")
        default = item.default if item.default is not dataclasses.MISSING else item.default_factory()  # type: ignore[misc]
        hint = hints[item.name]
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(hint) is typing.Literal:
            group.add_argument(flag, choices=typing.get_args(hint), default=default)
        else:
            kind = (
                int
                if hint is int
                else float
                if hint is float
                else Path
                if default is None or isinstance(default, Path)
                else str
            )
            group.add_argument(flag, type=kind, default=default, help=f"default: {default}")
    group.add_argument(
        "--demo", action="store_true", help="build the tiny random-weight checkpoint and serve it on CPU"
    )


def _apply_environment(parser: argparse.ArgumentParser, environ: typing.Mapping[str, str]) -> None:
    """Turn ``SPATIAL_MLLM_<DEST>`` variables into option defaults (argparse converts them with the option's type)."""
    for action in parser._actions:
        if not action.option_strings and action.dest != "model_tag":
            continue
        value = environ.get(ENV_PREFIX + action.dest.upper())
        if value is None:
            continue
        if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
            parser.set_defaults(**{action.dest: value.strip().lower() in TRUE_WORDS})
        elif action.nargs in ("+", "*") or isinstance(action.default, list):
            convert = action.type if callable(action.type) else str
            parser.set_defaults(**{action.dest: [convert(part) for part in value.split(",") if part]})
        else:
            parser.set_defaults(**{action.dest: action.type(value) if callable(action.type) else value})


def build_parser(environ: typing.Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """vLLM's serve parser with our options added and environment defaults applied."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="spatial-mllm-serve", description=__doc__))
    _add_settings_options(parser)
    # OpenAI's usage reports cached prompt tokens; users re-asking about one video should see the cache work.
    # CORS is off unless the operator names origins. vLLM's processor cache is off: its API-side mirror of the
    # engine's cache drifts when a request fails between preprocessing and the engine (e.g. bad sampling
    # parameters), and the next request with the same video then fails with a 500 (seen in vLLM 0.32). Our
    # sampling cache already skips decoding, and vLLM's encoder and prefix caches still hit.
    parser.set_defaults(enable_prompt_tokens_details=True, allowed_origins=[], mm_processor_cache_gb=0)
    _apply_environment(parser, os.environ if environ is None else environ)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Our settings from parsed options; API keys move out of vLLM's hands into ours."""
    values = {
        item.name: getattr(args, item.name) for item in dataclasses.fields(ServerSettings) if item.name != "api_keys"
    }
    keys = tuple(key for key in (args.api_key or []) if key)
    if not keys and os.environ.get("VLLM_API_KEY"):
        keys = (os.environ["VLLM_API_KEY"],)
    os.environ.pop("VLLM_API_KEY", None)  # else vLLM would add its own key check, with another error shape
    args.api_key = None  # our middleware checks keys, with OpenAI-shaped 401s
    return ServerSettings(api_keys=keys, **values)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, ServerSettings]:
    """Parse the command line into vLLM's namespace and our settings."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model_tag is not None:
        args.model = args.model_tag
    args.sample_video = None
    if args.demo:
        from server.demo import apply_demo

        args.sample_video = apply_demo(args, parser)
    settings = settings_from_args(args)
    return args, settings


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    import uvloop
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.logger import configure_logging_from_args

    from server.launcher import run_server

    cli_env_setup()
    args, settings = parse_args(argv)
    configure_logging_from_args(args)
    access = logging.getLogger("spatial_mllm_serve")
    if not access.handlers:  # one JSON line per request on stdout, beside vLLM's own log
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    validate_parsed_serve_args(args)
    uvloop.run(run_server(args, settings))
