"""``darkroom migrate``: bring the database's schema to this version's newest migration, then
exit. Every node also migrates at its start; a deployment runs this first, once (the Helm
chart's pre-install and pre-upgrade hook), so that no node of the new version starts on an old
schema and a failed migration stops the rollout before any node is replaced. Like a node, it
waits for a database that does not answer yet (``DARKROOM_DATABASE_START_SECONDS``), and on
PostgreSQL migrates under the nodes' advisory lock."""

from __future__ import annotations

import argparse
import json
from typing import Any

from darkroom.cli.options import add_data_options, settings_from


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "migrate", help="bring the database's schema up to date, then exit (before a rollout)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_data_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from darkroom.observe.logs import configure as configure_logging
    from darkroom.services import open_database
    from darkroom.startup import shown_url

    settings = settings_from(args)
    configure_logging(settings)  # each migration it runs is a line of the log
    db = open_database(settings)
    try:
        revision = db.revision()
    finally:
        db.dispose()
    where = shown_url(settings.sqlalchemy_url)
    if args.json:
        print(json.dumps({"database": where, "revision": revision}))
    else:
        print(f"darkroom migrate: {where} is at {revision}, the newest schema")
    return 0
