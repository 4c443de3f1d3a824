"""``darkroom webhooks``: an account's webhook endpoints and their deliveries, through the SDK."""

from __future__ import annotations

import argparse
from typing import Any

from darkroom import sdk
from darkroom.cli.remote import client_options, show
from darkroom.sdk.types import WEBHOOK_EVENTS

NOT_ACCEPTED = 14  # the exit status of a test event the endpoint did not accept (EXIT_CODES)


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
    for action, what in (
        ("disable", "send an endpoint nothing (pending deliveries wait, new events are missed)"),
        ("enable", "send to a disabled endpoint again (what waited goes out)"),
    ):
        switch = actions.add_parser(action, help=what)
        switch.add_argument("id")
        client_options(switch, webhooks_switch)
    test = actions.add_parser("test", help="send an endpoint a signed webhook.test event")
    test.add_argument("id")
    test.add_argument(
        "--wait", type=float, help="seconds to wait for the attempt (default 10, at most 30)"
    )
    client_options(test, webhooks_test)
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
    lines = [f"{h.id}  {h.status:<8}  {h.url}  {', '.join(h.events)}" for h in hooks.data]
    show(args, hooks, lines or ["no webhooks"])
    return 0


def webhooks_switch(client: sdk.Client, args: argparse.Namespace) -> int:
    hook = client.v1.webhooks.update(id=args.id, disabled=args.action == "disable")
    show(args, hook, [f"{hook.id}  {hook.status}  {hook.url}"])
    return 0


def webhooks_test(client: sdk.Client, args: argparse.Namespace) -> int:
    """Exit 0 once the endpoint accepted the test event, 14 if it refused it, did not answer
    or was not tried in time (the delivery's last error says why)."""
    delivery = client.v1.webhooks.test(id=args.id, wait=args.wait)
    if delivery.status == "delivered":
        outcome = f"delivered: HTTP {delivery.last_status_code}"
    elif delivery.attempts:
        outcome = f"not accepted: {delivery.last_error}; retried like any delivery"
    else:
        outcome = "queued, not sent yet (see: darkroom webhooks deliveries ID)"
    show(args, delivery, [_delivery_line(delivery), outcome])
    return 0 if delivery.status == "delivered" else NOT_ACCEPTED


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
