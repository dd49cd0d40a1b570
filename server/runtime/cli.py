"""``spatial-mllm-serve``: our options (from :class:`server.runtime.settings.ServerSettings`) plus vLLM's serve options.

Start-up happens in two steps so mistakes are answered at once: a small parser that needs no vLLM import reads
our options and the few engine options worth checking early (``--model``, ``--host``, ``--port``) and
:mod:`server.runtime.preflight` refuses what cannot work; only then is vLLM imported (about 20 s) and the command line
parsed by vLLM's own parser (``make_arg_parser``) with our options added, so every engine option passes through.

Any option ``--foo-bar`` may instead come from the environment variable ``SPATIAL_MLLM_FOO_BAR`` (the command
line wins); options taking several values take commas. ``--api-key`` is vLLM's flag, but keys are checked by our
middleware so a 401 has OpenAI's error shape.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import ValidationError

from server.runtime.preflight import ConfigError, check_engine_options, check_front
from server.runtime.settings import ServerSettings, option_name

PROG = "spatial-mllm-serve"
ENV_PREFIX = "SPATIAL_MLLM_"
# SPATIAL_MLLM_* variables the project uses for other things than options
NOT_OPTIONS = {"SPATIAL_MLLM_CACHE", "SPATIAL_MLLM_FIXTURES"}
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}
OUR_GROUP = PROG
EPILOG = f"""\
Every option --foo-bar can also be set as {ENV_PREFIX}FOO_BAR (the command line wins; commas separate values).
Engine options (--dtype, --max-model-len, --tensor-parallel-size, --gpu-memory-utilization...) are vLLM's:
  {PROG} --help=all            all of them
  {PROG} --help=<word>         those whose name contains <word>, or one option group
(both load vLLM first, about 20 s)."""
USAGE = f"{PROG} (--model CHECKPOINT_OR_HF_ID | --demo) [options]"


def _option_kwargs(name: str, info: typing.Any) -> dict[str, typing.Any]:
    """argparse arguments for one settings field: its type, choices and one line of help."""
    hint = info.annotation
    default = info.get_default(call_default_factory=True)
    shown = "" if default is None or hint is bool else " (default: %(default)s)"
    description = info.description or name.replace("_", " ")
    kwargs: dict[str, typing.Any] = {"default": default, "help": description + shown}
    args = typing.get_args(hint)
    if hint is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(hint) is typing.Literal:
        kwargs["choices"] = args
    elif isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kwargs["type"] = next(arg for arg in args if arg is not type(None))
    else:
        kwargs["type"] = hint
    if kwargs.get("type") is Path:
        kwargs["metavar"] = "PATH"
    elif "type" in kwargs:
        kwargs["metavar"] = kwargs["type"].__name__.upper()
    return kwargs


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per ServerSettings field (except api_keys, which comes from vLLM's ``--api-key``), and ``--demo``."""
    group = parser.add_argument_group(OUR_GROUP, "video handling, caps, uploads and admission control")
    group.add_argument("--demo", action="store_true", help="serve the built-in tiny random-weight model, on CPU")
    for name, info in ServerSettings.model_fields.items():
        if name != "api_keys":
            group.add_argument(option_name(name), **_option_kwargs(name, info))


def _variable(flag: str) -> str:
    return ENV_PREFIX + flag[2:].upper().replace("-", "_")


def _env_words(parser: argparse.ArgumentParser, flag: str, value: str) -> list[str]:
    """The command-line words that say what ``value`` says for ``flag`` (none when there is no such option).

    Only public argparse calls: parsing the bare flag tells whether it is a switch or takes values.
    """
    try:
        rest = parser.parse_known_args([flag])[1]
    except argparse.ArgumentError:  # the option needs a value
        return [f"{flag}={value}"]
    if flag in rest:
        return []
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return [flag]
    if word in FALSE_WORDS:
        negative = "--no-" + flag[2:]
        return [negative] if negative not in parser.parse_known_args([negative])[1] else []
    raise ConfigError(f"{_variable(flag)}={value!r}: say true or false")


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """``SPATIAL_MLLM_<OPTION>`` variables become option defaults, so the command line still wins."""
    baseline = vars(parser.parse_known_args([])[0])
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in NOT_OPTIONS:
            continue
        value = environ[variable]
        flag = "--" + variable.removeprefix(ENV_PREFIX).lower().replace("_", "-")
        try:
            parsed = vars(parser.parse_known_args(_env_words(parser, flag, value))[0])
            changed = {dest: new for dest, new in parsed.items() if new != baseline.get(dest)}
            if any(isinstance(new, list) for new in changed.values()) and "," in value:  # several values
                parsed = vars(parser.parse_known_args([flag, *(part for part in value.split(",") if part)])[0])
                changed = {dest: new for dest, new in parsed.items() if new != baseline.get(dest)}
        except argparse.ArgumentError as exc:
            raise ConfigError(f"{variable}={value!r}: {exc}") from exc
        parser.set_defaults(**changed)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """One line per option where the terminal allows; the epilog keeps its own lines."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=36, width=120)


def add_refused_engine_options(parser: argparse.ArgumentParser) -> None:
    """vLLM's options that :mod:`server.runtime.preflight` refuses, parsed as vLLM parses them but hidden from
    ``--help``
    (they are vLLM's, listed by ``--help=all``)."""
    hidden = argparse.SUPPRESS
    parser.add_argument("--headless", action="store_true", help=hidden)
    parser.add_argument("--api-server-count", "-asc", type=int, default=None, help=hidden)
    for flag in ("--enable-lora", "--enable-mm-embeds", "--mm-encoder-only"):
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=hidden)
    parser.add_argument("--compilation-config", "-cc", default=None, help=hidden)
    parser.add_argument("--ec-transfer-config", default=None, help=hidden)
    parser.add_argument("--speculative-config", "-sc", default=None, help=hidden)
    parser.add_argument("--video-pruning-rate", type=float, default=None, help=hidden)
    parser.add_argument("--pipeline-parallel-size", "-pp", type=int, default=None, help=hidden)


