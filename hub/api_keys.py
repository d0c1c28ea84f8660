"""API keys of the read API: one or more per department, only a hash kept (``audit.api_key``).

A key is ``<key_id>.<secret>``: the key id is public (it is what the access log and ``hub api-key
list`` show), the secret is 256 random bits shown once, when the key is created. The table keeps
``sha256:<hex>`` of the whole key: with that much entropy an unsalted hash is as strong as a salted
one, and it lets a request be looked up by the hash of the key it presents.

A key that swept master ids is **blocked** (``audit.api_key.blocked_at``, by :mod:`hub.api.guard`):
:func:`verify_key` refuses it with :class:`KeyBlocked`, which says why and who can lift the block
(``hub api-key unblock KEY_ID``, :func:`unblock_key`).

Scopes are extra rights beyond reading the department's published data (``steward``: may read and
decide the review queue; ``auditor``: may work the findings inbox of the workbench). A key also signs in
to the workbench (``/workbench/``), where its scopes decide which pages it gets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from hub.errors import HubError
from reports.render import beijing_time
from warehouse import api_keys as stored
from warehouse import quotas
from warehouse.sharing import load_sharing

SCOPES = ("steward", "auditor")
_KEY_ID = re.compile(r"^ak_[0-9a-f]{12}$")


@dataclass(frozen=True)
class ApiKey:
    """A key as the API sees it once verified (never the secret or its hash)."""
    key_id: str
    department: str
    label: str
    scopes: frozenset[str]


class KeyBlocked(HubError):
    """A valid key that is blocked (a sweep of master ids was detected): refused until unblocked."""

    def __init__(self, key_id: str, department: str, blocked_at, reason: str | None):
        self.key_id, self.department, self.blocked_at, self.reason = key_id, department, blocked_at, reason
        super().__init__(f"API key {key_id} was blocked at {beijing_time(blocked_at)}"
                         f" ({reason or 'no reason recorded'}). A data steward of the hub can lift the block with"
                         f" `hub api-key unblock {key_id}` once the cause is understood.")


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(conn: sa.Connection, department: str, label: str, *, scopes: Iterable[str] = (),
               departments: Iterable[str] | None = None) -> str:
    """Create a key for ``department`` and return it — the only time the secret is shown.

    ``departments`` (default: those of ``warehouse/sharing.yaml``) are the departments a key may be
    given to; ``scopes`` are extra rights (``steward``, ``auditor``).
    """
    if departments is None:
        departments = load_sharing()
    departments = sorted(departments)
    if department not in departments:
        raise HubError(f"unknown department {department!r}: a key is given to one of {', '.join(departments)}"
                       " (warehouse/sharing.yaml)")
    scopes = set(scopes)
    unknown = scopes - set(SCOPES)
    if unknown:
        raise HubError(f"unknown scope {', '.join(sorted(unknown))}: expected {', '.join(SCOPES)}")
    label = (label or "").strip()
    if not label:
        raise HubError("a key needs a label saying who holds it (e.g. the team or system)")
    key_id = "ak_" + secrets.token_hex(6)
    key = f"{key_id}.{secrets.token_urlsafe(32)}"
    stored.insert_key(conn, key_id=key_id, department=department, key_hash=hash_key(key), label=label,
                      scopes=sorted(scopes))
    return key


def key_id_of(key: str) -> str:
    """The public key id of a key (its part before the dot)."""
    return key.partition(".")[0]


def verify_key(conn: sa.Connection, key: str | None) -> ApiKey | None:
    """The key presented, if it exists and is not revoked; ``None`` for any other reason alike.

    Raises :class:`KeyBlocked` for a valid key that is blocked."""
    if not key or len(key) > 200 or not _KEY_ID.match(key_id_of(key)):
        return None
    digest = hash_key(key)
    row = stored.active_key_by_hash(conn, digest)
    if row is None or not hmac.compare_digest(row.key_hash, digest) or row.key_id != key_id_of(key):
        return None
    if row.blocked_at is not None:
        raise KeyBlocked(row.key_id, row.department, row.blocked_at, row.blocked_reason)
    return ApiKey(row.key_id, row.department, row.label or "", frozenset(row.scopes or ()))


def revoke_key(conn: sa.Connection, key_id: str) -> dict:
    """Revoke a key at once; raises :class:`HubError` for an unknown or already revoked key."""
    row = stored.mark_revoked(conn, key_id)
    if row is None:
        known = stored.key_revocation(conn, key_id)
        raise HubError(f"no API key {key_id!r}" if known is None
                       else f"API key {key_id} was already revoked at {beijing_time(known.revoked_at)}")
    return row


def unblock_key(conn: sa.Connection, key_id: str) -> dict:
    """Lift a key's block (a sweep was detected); raises :class:`HubError` for a key that is not blocked.
    Returns the key id, department and the block lifted (blocked_at, blocked_reason)."""
    row = quotas.unblock_key(conn, key_id)
    if row is None:
        known = stored.key_revocation(conn, key_id)
        raise HubError(f"no API key {key_id!r}" if known is None else f"API key {key_id} is not blocked")
    return row


def rotate_key(conn: sa.Connection, key_id: str) -> str:
    """Replace a key: a new key with the same department, label and scopes; the old one is revoked."""
    row = stored.active_key(conn, key_id)
    if row is None:
        raise HubError(f"no active API key {key_id!r} to rotate")
    if row.blocked_at is not None:
        raise HubError(f"API key {key_id} is blocked: a new key would lift the block. Look into why it was"
                       f" blocked (audit.access_alert), then `hub api-key unblock {key_id}` or revoke it")
    new = create_key(conn, row.department, row.label, scopes=row.scopes or (), departments=[row.department])
    revoke_key(conn, key_id)
    return new


def list_keys(conn: sa.Connection, *, include_revoked: bool = False) -> list[dict]:
    """Keys with their department, label, scopes and dates (never a hash)."""
    return [dict(r, scopes=sorted(r["scopes"] or ())) for r in stored.key_rows(conn, include_revoked=include_revoked)]

