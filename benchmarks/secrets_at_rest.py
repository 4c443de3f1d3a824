"""What secrets at rest cost at start-up and per delivery, side by side in one run (no server).

1. **Owner-only data directory**: :func:`darkroom.storage.permissions.tighten` over a data
   directory of ``N`` image files in project directories of 4 (as the local store lays them
   out): once while everything is readable by others (the first start after an upgrade: every
   mode changed), then already owner-only (every later start: a walk and an ``lstat`` each).
2. **Webhook secrets**: sealing and opening one secret (AES-256-GCM under an HKDF-derived key),
   next to signing one delivery body (HMAC-SHA256, what the sender did anyway); opening with the
   secret sealed under a previous key (a rotation in progress: one failed tag check first); and
   :func:`seal` / :func:`reseal` over ``E`` endpoints in a SQLite database.

Run from the repository root::

    .venv/bin/python benchmarks/secrets_at_rest.py            # N 100000, E 10000
    .venv/bin/python benchmarks/secrets_at_rest.py --quick    # N 10000, E 1000
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert

from darkroom.core.webhook_secrets import SecretBox, new_secret, reseal, seal
from darkroom.sdk.webhooks import signature
from darkroom.storage.permissions import tighten
from darkroom.store.database import Database
from darkroom.store.tables import accounts, webhook_endpoints


def timed(work: object, repeat: int) -> float:
    """Microseconds per call of ``work`` (a no-argument callable), over ``repeat`` calls."""
    assert callable(work)
    start = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - start) / repeat * 1e6


def data_dir(root: Path, files: int) -> Path:
    data = root / "data"
    for n in range(files):
        project = data / "images" / f"img_{n // 4:08d}"
        if n % 4 == 0:
            project.mkdir(parents=True, mode=0o755)
        path = project / f"a1-{n % 4}.png"
        path.write_bytes(b"")
        path.chmod(0o644)
    data.chmod(0o755)
    return data


def endpoints(root: Path, count: int, box: SecretBox | None) -> Database:
    (root / "db").mkdir()
    db = Database(f"sqlite:///{root / 'db' / 'darkroom.sqlite3'}")
    db.migrate()
    now = datetime.now(UTC)
    with db.write() as conn:
        conn.execute(
            insert(accounts).values(
                id="acct_bench", name="bench", tier="pro", balance=0, created_at=now
            )
        )
        rows = []
        for n in range(count):
            secret = new_secret()
            rows.append(
                {
                    "id": f"wh_{n:08d}",
                    "account_id": "acct_bench",
                    "url": "https://example.com/hook",
                    "events": "[]",
                    "secret": secret if box is None else box.seal(secret),
                    "created_at": now,
                }
            )
        conn.execute(insert(webhook_endpoints), rows)
    return db


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    files, count = (10_000, 1_000) if args.quick else (100_000, 10_000)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, ", end="")
    print(f"load {os.getloadavg()[0]:.2f}; N {files} files, E {count} endpoints")

    with tempfile.TemporaryDirectory() as tmp:
        data = data_dir(Path(tmp), files)
        start = time.perf_counter()
        changed = tighten(data)
        first = time.perf_counter() - start
        start = time.perf_counter()
        again = tighten(data)
        later = time.perf_counter() - start
    print(f"tighten, readable by others:  {first * 1000:8.0f} ms ({changed} changed)")
    print(f"tighten, already owner-only:  {later * 1000:8.0f} ms ({again} changed)")

    box = SecretBox([b"current-secret", b"old-secret"])
    rotated = SecretBox([b"new-secret", b"current-secret"])
    secret = new_secret()
    sealed = box.seal(secret)
    body = b'{"type":"image.completed","payload":{}}' * 20
    sign = timed(lambda: signature(secret, 1_700_000_000, body), 20_000)
    seal_one = timed(lambda: box.seal(secret), 20_000)
    opened = timed(lambda: box.open(sealed), 20_000)
    opened_old = timed(lambda: rotated.open(sealed), 20_000)
    print(f"sign one delivery (HMAC):     {sign:8.1f} µs")
    print(f"seal one secret:              {seal_one:8.1f} µs ({len(sealed)} characters stored)")
    print(f"open one secret:              {opened:8.1f} µs ({opened / sign:.1f}x signing)")
    print(f"open, under a previous key:   {opened_old:8.1f} µs")

    with tempfile.TemporaryDirectory() as tmp:
        db = endpoints(Path(tmp), count, None)
        start = time.perf_counter()
        census = seal(db, box)
        upgrade = time.perf_counter() - start
        start = time.perf_counter()
        seal(db, box)
        check = time.perf_counter() - start
        start = time.perf_counter()
        moved = reseal(db, rotated)
        rotate = time.perf_counter() - start
        db.dispose()
    print(f"seal, {census.sealed} in clear:  {upgrade * 1000:6.0f} ms (first start; secrets seal)")
    print(f"seal, none in clear: {check * 1000:6.0f} ms (every later start)")
    print(f"reseal, {moved.sealed} under the old key: {rotate * 1000:6.0f} ms")


if __name__ == "__main__":
    main()
