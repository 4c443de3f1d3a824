"""The rate limit's token buckets in the database (store/ratelimit.py) and the limiter over them
(core/ratelimit.py): the arithmetic at given times, one bucket taken by many threads through two
engines at once, and a limit of 0 that never touches the database."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from darkroom.core.errors import RateLimited
from darkroom.core.ratelimit import RateLimiter
from darkroom.store import ratelimit
from darkroom.store.database import Database
from darkroom.store.tables import rate_buckets

PER_MINUTE = 3
PER_SECOND = PER_MINUTE / 60  # one token every 20 s


def take(db: Database, key: str, now: float) -> float:
    return db.transact(
        lambda conn: ratelimit.take(
            conn, key, now, capacity=float(PER_MINUTE), per_second=PER_SECOND
        ),
        durable=False,
    )


def stored(db: Database, key: str) -> tuple[float, float]:
    row = db.query(
        lambda conn: conn.execute(
            select(rate_buckets.c.tokens, rate_buckets.c.updated_at).where(
                rate_buckets.c.key == key
            )
        ).one()
    )
    return row.tokens, row.updated_at


def test_a_bucket_starts_full_empties_and_refills_at_the_rate(db: Database) -> None:
    assert [take(db, "k", 1000.0) for _ in range(PER_MINUTE)] == [0.0, 0.0, 0.0]
    assert take(db, "k", 1000.0) == pytest.approx(20.0)  # empty: one token in 20 s
    assert stored(db, "k") == (pytest.approx(0.0), 1000.0)
    # half a token later: the wait halves, and the refusal took nothing
    assert take(db, "k", 1010.0) == pytest.approx(10.0)
    assert stored(db, "k") == (pytest.approx(0.5), 1010.0)
    assert take(db, "k", 1010.0) == pytest.approx(10.0)
    assert take(db, "k", 1020.0) == 0.0  # a whole token: taken
    assert stored(db, "k") == (pytest.approx(0.0), 1020.0)
    assert take(db, "k", 1020.0) == pytest.approx(20.0)


def test_a_bucket_refills_no_further_than_its_capacity(db: Database) -> None:
    assert take(db, "k", 1000.0) == 0.0
    # an hour idle is worth PER_MINUTE tokens, not 180
    assert [take(db, "k", 4600.0) for _ in range(PER_MINUTE)] == [0.0, 0.0, 0.0]
    assert take(db, "k", 4600.0) == pytest.approx(20.0)


def test_keys_have_their_own_buckets(db: Database) -> None:
    for _ in range(PER_MINUTE):
        take(db, "a", 1000.0)
    assert take(db, "a", 1000.0) > 0
    assert take(db, "b", 1000.0) == 0.0


def test_a_node_whose_clock_lags_neither_refills_nor_moves_time_back(db: Database) -> None:
    for _ in range(PER_MINUTE):
        take(db, "k", 1000.0)
    assert take(db, "k", 990.0) == pytest.approx(20.0)  # 10 s behind: no time has elapsed
    assert stored(db, "k") == (pytest.approx(0.0), 1000.0)
    assert take(db, "k", 1020.0) == 0.0


def test_refill_arithmetic() -> None:
    bucket = ratelimit.Bucket(tokens=0.25, updated_at=100.0)
    assert ratelimit.refill(bucket, 115.0, capacity=3.0, per_second=0.05) == ratelimit.Bucket(
        tokens=pytest.approx(1.0), updated_at=115.0
    )
    assert ratelimit.refill(bucket, 1e6, capacity=3.0, per_second=0.05).tokens == 3.0
    assert ratelimit.refill(bucket, 50.0, capacity=3.0, per_second=0.05) == bucket


def test_one_bucket_taken_by_many_threads_on_two_engines_gives_out_capacity_tokens(
    db: Database,
) -> None:
    other = Database(db.url)  # a second node's engine on the same database
    capacity = 20
    taken: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def node(database: Database) -> None:
        start.wait()
        for _ in range(10):
            wait = database.transact(
                lambda conn: ratelimit.take(
                    conn, "shared", 1000.0, capacity=float(capacity), per_second=1.0
                ),
                durable=False,
            )
            with lock:
                taken.append(wait)

    threads = [threading.Thread(target=node, args=(d,)) for d in [db, other] * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    other.dispose()
    assert len(taken) == 80
    assert taken.count(0.0) == capacity
    assert stored(db, "shared") == (pytest.approx(0.0), 1000.0)


def test_the_limiter_raises_rate_limited_with_the_wait(db: Database) -> None:
    limiter = RateLimiter(db, PER_MINUTE)
    for _ in range(PER_MINUTE):
        limiter.check("key_1", now=1000.0)
    with pytest.raises(RateLimited) as refused:
        limiter.check("key_1", now=1005.0)
    assert refused.value.retry_after == pytest.approx(15.0)
    limiter.check("key_2", now=1005.0)


def test_a_limit_of_zero_never_opens_the_database(tmp_path: Path) -> None:
    unreachable = Database(f"sqlite:///{tmp_path / 'missing' / 'darkroom.sqlite3'}")
    RateLimiter(unreachable, 0).check("key_1")
    asyncio.run(RateLimiter(unreachable, 0).check_async("key_1"))
    with pytest.raises(OperationalError, match="unable to open database"):
        RateLimiter(unreachable, 1).check("key_1")  # the same database, when the limit is on
