"""``darkroom webhooks``: an account's webhook endpoints and their deliveries, through the SDK."""

from __future__ import annotations

import argparse
from typing import Any

from darkroom import sdk
from darkroom.cli.remote import client_options, show
from darkroom.sdk.types import WEBHOOK_EVENTS


def add_parsers(commands: Any) -> None:
    hooks = commands.add_parser("webhooks", help="get project events POSTed to your URL")
    actions = hooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="register a URL; prints its signing secret once")
    create.add_argument("url")
    create.add_argument(
        "--event",
        action="append",
        choices=WEBHOOK_EVENTS,
        dest="events",
        help="an event to receive (repeatable; default: all)",
    )
    client_options(create, webhooks_create)
    client_options(actions.add_parser("list", help="your webhook endpoints"), webhooks_list)
    delete = actions.add_parser("delete", help="delete an endpoint (pending deliveries stop)")
    delete.add_argument("id")
    client_options(delete, webhooks_delete)
    deliveries = actions.add_parser("deliveries", help="an endpoint's deliveries and attempts")
    deliveries.add_argument("id")
    deliveries.add_argument("--limit", type=int, default=20)
    deliveries.add_argument("--status", choices=("pending", "delivered", "failed", "canceled"))
    client_options(deliveries, webhooks_deliveries)
    resend = actions.add_parser("resend", help="send a delivery again now")
    resend.add_argument("id")
    resend.add_argument("delivery_id")
    client_options(resend, webhooks_resend)


def webhooks_create(client: sdk.Client, args: argparse.Namespace) -> int:
    hook = client.v1.webhooks.create(url=args.url, events=args.events)
    lines = [
        f"webhook  {hook.id}  {hook.url}",
        f"events   {', '.join(hook.events)}",
        f"secret   {hook.secret}",
        "The secret is shown only once: store it now (verify deliveries with it).",
    ]
    show(args, hook, lines)
    return 0


def webhooks_list(client: sdk.Client, args: argparse.Namespace) -> int:
    hooks = client.v1.webhooks.list()
    lines = [f"{h.id}  {h.url}  {', '.join(h.events)}" for h in hooks.data]
    show(args, hooks, lines or ["no webhooks"])
    return 0


def webhooks_delete(client: sdk.Client, args: argparse.Namespace) -> int:
    client.v1.webhooks.delete(id=args.id)
    show(args, {"id": args.id, "deleted": True}, [f"deleted {args.id}"])
    return 0


def _delivery_line(d: sdk.WebhookDelivery) -> str:
    last = d.last_error or (str(d.last_status_code) if d.last_status_code else "")
    return (
        f"{d.id}  {d.event:<16} {d.status:<9} attempts {d.attempts}"
        f"{'  last: ' + last if last else ''}  {d.project_id or ''}"
    )


def webhooks_deliveries(client: sdk.Client, args: argparse.Namespace) -> int:
    found = client.v1.webhooks.deliveries(id=args.id, limit=args.limit, status=args.status)
    show(args, found, [_delivery_line(d) for d in found.data] or ["no deliveries"])
    return 0


def webhooks_resend(client: sdk.Client, args: argparse.Namespace) -> int:
    delivery = client.v1.webhooks.resend(id=args.id, delivery_id=args.delivery_id)
    show(args, delivery, [_delivery_line(delivery)])
    return 0
