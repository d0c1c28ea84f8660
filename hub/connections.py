"""Reading Airflow-style connections from the environment for the CLI.

Inside Airflow, DAGs resolve connections through Airflow (environment variables or a secrets
backend). The CLI reads the same ``AIRFLOW_CONN_<ID>`` variables, in JSON or URI form.
"""

from __future__ import annotations

import json
import os
from urllib.parse import unquote, urlsplit

from connectors.rest import Endpoint
from hub.errors import HubError


def endpoint_from_parts(*, host: str | None, port: int | None, login: str | None, password: str | None,
                        schema: str | None = None, conn_id: str = "?") -> Endpoint:
    if not host:
        raise HubError(f"connection {conn_id!r} has no host")
    scheme = schema if schema in ("http", "https") else "http"
    if host.startswith(("http://", "https://")):
        base = host.rstrip("/")
    else:
        base = f"{scheme}://{host}" + (f":{port}" if port else "")
    return Endpoint(base_url=base, login=login, password=password)


def endpoint_from_env(conn_id: str) -> Endpoint:
    """The endpoint of connection ``conn_id`` from ``AIRFLOW_CONN_<CONN_ID>``."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(var)
    if not value:
        raise HubError(f"connection {conn_id!r} is not configured: set {var} (JSON or URI)")
    if value.lstrip().startswith("{"):
        try:
            c = json.loads(value)
        except json.JSONDecodeError as exc:
            raise HubError(f"{var} is not valid JSON: {exc.msg}") from exc
        return endpoint_from_parts(host=c.get("host"), port=c.get("port"), login=c.get("login"),
                                   password=c.get("password"), schema=c.get("schema"), conn_id=conn_id)
    u = urlsplit(value)
    return endpoint_from_parts(host=u.hostname, port=u.port, login=unquote(u.username or "") or None,
                               password=unquote(u.password or "") or None,
                               schema=u.path.lstrip("/") or None, conn_id=conn_id)


def connection_json(endpoint_url: str, login: str, password: str) -> str:
    """An ``AIRFLOW_CONN_*`` JSON value for an HTTP platform."""
    u = urlsplit(endpoint_url)
    return json.dumps({"conn_type": "http", "host": u.hostname, "port": u.port, "schema": u.scheme,
                       "login": login, "password": password})
