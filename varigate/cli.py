"""``varigate <command>``: dispatches to the compressor, the gateway and the load tester.

Each command's module is imported only when used, so ``varigate serve`` never imports torch.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "compress": ("compressor.cli", "main", "build compressed variants into a model repository"),
    "serve": ("gateway.cli", "serve_main", "serve a model repository over KServe v2 HTTP and gRPC"),
    "loadtest": ("loadtest.cli", "main", "drive a server with open- or closed-loop load"),
    "triton-repo": ("varigate.triton_repo", "main", "write a repository's Triton Python-backend form"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        lines = [f"  {name:<13}{help_}" for name, (_, _, help_) in COMMANDS.items()]
        print("usage: varigate <command> [options]\n\ncommands:\n" + "\n".join(lines))
        return 0 if args and args[0] in ("-h", "--help") else 2
    module, attr, _ = COMMANDS[args[0]]
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        print(f"varigate {args[0]}: not available in this installation ({e})", file=sys.stderr)
        return 2
    return int(fn(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