def as_vllm_spells(argv: Sequence[str]) -> list[str]:
    """The command line in the spelling the front parser reads, for the forms vLLM's parser also accepts:
    ``--enable_lora`` (underscores) and ``-cc.key=value`` / ``--compilation-config.key value`` (dotted keys,
    folded into one JSON ``--compilation-config``)."""
    words: list[str] = []
    dotted: dict[str, typing.Any] = {}
    rest = iter(argv)
    for word in rest:
        if word.startswith("--") and not word.startswith("---"):
            name, eq, value = word.partition("=")
            word = name.replace("_", "-") + eq + value
        name, eq, value = word.partition("=")
        option, dot, key = name.partition(".")
        if dot and option in ("-cc", "--compilation-config"):
            raw = value if eq else next(rest, "")
            try:
                dotted[key.replace("-", "_")] = json.loads(raw)
            except ValueError:
                dotted[key.replace("-", "_")] = raw
            continue
        words.append(word)
    if dotted:
        words += ["--compilation-config", json.dumps(dotted)]
    return words


def front_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Our options and the engine options checked before vLLM loads; fast (no vLLM import), also ``--help``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        usage=USAGE,
        description="OpenAI-compatible server for Spatial-MLLM on vLLM.",
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
        add_help=False,
        allow_abbrev=False,
        exit_on_error=False,
    )
    main = parser.add_argument_group("model and address (vLLM options, checked before the engine starts)")
    main.add_argument("--model", default=None, help="checkpoint folder or Hugging Face id of a Spatial-MLLM model")
    main.add_argument("--host", default=None, help="address to listen on (default: all)")
    main.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    main.add_argument("--api-key", nargs="+", default=None, help="accepted API keys (default: none, no key check)")
    add_refused_engine_options(parser)
    add_settings_options(parser)
    apply_environment(parser, os.environ if environ is None else environ)
    return parser


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """vLLM's serve parser with our options added and environment defaults applied."""
    from server.runtime.vllm_seams import FlexibleArgumentParser, make_arg_parser

    parser = make_arg_parser(FlexibleArgumentParser(prog=PROG, usage=USAGE, description=__doc__, exit_on_error=False))
    add_settings_options(parser)
    # OpenAI's usage reports cached prompt tokens; users re-asking about one video should see the cache work.
    # CORS is off unless the operator names origins. vLLM's processor cache is off: its API-side mirror of the
    # engine's cache drifts when a request fails between preprocessing and the engine (e.g. bad sampling
    # parameters), and the next request with the same video then fails with a 500 (seen in vLLM 0.32). Our
    # sampling cache already skips decoding, and vLLM's encoder and prefix caches still hit.
    # No default model: vLLM's (a text-only model) is never what a user of this server wants.
    parser.set_defaults(enable_prompt_tokens_details=True, allowed_origins=[], mm_processor_cache_gb=0, model=None)
    apply_environment(parser, os.environ if environ is None else environ)
    return parser


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Our settings from parsed options; API keys move out of vLLM's hands into ours."""
    values = {name: getattr(args, name) for name in ServerSettings.model_fields if hasattr(args, name)}
    values["api_keys"] = tuple(key for key in (getattr(args, "api_key", None) or []) if key)
    args.api_key = None  # our middleware checks keys, with OpenAI-shaped 401s; vLLM must not add its own check
    try:
        return ServerSettings(**values)
    except ValidationError as exc:
        raise ConfigError(
            "; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors(include_url=False))
        ) from exc


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[argparse.Namespace, ServerSettings]:
    """Parse the command line with vLLM's parser into vLLM's namespace and our settings."""
    parser = build_parser(environ)
    try:
        args = parser.parse_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from exc
    if args.model_tag is not None:
        args.model = args.model_tag
    if args.demo:
        from server.runtime.demo import DEMO_SETTINGS

        vars(args).update(DEMO_SETTINGS)
    settings = settings_from_args(args)
    check_engine_options(args, environ)
    args.sample_video = None
    if args.demo:
        from server.runtime.demo import apply_demo

        args.sample_video = apply_demo(args, parser)
    return args, settings


def early_checks(argv: Sequence[str], environ: Mapping[str, str]) -> None:
    """What can be refused before vLLM is imported: model, address, our caps."""
    try:
        front, rest = front_parser(environ).parse_known_args(as_vllm_spells(argv))
    except argparse.ArgumentError as exc:
        raise ConfigError(str(exc)) from exc
    settings_from_args(front)
    # a word that is no option may be a positional model (vLLM's ``serve MODEL``): leave the model check to later
    positional_model = any(not word.startswith("-") for word in rest)
    check_front(front, positional_model, environ)


def wants_our_help(argv: Sequence[str]) -> bool:
    return any(word in ("-h", "--help") for word in argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: refuse mistakes in one line, else serve until a signal."""
    from server.runtime.lifecycle import exit_on_signals

    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_our_help(argv):
        front_parser().print_help()
        return
    exit_on_signals()  # from here on any SIGINT/SIGTERM ends the whole process tree at once
    try:
        if not any(word.startswith("--help=") for word in argv):
            early_checks(argv, os.environ)
        from server.runtime.launcher import serve

        serve(argv, parse_args)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
