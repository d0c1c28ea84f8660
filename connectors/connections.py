"""Connections to the departmental platforms, resolved the Airflow way.

Inside Airflow, DAGs resolve a connection through Airflow (environment variables or a secrets
backend) and hand its parts to the hub. The CLI reads the same ``AIRFLOW_CONN_<ID>`` variables, in
JSON or URI form. What a connection means depends on the source's kind, and each kind's module
takes from the parts what it needs (see :mod:`connectors.kinds`):

- rest: ``host``/``port``/``schema`` (http or https), ``login``, ``password``;
- file: the drop folder in ``extra.path`` (or ``host``);
- sql: ``extra.sqlalchemy_url``, or a SQLite file in ``host`` (conn_type sqlite), or a PostgreSQL server.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit


class ConnectionConfigError(ValueError):
    """A connection is not configured, or lacks what its source's kind needs."""


@dataclass(frozen=True)
class ConnectionParts:
    """The parts of an Airflow connection; secrets come from here, never from a registry file."""

    conn_id: str
    conn_type: str | None = None
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict = field(default_factory=dict)


def connection_from_env(conn_id: str) -> ConnectionParts:
    """Connection ``conn_id`` from ``AIRFLOW_CONN_<CONN_ID>`` (JSON or URI)."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(var)
    if not value:
        raise ConnectionConfigError(f"connection {conn_id!r} is not configured: set {var} (JSON or URI)")
    if value.lstrip().startswith("{"):
        try:
            c = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(f"{var} is not valid JSON: {exc.msg}") from exc
        extra = c.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return ConnectionParts(conn_id, c.get("conn_type"), c.get("host"), c.get("port"), c.get("login"),
                               c.get("password"), c.get("schema"), extra)
    u = urlsplit(value)
    return ConnectionParts(conn_id, u.scheme, u.hostname, u.port, unquote(u.username or "") or None,
                           unquote(u.password or "") or None, u.path.lstrip("/") or None, dict(parse_qsl(u.query)))


def connection_json(*, conn_type: str, host: str | None = None, port: int | None = None, login: str | None = None,
                    password: str | None = None, schema: str | None = None, extra: dict | None = None) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value."""
    value = {"conn_type": conn_type, "host": host, "port": port, "login": login, "password": password,
             "schema": schema, "extra": extra or {}}
    return json.dumps({k: v for k, v in value.items() if v not in (None, {})})
