"""The migrations build exactly the schema the code declares, are safe to re-run, and undo
themselves down to an empty database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from darkroom.store.database import Database, alembic_config
from darkroom.store.tables import metadata
from tests.conftest import ON_POSTGRES, Databases, ServerFactory, sqlite_only

TABLES = {"accounts", "api_keys", "ledger", "projects", "alembic_version"}


def schema_diff(db: Database) -> list[object]:
    with db.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def table_names(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(inspect(conn).get_table_names())


def test_upgrade_matches_metadata_and_is_idempotent(tmp_path: Path, databases: Databases) -> None:
    db = Database(databases.empty(tmp_path))
    try:
        assert table_names(db) == set()
        db.migrate()
        db.migrate()
        assert schema_diff(db) == []
        assert table_names(db) >= TABLES
    finally:
        db.dispose()


def test_downgrade_to_base_then_upgrade_again(tmp_path: Path, databases: Databases) -> None:
    db = Database(databases.empty(tmp_path))
    try:
        db.migrate()
        with db.engine.begin() as conn:
            config = alembic_config(db.url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0005")  # the cluster tables go, the rest stays
            assert "nodes" not in inspect(conn).get_table_names()
            assert inspect(conn).get_table_names() != []
            command.downgrade(config, "base")
        assert table_names(db) <= {"alembic_version"}
        db.migrate()
        assert schema_diff(db) == []
    finally:
        db.dispose()


@sqlite_only
def test_sqlite_runs_in_wal_mode(tmp_path: Path, databases: Databases) -> None:
    db = Database(databases.empty(tmp_path))
    try:
        db.migrate()
        with db.engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        assert mode == "wal"
    finally:
        db.dispose()


# A node's start-up as far as its schema: ready to migrate, it migrates when the test says go,
# so that the nodes begin within a few milliseconds of each other.
NODE = """
import sys
from alembic.script import ScriptDirectory
from darkroom.store.database import Database, alembic_config
db = Database(sys.argv[1])
ScriptDirectory.from_config(alembic_config(db.url)).get_heads()  # the migrations read once
db.engine.connect().close()  # and a connection ready: all that is left is to migrate
sys.stdin.readline()
db.migrate()
db.dispose()
"""


@pytest.mark.skipif(not ON_POSTGRES, reason="nodes of a cluster share a PostgreSQL")
def test_nodes_started_together_on_a_fresh_database_all_come_up(
    tmp_path: Path, databases: Databases
) -> None:
    """As containers start: every node migrates at once. One migrates, the others wait for its
    lock and then find the schema current (without it, two CREATE TABLE of one table collide:
    UniqueViolation on pg_type_typname_nsp_index)."""
    url = databases.empty(tmp_path)
    nodes = [
        subprocess.Popen(
            [sys.executable, "-c", NODE, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for node in nodes:
            assert node.stdin is not None
            node.stdin.write("go\n")
            node.stdin.flush()
        outcomes = [node.communicate(timeout=120)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0] * 4, [o[-300:] for o in outcomes]
    db = Database(url)
    try:
        assert schema_diff(db) == []
    finally:
        db.dispose()


def test_status_note_becomes_status_reason_and_keeps_its_values(
    server_factory: ServerFactory,
) -> None:
    """0012 renames the column as the API names it; a database of an older version keeps what
    it held, both ways."""
    server = server_factory(workers=0)  # the project stays queued
    account = server.account()
    with server.client(account) as http:
        created = http.post(
            "/v1/ai-image-generator", json={"image_count": 1, "style": {"prompt": "a fox"}}
        )
    assert created.status_code == 200, created.text
    server.stop()
    db = Database(server.settings.sqlalchemy_url)
    try:
        with db.engine.begin() as conn:
            config = alembic_config(db.url)
            config.attributes["connection"] = conn
            command.downgrade(config, "0010")  # the schema before 0012
            conn.execute(text("UPDATE projects SET status_note = 'loading the weights'"))
        db.migrate()
        with db.engine.connect() as conn:
            reasons = conn.execute(text("SELECT status_reason FROM projects")).scalars().all()
        assert reasons == ["loading the weights"]
    finally:
        db.dispose()
