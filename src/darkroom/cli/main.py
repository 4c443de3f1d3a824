"""The ``darkroom`` command: the client commands (``generate``, ``projects``, ``models``,
``balance``, ``usage``, ``webhooks``), which need only the SDK; and, with the server installed
(``pip install 'darkroom[server]'``), ``serve``, ``worker`` and the operator commands on a data
directory. Without it, those say in one line what to install."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from darkroom import __version__
from darkroom.cli import hooks, remote
from darkroom.core.errors import DomainError

# The commands that run the service or work on its data: they need the server extra.
SERVER_COMMANDS = (
    "serve",
    "worker",
    "migrate",
    "accounts",
    "keys",
    "credits",
    "catalog",
    "secrets",
)
SERVER_EXTRA = "pip install 'darkroom[server]'"
# What the server extra installs (import names): one of them missing means a client-only install.
SERVER_PACKAGES = frozenset(
    {
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "alembic",
        "pydantic_settings",
        "PIL",
        "multipart",
        "python_multipart",
        "prometheus_client",
        "cryptography",
    }
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darkroom",
        description="darkroom: self-hosted AI image generation.",
        epilog=remote.exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"darkroom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    try:
        from darkroom.cli import migrate, operator, serve, worker
    except ImportError as exc:  # a client-only install
        if (exc.name or "").split(".")[0] not in SERVER_PACKAGES:
            raise  # a real error in the server's code, not a missing extra
        missing = exc.name or "the server's packages"
        for name in SERVER_COMMANDS:
            stub = commands.add_parser(
                name,
                help=f"(needs the server: {SERVER_EXTRA})",
                description=_needs_server_line(name, missing),  # what --help says
            )
            stub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            stub.set_defaults(run=lambda args, m=missing: _needs_server(args.command, m))
    else:
        serve.add_parser(commands)
        worker.add_parser(commands)
        migrate.add_parser(commands)
        operator.add_parsers(commands)
    remote.add_parsers(commands)
    hooks.add_parsers(commands)
    return parser


def _needs_server_line(command: str, missing: str) -> str:
    return (
        f"darkroom {command} needs the server, which is not installed here ({missing} is "
        f"missing): {SERVER_EXTRA}"
    )


def _needs_server(command: str, missing: str) -> int:
    print(_needs_server_line(command, missing), file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.run(args)
    except DomainError as exc:
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
