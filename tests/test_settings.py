"""Settings checked at start-up: a shared database (PostgreSQL) needs the secrets that every node
must share, and says so before it connects anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from darkroom.services import build_core, build_services
from darkroom.startup import StartupError
from tests.conftest import make_settings

# Nothing listens on port 1: were the database opened, the error would be a connection error.
UNREACHABLE = "postgresql+psycopg://darkroom@127.0.0.1:1/darkroom"


@pytest.mark.parametrize(
    ("secrets", "missing"),
    [
        ({"secret_key": "", "admin_token": ""}, "DARKROOM_SECRET_KEY, DARKROOM_ADMIN_TOKEN"),
        ({"secret_key": "", "admin_token": "operator-1234"}, "DARKROOM_SECRET_KEY"),
        ({"secret_key": "shared", "admin_token": ""}, "DARKROOM_ADMIN_TOKEN"),
    ],
)
def test_a_shared_database_needs_both_secrets_before_it_is_opened(
    tmp_path: Path, secrets: dict[str, str], missing: str
) -> None:
    settings = make_settings(tmp_path / "data", database_url=UNREACHABLE, **secrets)
    with pytest.raises(ValueError) as refused:
        build_core(settings)
    message = str(refused.value)
    assert "DARKROOM_SECRET_KEY and DARKROOM_ADMIN_TOKEN" in message
    assert "same on every node" in message
    assert message.endswith(f"not set: {missing}")
    # refused from the settings alone: nothing was created for it
    assert not (tmp_path / "data").exists()


def test_with_both_secrets_it_goes_on_to_the_database(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        database_url=UNREACHABLE,
        secret_key="shared",
        admin_token="operator-1234",
        storage_url=str(tmp_path / "shared-files"),
        database_start_seconds=0,
    )
    with pytest.raises(StartupError) as refused:
        build_core(settings)
    assert "the database at postgresql+psycopg://darkroom@127.0.0.1:1/darkroom" in str(
        refused.value
    )


def test_sqlite_makes_up_its_own_secrets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sqlite = f"sqlite:///{data.resolve() / 'darkroom.sqlite3'}"
    settings = make_settings(data, secret_key="", admin_token="", database_url=sqlite)
    services = build_services(build_core(settings))
    try:
        services.admin.authorize(settings.generated_admin_token_file.read_text().strip())
        assert (settings.data_dir / "secret.key").stat().st_size > 0
    finally:
        services.db.dispose()
