"""The commands that call a darkroom server through the SDK: ``generate``,
``projects get|cancel|delete``, ``models`` and ``balance`` (and ``webhooks``, in cli/hooks.py).
Key and URL come from ``--api-key`` / ``--base-url`` or the SDK's environment variables
(``DARKROOM_API_KEY``, ``DARKROOM_BASE_URL``).

Each failure class has its own exit status and a one-line reason on stderr (see ``EXIT_CODES``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from pydantic import BaseModel

from darkroom import sdk
from darkroom.cli.progress import ProgressLine

# Exit statuses, by failure class; also printed by ``darkroom --help``.
EXIT_CODES: list[tuple[int, str, tuple[type[Exception], ...]]] = [
    (3, "no API key, or the server refused it (401)", (sdk.AuthenticationError,)),
    (4, "server unreachable or not answering", (sdk.APIConnectionError,)),
    (5, "not enough credits (402); nothing was charged", (sdk.InsufficientCreditsError,)),
    (6, "model or resolution not available on your tier (403)", (sdk.ForbiddenTierError,)),
    (7, "not found (404): no such project, model or webhook", (sdk.NotFoundError,)),
    (8, "the job ended in error or was canceled (refunded)", (sdk.JobFailedError,)),
    (9, "--timeout passed before the project was done", (sdk.GenerateTimeoutError,)),
    (10, "bad request (400, 409, 422)", (sdk.BadRequestError,)),
    (11, "rate limited (429), still after retries", (sdk.RateLimitError,)),
    (12, "server error (5xx), still after retries", (sdk.ServerError,)),
    (13, "a download failed or did not verify", (sdk.DownloadError,)),
    (14, "the webhook endpoint did not accept the test event", ()),
]
OTHER_FAILURE = 1


def exit_code(kind: type[Exception]) -> int:
    for code, _, kinds in EXIT_CODES:
        if issubclass(kind, kinds):
            return code
    return OTHER_FAILURE


def exit_codes_help() -> str:
    lines = ["exit status: 0 success, 2 usage error, 1 any other failure,"]
    lines += [f"  {code:>2}  {text}" for code, text, _ in EXIT_CODES]
    return "\n".join(lines)


def add_parsers(commands: Any) -> None:
    gen = commands.add_parser(
        "generate",
        help="create images, wait for them and download them",
        description="Create an image project, show its progress, download the images.",
    )
    gen.add_argument("prompt")
    gen.add_argument("--model", help="flux-schnell, z-image-turbo, ... (the server's default)")
    gen.add_argument("--aspect-ratio", help="1:1 (default), 16:9 or 9:16")
    gen.add_argument("--resolution", help="640px, 1k, 2k, 4k or auto")
    gen.add_argument("--count", type=int, default=1, help="number of images (default 1)")
    gen.add_argument("--tool", help="style tool, e.g. ai-art-generator (default general)")
    gen.add_argument("--name", help="a name for the project")
    gen.add_argument("--seed", type=int, help="seed for reproducible images")
    gen.add_argument(
        "-o", "--output-dir", default=".", help="where to save the images (created if missing)"
    )
    gen.add_argument("--timeout", type=float, help="give up after this many seconds")
    gen.add_argument(
        "--cancel-on-timeout",
        action="store_true",
        help="when --timeout passes, cancel the project (refunded) instead of leaving it running",
    )
    gen.add_argument("--no-download", action="store_true", help="wait, but do not download")
    client_options(gen, generate)

    projects = commands.add_parser("projects", help="list, look at or delete image projects")
    actions = projects.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="your projects, newest first")
    listing.add_argument("--limit", type=int, default=20, help="projects per page (1 to 100)")
    listing.add_argument("--before", help="the page after this project (next_before)")
    listing.add_argument("--status", help="only projects in this status")
    client_options(listing, projects_list)
    get = actions.add_parser("get", help="a project's status and download links")
    get.add_argument("id")
    get.add_argument("--wait", type=float, help="wait up to this many seconds for it to end")
    client_options(get, projects_get)
    cancel = actions.add_parser("cancel", help="stop a queued or rendering project (refunded)")
    cancel.add_argument("id")
    client_options(cancel, projects_cancel)
    delete = actions.add_parser("delete", help="delete a project and its images")
    delete.add_argument("id")
    client_options(delete, projects_delete)

    models = commands.add_parser("models", help="the models your key may use, with prices")
    client_options(models, models_list)
    balance = commands.add_parser("balance", help="your credits and tier")
    client_options(balance, show_balance)
    usage = commands.add_parser("usage", help="credits and images per model over a time range")
    usage.add_argument("--from", dest="from_", help="ISO 8601 date or time (30 days ago)")
    usage.add_argument("--to", help="ISO 8601 date or time, exclusive (now)")
    usage.add_argument("--entries", type=int, default=10, help="ledger entries to list")
    client_options(usage, show_usage)


def client_options(parser: argparse.ArgumentParser, run: Any) -> None:
    parser.add_argument("--api-key", help="API key (DARKROOM_API_KEY)")
    parser.add_argument("--base-url", help="server URL (DARKROOM_BASE_URL, http://127.0.0.1:8000)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    parser.set_defaults(run=lambda args: _call(run, args))


def _call(run: Any, args: argparse.Namespace) -> int:
    """Run a command with a client; a failure becomes its exit status and a one-line reason."""
    token = args.api_key or os.environ.get("DARKROOM_API_KEY")
    if not token:
        print("darkroom: no API key: pass --api-key or set DARKROOM_API_KEY", file=sys.stderr)
        return exit_code(sdk.AuthenticationError)
    try:
        with sdk.Client(token=token, base_url=args.base_url) as client:
            result: int = run(client, args)
            return result
    except (sdk.DarkroomError, OSError) as exc:
        print(f"darkroom: {_reason(exc)}", file=sys.stderr)
        return exit_code(type(exc))


def _reason(error: Exception) -> str:
    if isinstance(error, sdk.APIConnectionError):
        return f"server unreachable: {error}"
    text = str(error) if not isinstance(error, sdk.DarkroomError) else error.message
    if isinstance(error, sdk.APIStatusError):
        text = f"{error.status_code} {text}"
    return " ".join(text.split())  # one line


def show(args: argparse.Namespace, value: BaseModel | dict[str, Any], lines: list[str]) -> None:
    if args.json:
        data = (
            value.model_dump(mode="json", by_alias=True) if isinstance(value, BaseModel) else value
        )
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


def generate(client: sdk.Client, args: argparse.Namespace) -> int:
    style = {"prompt": args.prompt} | ({"tool": args.tool} if args.tool else {})
    display = ProgressLine(sys.stderr, enabled=not args.quiet)
    try:
        project = client.v1.ai_image_generator.generate(
            image_count=args.count,
            style=style,
            model=args.model,
            aspect_ratio=args.aspect_ratio,
            resolution=args.resolution,
            name=args.name,
            seed=args.seed,
            download_outputs=not args.no_download,
            download_directory=args.output_dir,
            timeout=args.timeout,
            cancel_on_timeout=args.cancel_on_timeout,
            on_progress=display.update,
        )
    finally:
        display.close()
    lines = [f"{project.id}  {project.status}  {project.credits_charged} credits"]
    lines += project.downloaded_paths or [d.url for d in project.downloads]
    show(args, project, lines)
    project.raise_for_status()
    return 0


def _project_lines(project: sdk.ImageProject) -> list[str]:
    lines = [
        f"id        {project.id}",
        f"status    {project.status}",
        f"model     {project.model}  {project.width}x{project.height}  x{project.image_count}",
        f"credits   {project.credits_charged}",
    ]
    if project.error is not None:
        lines.append(f"error     {project.error.code}: {project.error.message}")
    lines += [f"download  {d.url}" for d in project.downloads]
    return lines


def projects_list(client: sdk.Client, args: argparse.Namespace) -> int:
    page = client.v1.image_projects.list(limit=args.limit, before=args.before, status=args.status)
    lines = [
        f"{p.id}  {p.status:<9} {p.credits_charged:>6} credits  {p.created_at:%Y-%m-%d %H:%M}  "
        f"{p.model or ''}  {len(p.downloads)} images"
        for p in page.data
    ]
    if page.has_more:
        lines.append(f"more: --before {page.next_before}")
    show(args, page, lines or ["no projects"])
    return 0


def projects_get(client: sdk.Client, args: argparse.Namespace) -> int:
    project = client.v1.image_projects.get(id=args.id, wait=args.wait)
    show(args, project, _project_lines(project))
    return 0


def projects_cancel(client: sdk.Client, args: argparse.Namespace) -> int:
    project = client.v1.image_projects.cancel(id=args.id)
    show(args, project, _project_lines(project))
    return 0


def projects_delete(client: sdk.Client, args: argparse.Namespace) -> int:
    client.v1.image_projects.delete(id=args.id)
    show(args, {"id": args.id, "deleted": True}, [f"deleted {args.id}"])
    return 0


def models_list(client: sdk.Client, args: argparse.Namespace) -> int:
    models = client.v1.models.list()
    lines = [f"default → {models.default_model}"]
    for model in models.data:
        if model.alias_for:
            lines.append(f"{model.id:<20} OpenAI name for {model.alias_for}")
            continue
        usable = model.resolutions_for_tier or model.resolutions
        prices = ", ".join(f"{r} {model.credits_per_image[r]}" for r in usable)
        counts = ",".join(map(str, model.image_counts))
        runs_on = model.backend or "?"
        if model.weights is not None:
            state = "loadable" if model.weights.get("loadable") else "not loadable"
            runs_on += f" ({model.weights.get('source')}, {state})"
        most = model.max_input_images or 1
        inputs = f"{most} {'image' if most == 1 else 'images'}"
        does = "generates" if model.generates is not False else "edits only"
        if model.edits and model.generates is not False:
            does += f", edits up to {inputs}"
        elif model.edits:
            does += f" (up to {inputs})"
        lines.append(f"{model.id:<20} credits/image: {prices}; images: {counts}; {does}; {runs_on}")
    show(args, models, lines)
    return 0


def show_balance(client: sdk.Client, args: argparse.Namespace) -> int:
    account = client.v1.account.list()
    show(args, account, [f"{account.credits} credits ({account.tier} tier)"])
    return 0


def show_usage(client: sdk.Client, args: argparse.Namespace) -> int:
    usage = client.v1.account.usage(from_=args.from_, to=args.to, limit=max(1, args.entries))
    totals = usage.totals
    lines = [
        f"{usage.from_:%Y-%m-%d %H:%M} → {usage.to:%Y-%m-%d %H:%M} UTC",
        f"charged {totals.get('credits_charged', 0)}, refunded "
        f"{totals.get('credits_refunded', 0)}, net {totals.get('net', 0)} credits; "
        f"{totals.get('images', 0)} images in {totals.get('projects', 0)} projects",
    ]
    for model, item in usage.models.items():
        lines.append(
            f"  {model:<16} {item.images:>5} images  {item.credits_charged:>8} charged"
            f"  {item.credits_refunded:>8} refunded  {item.net:>8} net"
        )
    for e in usage.entries[: args.entries]:
        what = e.project_id or e.note or ""
        lines.append(f"  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.kind:<6} {e.amount:>+8}  {what}")
    show(args, usage, lines)
    return 0
