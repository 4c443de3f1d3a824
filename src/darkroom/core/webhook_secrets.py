"""Webhook signing secrets at rest: sealed with a key derived from the server's secret.

An endpoint's secret is ``whsec_`` and 32 random bytes in base64url; the sender needs it in clear
to sign each delivery, so it cannot be hashed like an API key. It is stored sealed instead:
``v1:`` and the base64url of a random 12-byte nonce, then the AES-256-GCM encryption of the 32
bytes with its tag (83 characters: the column that held the secret in clear holds it; a Fernet
token would not fit). The key is derived from the server's secret (``DARKROOM_SECRET_KEY``, or
the one generated in the data directory) with HKDF-SHA256 and a label of this purpose, so it is
used for nothing else. Someone who reads the database (or a backup of it) without the server's
secret learns no webhook secret.

Rotating the server's secret: :class:`SecretBox` seals with the current key and opens with it or
any previous one (``DARKROOM_PREVIOUS_SECRET_KEYS``); :func:`reseal` (``darkroom secrets
rotate``) moves every stored secret to the current key, after which the previous ones can go.

Secrets stored in clear by an older version are read as they are. They are sealed by
:func:`seal` (``darkroom secrets seal``, or at start-up on the embedded default), which also
marks the database's format ``sealed`` (table ``data_formats``). Until then, on a shared
database, nodes of a release before this encryption may still run beside the new ones (a
rolling upgrade): they sign with the column as it is, so nothing rewrites it behind them, and
new endpoints are stored in clear as well (:func:`stored_form`). A database that no release
before this one has used starts ``sealed``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection

from darkroom.store import formats
from darkroom.store import webhook_secrets as sql
from darkroom.store.database import Database

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
SEALED_PREFIX = "v1:"
# The HKDF label (and the AEAD's associated data): a key derived for this and nothing else.
PURPOSE = b"darkroom webhook signing secrets v1"
NONCE_BYTES = 12
# The row of ``data_formats`` that says whether the secrets may be stored in clear.
FORMAT = "webhook_secrets"
CLEAR = "clear"  # for the nodes of a release before the encryption; until `secrets seal`
SEALED = "sealed"

log = logging.getLogger("darkroom.webhooks")


class SecretUnreadable(ValueError):
    """A stored secret that none of the server's keys opens."""


UNREADABLE = (
    "the webhook secret was encrypted with a server secret this server does not have: set "
    "DARKROOM_SECRET_KEY back, or name the old one in DARKROOM_PREVIOUS_SECRET_KEYS (README: "
    "Rotating the server secret)"
)


def new_secret() -> str:
    """A fresh endpoint secret, in clear (shown to its owner once)."""
    return SECRET_PREFIX + _encode(secrets.token_bytes(SECRET_BYTES))


