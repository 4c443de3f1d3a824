"""Operator commands on a data directory: accounts, keys, credits, models."""

from __future__ import annotations

import argparse
import json
from typing import Any

from darkroom.cli.options import add_data_options, settings_from
from darkroom.core import accounts, credits
from darkroom.core.errors import NotFound
from darkroom.engine.diffusers_backend import weights_status
from darkroom.services import load_catalog, open_database
from darkroom.store import accounts as account_sql
from darkroom.store import ledger as ledger_sql
from darkroom.store.database import as_utc


def add_parsers(commands: Any) -> None:
    acc = commands.add_parser("accounts", help="create, list and show accounts")
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


def _common(parser: argparse.ArgumentParser, run: Any) -> None:
    add_data_options(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.set_defaults(run=run)


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> int:
    print(json.dumps(data, indent=2, default=str) if args.json else "\n".join(lines))
    return 0


def accounts_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    catalog = load_catalog(settings)
    db = open_database(settings)
    account_id, key = accounts.create_account(
        db,
        name=args.name,
        tier=args.tier,
        credits_amount=args.credits,
        known_tiers=list(catalog.tiers),
        email=args.email,
    )
    data = {
        "account_id": account_id,
        "name": args.name,
        "tier": args.tier,
        "credits": args.credits,
        "key_id": key.id,
        "api_key": key.key,
    }
    return _emit(
        args,
        data,
        [
            f"account  {account_id}  ({args.name}, {args.tier}, {args.credits} credits)",
            f"key id   {key.id}",
            f"API key  {key.key}",
            "The API key is shown only once: store it now.",
        ],
    )


def accounts_show(args: argparse.Namespace) -> int:
    db = open_database(settings_from(args))
    with db.read() as conn:
        account = account_sql.get_account(conn, args.account)
        if account is None:
            raise NotFound(f"account {args.account!r} not found")
        keys = account_sql.list_keys(conn, args.account)
        entries = ledger_sql.recent(conn, args.account, args.entries)
    data = {
        "id": account.id,
        "name": account.name,
        "email": account.email,
        "tier": account.tier,
        "balance": account.balance,
        "created_at": as_utc(account.created_at).isoformat(),
        "keys": [
            {
                "id": k.id,
                "prefix": k.prefix,
                "created_at": as_utc(k.created_at).isoformat(),
                "revoked_at": k.revoked_at and as_utc(k.revoked_at).isoformat(),
            }
            for k in keys
        ],
        "ledger": [
            {
                "id": e.id,
                "kind": e.kind,
                "amount": e.amount,
                "balance_after": e.balance_after,
                "project_id": e.project_id,
                "note": e.note,
                "created_at": as_utc(e.created_at).isoformat(),
            }
            for e in entries
        ],
    }
    lines = [
        f"account  {account.id}  {account.name}",
        f"tier     {account.tier}",
        f"balance  {account.balance} credits",
        "keys:",
        *(
            f"  {k['id']}  {k['prefix']}…  {'revoked' if k['revoked_at'] else 'active'}"
            for k in data["keys"]
        ),
        "recent ledger entries:",
        *(
            f"  {e['created_at'][:19]}  {e['kind']:<6} {e['amount']:>+8}  → {e['balance_after']}"
            f"  {e['project_id'] or e['note'] or ''}"
            for e in data["ledger"]
        ),
    ]
    return _emit(args, data, lines)


def accounts_list(args: argparse.Namespace) -> int:
    db = open_database(settings_from(args))
    with db.read() as conn:
        rows = account_sql.list_accounts(conn)
    data = {
        "accounts": [
            {"id": r.id, "name": r.name, "tier": r.tier, "balance": r.balance} for r in rows
        ]
    }
    lines = [f"{r.id}  {r.tier:<9} {r.balance:>10}  {r.name}" for r in rows]
    return _emit(args, data, lines or ["no accounts"])


def accounts_set_tier(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    catalog = load_catalog(settings)
    accounts.set_tier(open_database(settings), args.account, args.tier, list(catalog.tiers))
    return _emit(args, {"id": args.account, "tier": args.tier}, [f"{args.account} → {args.tier}"])


def keys_create(args: argparse.Namespace) -> int:
    key = accounts.create_key(open_database(settings_from(args)), args.account)
    data = {"account_id": key.account_id, "key_id": key.id, "api_key": key.key}
    return _emit(args, data, [f"key id   {key.id}", f"API key  {key.key}"])


def keys_revoke(args: argparse.Namespace) -> int:
    accounts.revoke_key(open_database(settings_from(args)), args.key_id)
    return _emit(args, {"key_id": args.key_id, "revoked": True}, [f"revoked {args.key_id}"])


def credits_grant(args: argparse.Namespace) -> int:
    balance = credits.grant(
        open_database(settings_from(args)), args.account, args.amount, args.note
    )
    data = {"account_id": args.account, "granted": args.amount, "balance": balance}
    return _emit(args, data, [f"granted {args.amount} credits; balance {balance}"])


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
            "edits": model.edits,
        }
        price_text = ", ".join(f"{r}: {p}" for r, p in prices.items())
        lines.append(f"{name:<16} {model.title:<20} backend={model.backend}")
        if model.backend == "diffusers" and model.weights is not None:
            status = weights_status(model.weights)
            data["models"][name]["weights"] = {**model.weights.model_dump(), **status}
            state = "loadable" if status["loadable"] else "NOT loadable"
            lines.append(f"{'':<16} weights: {model.weights.source} ({state}: {status['detail']})")
        lines.append(
            f"{'':<16} tiers: {', '.join(model.tiers)}; counts: "
            f"{', '.join(map(str, model.image_counts))}; credits/image: {price_text}"
            + ("; edits" if model.edits else "")
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
