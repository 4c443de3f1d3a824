"""Flags shared by the commands that work on a data directory, and Settings built from them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from darkroom.settings import Settings


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (DARKROOM_DATA_DIR, ./darkroom-data)"
    )
    parser.add_argument("--database-url", help="SQLAlchemy URL (DARKROOM_DATABASE_URL)")
    parser.add_argument("--catalog", type=Path, help="catalog override file (DARKROOM_CATALOG)")
    parser.add_argument(
        "--storage-url",
        help="where images are kept: a directory or s3://bucket/prefix (DARKROOM_STORAGE_URL, "
        "the data directory)",
    )


def settings_from(args: argparse.Namespace, *names: str) -> Settings:
    """Settings from the environment, with every flag the user gave taking precedence."""
    fields = ("data_dir", "database_url", "catalog", "storage_url", *names)
    given: dict[str, Any] = {
        name: getattr(args, name) for name in fields if getattr(args, name, None) is not None
    }
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check of several settings together: its message says which
            raise ValueError(str(first["msg"]).removeprefix("Value error, ")) from None
        raise ValueError(f"invalid setting {first['loc']}: {first['msg']}") from None
