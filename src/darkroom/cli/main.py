"""The ``darkroom`` command: ``serve`` and the operator commands on a data directory."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from darkroom import __version__
from darkroom.cli import hooks, operator, remote, serve, worker
from darkroom.core.errors import DarkroomError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkroom",
        description="darkroom: self-hosted AI image generation.",
        epilog=remote.exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"darkroom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parser(commands)
    worker.add_parser(commands)
    remote.add_parsers(commands)
    hooks.add_parsers(commands)
    operator.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except DarkroomError as exc:
        print(f"darkroom: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # configuration problems (catalog, settings)
        print(f"darkroom: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("darkroom: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