class SecretBox:
    """Seals secrets under the key derived from ``keys[0]`` (the server's current secret) and
    opens those sealed under any of ``keys`` (the current one, then the previous ones). Without
    keys it seals nothing and opens only secrets stored in clear."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._ciphers = [AESGCM(_derive(key)) for key in dict.fromkeys(keys) if key]

    def seal(self, secret: str) -> str:
        """The stored form of ``secret`` (``whsec_`` and 32 bytes in base64url)."""
        if not self._ciphers:
            raise ValueError("no server secret to encrypt webhook secrets with")
        raw = _raw(secret)
        nonce = os.urandom(NONCE_BYTES)
        return SEALED_PREFIX + _encode(nonce + self._ciphers[0].encrypt(nonce, raw, PURPOSE))

    def open(self, stored: str) -> str:
        """The secret in clear; :class:`SecretUnreadable` when no key opens it."""
        if stored.startswith(SECRET_PREFIX):
            return stored  # in clear: from an older version, sealed at the next start
        for cipher in self._ciphers:
            raw = _open(cipher, stored)
            if raw is not None:
                return SECRET_PREFIX + _encode(raw)
        raise SecretUnreadable(UNREADABLE)

    def sealed_with_current(self, stored: str) -> bool:
        """Whether ``stored`` is sealed under the current key."""
        return bool(self._ciphers) and _open(self._ciphers[0], stored) is not None


@dataclass
class Census:
    """What a pass over the stored secrets found and did."""

    sealed: int = 0  # (re-)encrypted under the current key by this pass
    current: int = 0  # already under the current key
    unreadable: list[str] = field(default_factory=list)  # endpoint ids that no key opens
    skipped: list[str] = field(default_factory=list)  # in clear, but not a darkroom secret
    clear: list[str] = field(default_factory=list)  # left in clear, for older nodes


def stored_form(conn: Connection, box: SecretBox, secret: str) -> str:
    """What to store as a new endpoint's ``secret``, in ``conn``'s transaction: sealed, unless
    the database is still readable by older nodes (then in clear, as they keep theirs, until
    ``darkroom secrets seal``; the format is held until the transaction ends, so that a seal
    running meanwhile sees this one)."""
    if formats.get(conn, FORMAT, lock="share") == CLEAR:
        return secret
    return box.seal(secret)


def seal(db: Database, box: SecretBox) -> Census:
    """Encrypt the secrets still in clear and mark the database ``sealed`` (one transaction; a
    second run finds nothing to do), counting those that no key opens. Nodes of a release
    before the encryption cannot sign with the secrets afterwards: on a cluster, run it once
    every node runs this release (``darkroom secrets seal``)."""

    def work(conn: Connection) -> Census:
        was = formats.get(conn, FORMAT, lock="update")  # no endpoint created in clear meanwhile
        census = Census()
        changes = []
        for row in sql.all_secrets(conn):
            if row.secret.startswith(SECRET_PREFIX):
                changes.append((row.id, row.secret, row.secret))
            elif _opens(box, row.secret):
                census.current += 1
            else:
                census.unreadable.append(row.id)
        _reseal(conn, box, changes, census)
        if was != SEALED:
            formats.set_format(conn, FORMAT, SEALED)
        return census

    census = db.transact(work)
    if census.sealed:
        log.info("webhook secrets: encrypted %d stored in clear by an older version", census.sealed)
    _report(census)
    return census


def check_at_start(db: Database, box: SecretBox, *, seal_now: bool) -> Census:
    """At start-up: on the embedded default (``seal_now``: one node, nobody older beside it)
    :func:`seal`; on a shared database only look, and say what is left in clear for older
    nodes and what no key opens."""
    if seal_now:
        return seal(db, box)

    def look(conn: Connection) -> Census:
        census = Census()
        for row in sql.all_secrets(conn):
            if row.secret.startswith(SECRET_PREFIX):
                census.clear.append(row.id)
            elif _opens(box, row.secret):
                census.current += 1
            else:
                census.unreadable.append(row.id)
        return census

    census = db.query(look)
    if census.clear:
        log.warning(
            "webhook secrets: %d stored in clear, as nodes of releases before their encryption "
            "read them; once every node runs this release, run `darkroom secrets seal` "
            "(README: Upgrading a cluster)",
            len(census.clear),
        )
    _report(census)
    return census


def reseal(db: Database, box: SecretBox) -> Census:
    """Encrypt every stored secret under the current key (one transaction): after a rotation
    of the server's secret, so that the previous one can be dropped. Secrets in clear stay so
    while the database is kept readable by older nodes (see :func:`seal`)."""

    def work(conn: Connection) -> Census:
        keep_clear = formats.get(conn, FORMAT, lock="update") == CLEAR
        census = Census()
        changes = []
        for row in sql.all_secrets(conn):
            if box.sealed_with_current(row.secret):
                census.current += 1
                continue
            if keep_clear and row.secret.startswith(SECRET_PREFIX):
                census.clear.append(row.id)
                continue
            try:
                changes.append((row.id, row.secret, box.open(row.secret)))
            except SecretUnreadable:
                census.unreadable.append(row.id)
        _reseal(conn, box, changes, census)
        return census

    census = db.transact(work)
    _report(census)
    return census


def _reseal(
    conn: Connection, box: SecretBox, changes: list[tuple[str, str, str]], census: Census
) -> None:
    """Store each ``(endpoint_id, stored, secret)`` sealed under the current key."""
    sealed = []
    for endpoint_id, stored, secret in changes:
        try:
            sealed.append((endpoint_id, stored, box.seal(secret)))
        except ValueError:
            census.skipped.append(endpoint_id)
    census.sealed += sql.replace_secrets(conn, sealed)


def _report(census: Census) -> None:
    if census.unreadable:
        log.error(
            "webhook secrets: %d cannot be decrypted with this server's keys (endpoints %s): "
            "their deliveries fail until the key is back. %s",
            len(census.unreadable),
            ", ".join(census.unreadable[:5]) + (", ..." if len(census.unreadable) > 5 else ""),
            UNREADABLE,
        )
    if census.skipped:
        log.warning(
            "webhook secrets: %d stored in clear are not darkroom secrets and stay so: %s",
            len(census.skipped),
            ", ".join(census.skipped[:5]),
        )


def _opens(box: SecretBox, stored: str) -> bool:
    try:
        box.open(stored)
    except SecretUnreadable:
        return False
    return True


def _derive(key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(key)


def _open(cipher: AESGCM, stored: str) -> bytes | None:
    if not stored.startswith(SEALED_PREFIX):
        return None
    try:
        blob = _decode(stored.removeprefix(SEALED_PREFIX))
        return cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], PURPOSE)
    except (InvalidTag, ValueError):
        return None


def _raw(secret: str) -> bytes:
    """The 32 bytes of a darkroom secret; ValueError for anything else."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        raw = _decode(encoded) if secret.startswith(SECRET_PREFIX) else b""
    except ValueError:
        raw = b""
    if len(raw) != SECRET_BYTES or _encode(raw) != encoded:
        raise ValueError("not a darkroom webhook secret (whsec_ and 32 bytes in base64url)")
    return raw


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from None
