"""Operator commands on a data directory: accounts, keys, credits, usage, models. The actions are
:class:`darkroom.core.admin.Admin`'s, as the admin HTTP API runs them; these commands only turn
its answers into lines of text (or print them with ``--json``)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from darkroom.cli.options import add_data_options, settings_from
from darkroom.core.admin import Admin
from darkroom.core.webhook_secrets import Census, SecretBox, reseal, seal
from darkroom.engine.diffusers_backend import weights_status
from darkroom.services import load_catalog, open_database, secret_box
from darkroom.store.database import Database


def add_parsers(commands: Any) -> None:
    acc = commands.add_parser("accounts", help="create, list and show accounts; usage")
    acc_cmds = acc.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = acc_cmds.add_parser("create", help="create an account with one API key")
    create.add_argument("--name", required=True)
    create.add_argument("--tier", default="free", help="free, creator, pro or business")
    create.add_argument("--credits", type=int, default=0, help="opening balance")
    create.add_argument("--email")
    _common(create, accounts_create)
    show = acc_cmds.add_parser("show", help="tier, balance, keys and recent ledger entries")
    show.add_argument("account")
    show.add_argument("--entries", type=int, default=10)
    _common(show, accounts_show)
    _common(acc_cmds.add_parser("list", help="every account with its balance"), accounts_list)
    tier = acc_cmds.add_parser("set-tier", help="move an account to another tier")
    tier.add_argument("account")
    tier.add_argument("tier")
    _common(tier, accounts_set_tier)
    used = acc_cmds.add_parser(
        "usage", help="ledger entries and per-model totals over a time range [from, to)"
    )
    used.add_argument("account")
    used.add_argument(
        "--from",
        dest="start",
        help="ISO 8601 date or datetime, UTC unless zoned (default: 30 days before --to)",
    )
    used.add_argument("--to", dest="end", help="exclusive end (default: now)")
    used.add_argument("--limit", type=int, help="entries listed (default 100, at most 1000)")
    used.add_argument("--before", type=int, help="list entries older than this entry id")
    _common(used, accounts_usage)

    keys = commands.add_parser("keys", help="create and revoke API keys")
    key_cmds = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    key_create = key_cmds.add_parser("create", help="a new API key for an account")
    key_create.add_argument("account")
    _common(key_create, keys_create)
    key_revoke = key_cmds.add_parser("revoke", help="revoke an API key by its id")
    key_revoke.add_argument("key_id")
    _common(key_revoke, keys_revoke)

    cred = commands.add_parser("credits", help="grant credits")
    cred_cmds = cred.add_subparsers(dest="action", required=True, metavar="ACTION")
    grant = cred_cmds.add_parser("grant", help="add credits to an account")
    grant.add_argument("account")
    grant.add_argument("amount", type=int)
    grant.add_argument("--note")
    _common(grant, credits_grant)

    catalog = commands.add_parser(
        "catalog", help="the data directory's catalog: every model, tier and price, and backends"
    )
    catalog.add_argument(
        "--preview-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the catalog as serve runs it with this setting (DARKROOM_PREVIEW_ONLY)",
    )
    _common(catalog, catalog_list)

    keys_of_server = commands.add_parser(
        "secrets", help="the server's secret: re-encrypt stored secrets after rotating it"
    )
    secret_cmds = keys_of_server.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = secret_cmds.add_parser(
        "rotate",
        help="re-encrypt every webhook signing secret under DARKROOM_SECRET_KEY, so that "
        "DARKROOM_PREVIOUS_SECRET_KEYS can be dropped (README: Rotating the server secret)",
    )
    _common(rotate, secrets_rotate)
    seal_cmd = secret_cmds.add_parser(
        "seal",
        help="encrypt the webhook signing secrets an older release stored in clear; on a "
        "cluster, once every node runs this release (README: Upgrading a cluster)",
    )
    _common(seal_cmd, secrets_seal)


def _common(parser: argparse.ArgumentParser, run: Any) -> None:
    add_data_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(run=run)


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> int:
    print(json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines))
    return 0


def _admin(args: argparse.Namespace) -> Admin:
    settings = settings_from(args)
    return Admin(open_database(settings), load_catalog(settings))


def accounts_create(args: argparse.Namespace) -> int:
    data = _admin(args).create_account(
        name=args.name, tier=args.tier, credits=args.credits, email=args.email
    )
    return _emit(
        args,
        data,
        [
            f"account  {data['account_id']}  ({data['name']}, {data['tier']}, "
            f"{data['credits']} credits)",
            f"key id   {data['key_id']}",
            f"API key  {data['api_key']}",
            "The API key is shown only once: store it now.",
        ],
    )


def _ledger_line(entry: dict[str, Any]) -> str:
    return (
        f"  {entry['created_at'][:19]}  {entry['kind']:<6} {entry['amount']:>+8}  → "
        f"{entry['balance_after']}  {entry['project_id'] or entry['note'] or ''}"
    )


def accounts_show(args: argparse.Namespace) -> int:
    data = _admin(args).show_account(args.account, args.entries)
    lines = [
        f"account  {data['id']}  {data['name']}",
        f"tier     {data['tier']}",
        f"balance  {data['balance']} credits",
        "keys:",
        *(
            f"  {k['id']}  {k['prefix']}…  {'revoked' if k['revoked_at'] else 'active'}"
            for k in data["keys"]
        ),
        "recent ledger entries:",
        *(_ledger_line(e) for e in data["ledger"]),
    ]
    return _emit(args, data, lines)


def accounts_list(args: argparse.Namespace) -> int:
    data = _admin(args).list_accounts()
    lines = [f"{r['id']}  {r['tier']:<9} {r['balance']:>10}  {r['name']}" for r in data["accounts"]]
    return _emit(args, data, lines or ["no accounts"])


def accounts_set_tier(args: argparse.Namespace) -> int:
    data = _admin(args).set_tier(args.account, args.tier)
    return _emit(args, data, [f"{data['id']} → {data['tier']}"])


def accounts_usage(args: argparse.Namespace) -> int:
    data = _admin(args).usage(
        args.account, start=args.start, end=args.end, limit=args.limit, before=args.before
    )
    totals = data["totals"]
    lines = [
        f"account  {data['account_id']}  from {data['from']} to {data['to']}",
        f"{'model':<16} {'projects':>8} {'images':>8} {'charged':>10} {'refunded':>10} {'net':>10}",
        *(
            f"{name:<16} {m['projects']:>8} {m['images']:>8} {m['credits_charged']:>10} "
            f"{m['credits_refunded']:>10} {m['net']:>10}"
            for name, m in data["models"].items()
        ),
        f"{'total':<16} {totals['projects']:>8} {totals['images']:>8} "
        f"{totals['credits_charged']:>10} {totals['credits_refunded']:>10} {totals['net']:>10}",
        f"granted {totals['credits_granted']}; balance change {totals['balance_change']:+}; "
        f"{totals['entries']} ledger entries",
        "ledger entries:" if data["entries"] else "no ledger entries in this range",
        *(_ledger_line(e) + (f"  {e['model']}" if e["model"] else "") for e in data["entries"]),
    ]
    if data["has_more"]:
        lines.append(f"more: --before {data['next_before']}")
    return _emit(args, data, lines)


def keys_create(args: argparse.Namespace) -> int:
    data = _admin(args).create_key(args.account)
    return _emit(args, data, [f"key id   {data['key_id']}", f"API key  {data['api_key']}"])


def keys_revoke(args: argparse.Namespace) -> int:
    data = _admin(args).revoke_key(args.key_id)
    return _emit(args, data, [f"revoked {data['key_id']}"])


def credits_grant(args: argparse.Namespace) -> int:
    data = _admin(args).grant(args.account, args.amount, args.note)
    return _emit(args, data, [f"granted {data['granted']} credits; balance {data['balance']}"])


def catalog_list(args: argparse.Namespace) -> int:
    catalog = load_catalog(settings_from(args, "preview_only"))
    data: dict[str, Any] = {"default_model": catalog.default_model, "models": {}}
    lines = [f"default → {catalog.default_model}", ""]
    for name, model in catalog.models.items():
        resolutions = catalog.resolution_order(model.resolutions)
        prices = {r: catalog.price(name, r, 1) for r in resolutions}
        data["models"][name] = {
            "title": model.title,
            "tiers": list(model.tiers),
            "image_counts": list(model.image_counts),
            "credits_per_image": prices,
            "backend": model.backend,
            "generates": model.generates,
            "edits": model.edits,
            "max_input_images": model.max_input_images if model.edits else 0,
        }
        price_text = ", ".join(f"{r}: {p}" for r, p in prices.items())
        lines.append(f"{name:<16} {model.title:<20} backend={model.backend}")
        if model.backend == "diffusers" and model.weights is not None:
            status = weights_status(model.weights)
            data["models"][name]["weights"] = {**model.weights.model_dump(), **status}
            state = "loadable" if status["loadable"] else "NOT loadable"
            lines.append(f"{'':<16} weights: {model.weights.source} ({state}: {status['detail']})")
        if model.upstream is not None and model.backend != "preview":
            upstream = model.upstream
            key_set = bool(os.environ.get(upstream.api_key_env))
            data["models"][name]["upstream"] = {**upstream.model_dump(), "key_set": key_set}
            state = "key set" if key_set else f"{upstream.api_key_env} NOT set"
            lines.append(f"{'':<16} upstream: {upstream.model} at {upstream.base_url} ({state})")
        lines.append(
            f"{'':<16} tiers: {', '.join(model.tiers)}; counts: "
            f"{', '.join(map(str, model.image_counts))}; credits/image: {price_text}"
            + (f"; edits (up to {model.max_input_images} images)" if model.edits else "")
            + ("" if model.generates else "; editor only")
        )
    section = catalog.openai
    data["openai"] = {"default_model": section.default_model, "aliases": {}}
    lines += ["", f"OpenAI API names (default → {section.default_model}):"]
    for name, alias in section.aliases.items():
        data["openai"]["aliases"][name] = alias.model_dump()
        better = "".join(f"; quality {q} → {m}" for q, m in alias.quality.items())
        lines.append(
            f"{name:<16} → {alias.model}; sizes: {', '.join(alias.sizes) or 'any'}; "
            f"n ≤ {alias.max_n}{better}"
        )
    return _emit(args, data, lines)


def _on_secrets(args: argparse.Namespace, work: Callable[[Database, SecretBox], Census]) -> Census:
    """``work`` on the data directory's database with the server's keys."""
    settings = settings_from(args)
    if not settings.is_sqlite and not settings.secret_key:
        # A key made up here would be one that no node has.
        raise ValueError("a shared database needs DARKROOM_SECRET_KEY: the one its nodes use")
    db = open_database(settings)
    try:
        return work(db, secret_box(settings))
    finally:
        db.dispose()


def _unreadable_line(census: Census) -> list[str]:
    if not census.unreadable:
        return []
    return [
        f"{len(census.unreadable)} cannot be decrypted with DARKROOM_SECRET_KEY or "
        f"DARKROOM_PREVIOUS_SECRET_KEYS and were left as they are: "
        f"{', '.join(census.unreadable)}"
    ]


def secrets_rotate(args: argparse.Namespace) -> int:
    census = _on_secrets(args, reseal)
    data = {
        "reencrypted": census.sealed,
        "already_current": census.current,
        "unreadable": census.unreadable,
        "not_darkroom_secrets": census.skipped,
        "in_clear": census.clear,
    }
    lines = [
        f"webhook secrets: {census.sealed} re-encrypted under the current key, "
        f"{census.current} already were",
        *_unreadable_line(census),
    ]
    if census.clear:
        lines.append(
            f"{len(census.clear)} are in clear for older nodes and stay so until "
            "`darkroom secrets seal`"
        )
    _emit(args, data, lines)
    return 1 if census.unreadable else 0


def secrets_seal(args: argparse.Namespace) -> int:
    census = _on_secrets(args, seal)
    data = {
        "encrypted": census.sealed,
        "already_encrypted": census.current,
        "unreadable": census.unreadable,
        "not_darkroom_secrets": census.skipped,
    }
    lines = [
        f"webhook secrets: {census.sealed} encrypted, {census.current} already were; nodes of "
        "releases before their encryption can no longer sign with them",
        *_unreadable_line(census),
    ]
    _emit(args, data, lines)
    return 1 if census.unreadable else 0
