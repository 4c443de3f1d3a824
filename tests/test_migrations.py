"""The migrations build exactly the schema the code declares, and are safe to re-run."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from darkroom.store.database import Database
from darkroom.store.tables import metadata


def test_upgrade_matches_metadata_and_is_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    db.migrate()
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
        assert set(inspect(conn).get_table_names()) >= {
            "accounts",
            "api_keys",
            "ledger",
            "projects",
            "alembic_version",
        }
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    assert mode == "wal"
    db.dispose()
