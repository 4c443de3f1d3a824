"""``darkroom serve``: the HTTP service on the embedded default, ready to call."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from darkroom.cli.options import add_data_options, settings_from
from darkroom.settings import Settings


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("serve", help="start the HTTP service")
    parser.add_argument("--host", help="interface to bind (DARKROOM_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (DARKROOM_PORT, 8000)")
    parser.add_argument("--public-url", help="base URL for download links (DARKROOM_PUBLIC_URL)")
    parser.add_argument("--workers", type=int, help="render workers (DARKROOM_WORKERS, 2)")
    parser.add_argument(
        "--dev-account",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="create the development account (a business account with a million credits) on "
        "an empty database; by default only on the embedded default, SQLite on a loopback "
        "address. Its key is printed only by a server on loopback (DARKROOM_DEV_ACCOUNT)",
    )
    add_engine_options(parser)
    add_data_options(parser)
    parser.set_defaults(run=run)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """How models are rendered: ``serve`` and ``worker`` share these."""
    parser.add_argument(
        "--preview-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="render every model with the offline preview backend (the default); "
        "--no-preview-only uses each model's catalog backend, e.g. diffusers "
        "(DARKROOM_PREVIEW_ONLY)",
    )
    parser.add_argument(
        "--weights",
        action="append",
        metavar="MODEL=SOURCE",
        help="load MODEL's weights from a local directory or hub id (repeatable)",
    )
    parser.add_argument("--device", help="diffusers device: auto, cuda, cuda:N, mps, cpu")
    parser.add_argument("--dtype", help="diffusers dtype: auto, bfloat16, float16, float32")


def run(args: argparse.Namespace) -> int:
    # The web stack is imported only by the command that serves.
    import uvicorn

    from darkroom.api.app import app_for
    from darkroom.api.server import config_for, raise_descriptor_limit
    from darkroom.core.bootstrap import ensure_dev_account
    from darkroom.node import build
    from darkroom.observe.logs import configure as configure_logging

    os.umask(0o077)  # what this process writes is the owner's only (storage/permissions.py)
    args.weights = parse_weights(args.weights)
    settings = settings_from(
        args,
        "host",
        "port",
        "public_url",
        "workers",
        "dev_account",
        "preview_only",
        "weights",
        "device",
        "dtype",
    )
    configure_logging(settings)
    services, node = build(settings)
    key = None
    if wants_dev_account(settings):
        key = ensure_dev_account(
            services.db, services.catalog, settings.dev_key_file, settings.dev_account_credits
        )
    print(banner(settings, key, services.files.store.location), flush=True)
    raise_descriptor_limit(settings.http_max_connections)
    server = uvicorn.Server(
        config_for(
            app_for(services, node),
            settings,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            access_log=False,  # darkroom logs each request itself (observe/middleware.py)
            log_config=None,  # uvicorn's lines go through darkroom's logging set-up (JSON too)
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3  # 3: uvicorn's code for a server that could not start


def parse_weights(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    parsed = {}
    for pair in pairs:
        model, sep, source = pair.partition("=")
        if not sep or not model or not source:
            raise ValueError(f"--weights wants MODEL=DIR_OR_HUB_ID, not {pair!r}")
        parsed[model] = source
    return parsed


def wants_dev_account(settings: Settings) -> bool:
    """Whether ``serve`` makes the development account: when asked, else on the embedded
    default only (SQLite, on loopback), where nobody else can reach it. On a shared database or
    a server others can reach, a key with a million credits would be anyone's."""
    if settings.dev_account is not None:
        return settings.dev_account
    return settings.is_sqlite and settings.loopback_only


def command_path() -> str:
    """How to run ``darkroom`` from here: the script beside this Python (the venv's bin)."""
    script = Path(sys.executable).parent / "darkroom"
    if not script.exists():
        return "darkroom"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def banner(settings: Settings, key: str | None, storage: str) -> str:
    """What ``serve`` prints when it starts. The development ``key`` only on loopback: the
    output of a server that others can reach goes to logs that others may read."""
    url = settings.base_url
    shown_key = key or "<your key: darkroom accounts create --name NAME --tier pro --credits 1000>"
    where = f"(saved in {settings.dev_key_file})" if key else ""
    if key and not settings.loopback_only:
        shown_key = f"<the key in {settings.dev_key_file.resolve()}>"
        where = "(not printed: this server listens beyond loopback)"
        key = None
    engines = "on their catalog backends (see darkroom catalog)"
    if settings.preview_only:
        engines = "all on the offline preview backend (--no-preview-only: real models)"
    database = "SQLite" if settings.is_sqlite else "PostgreSQL, shared"
    role = "API only: darkroom worker renders" if not settings.workers else "API and workers"
    store = f"{database}; images in {storage}; {role}"
    token = "from DARKROOM_ADMIN_TOKEN"
    if settings.admin_token_file is not None:
        token = f"from {settings.admin_token_file}"
    elif not settings.admin_token:
        token = f"in {settings.generated_admin_token_file.resolve()}"
    return f"""
darkroom is serving the Magic Hour v1 image API and the OpenAI images API
  base URL  {url}
  open      {url}/{"#key=" + key if key else ""}   (the playground: make images in your browser)
  API key   {shown_key} {where}
  data      {settings.data_dir.resolve()} ({store})
  models    {engines}
  admin     {url}/admin/v1 (operator token {token})

Try it with curl:
  curl -s {url}/v1/ai-image-generator \\
    -H 'Authorization: Bearer {shown_key}' -H 'Content-Type: application/json' \\
    -d '{{"image_count": 1, "aspect_ratio": "16:9", "style": {{"prompt": "a lighthouse at dusk"}}}}'
  curl -s {url}/v1/image-projects/<id> -H 'Authorization: Bearer {shown_key}'

or with darkroom's command line (in another shell, from this directory):
  DARKROOM_API_KEY={shown_key} DARKROOM_BASE_URL={url} \\
    .venv/bin/darkroom generate "a lighthouse at dusk" --aspect-ratio 16:9 -o outputs/

or with darkroom's SDK, or the magic_hour SDK (pip install magic_hour) by changing the import:
  from darkroom import Client    # or: from magic_hour import Client
  client = Client(token="{shown_key}", base_url="{url}")
  result = client.v1.ai_image_generator.generate(
      image_count=1, aspect_ratio="16:9", style={{"prompt": "a lighthouse at dusk"}},
      download_directory=".")
  print(result.status, result.downloaded_paths)

or with the openai SDK (pip install openai):
  from openai import OpenAI
  client = OpenAI(api_key="{shown_key}", base_url="{url}/v1")
  image = client.images.generate(prompt="a lighthouse at dusk", size="1024x1024")
  print(image.data[0].url)

Models and prices: {url}/v1/models    API docs: {url}/docs    Stop: Ctrl-C
"""
