"""``varigate serve``: one flag per ``Settings`` field (``--http-port``, ``--model-control-mode`` ...), each
also settable as ``VARIGATE_<FIELD>``; a flag given on the command line wins over the environment.
Triton's spellings of the same options are accepted too (``--model-repository``, ``--repository-poll-secs``).
"""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from pydantic import ValidationError

from gateway.settings import ENV_PREFIX, Settings

_ALIASES = {"repository": ["--model-repository"]}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="varigate serve",
        description="Serve a Triton-style model repository over KServe v2 HTTP and gRPC, with /metrics.",
        epilog=f"Every option can also be set as an environment variable {ENV_PREFIX}<OPTION> "
        f"(e.g. {ENV_PREFIX}HTTP_PORT=8000); list options take ';'-separated values there.",
        argument_default=argparse.SUPPRESS,
    )
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        default = info.get_default(call_default_factory=True)
        help_text = f"{info.description} (default: {default}; env {ENV_PREFIX}{name.upper()})"
        flags = [_flag(name), *_ALIASES.get(name, [])]
        if annotation is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        elif typing.get_origin(annotation) is list:
            parser.add_argument(
                *flags, dest=name, action="append", metavar="VALUE", help=help_text + "; repeatable"
            )
        else:
            choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None
            parser.add_argument(*flags, dest=name, choices=choices, metavar=name.upper(), help=help_text)
    return parser


def parse_settings(argv: list[str]) -> Settings:
    given: dict[str, Any] = vars(build_parser().parse_args(argv))
    return Settings(**given)


def serve_main(argv: list[str] | None = None) -> int:
    """``varigate serve [options]``; ``argv`` without the program name (a leading ``serve`` is skipped)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        args = args[1:]
    try:
        settings = parse_settings(args)
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            print(f"varigate serve: {_flag(where) if err['loc'] else where}: {err['msg']}", file=sys.stderr)
        return 2
    from gateway.main import run  # heavy imports only once the options are valid

    return run(settings)


if __name__ == "__main__":
    sys.exit(serve_main())
