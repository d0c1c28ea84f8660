"""The database connection the read API serves from (``hub serve``): its own user, never a superuser.

``hub grants apply`` creates the API's login role, ``hub_api`` (``<prefix>api``; see
:mod:`warehouse.api_role`): not a superuser, no ``CREATEROLE``, no ``BYPASSRLS``, a member of every
department role, with only the privileges the API needs. Each request reads persons and enrolments as
the caller's department (:mod:`warehouse.serving`), so the roles, views and row-level security decide
what the API serves.

Which URL :func:`api_engine` connects with:

* ``HUB_API_DATABASE_URL``, when set, as is (give ``hub_api`` a password first:
  ``ALTER ROLE hub_api PASSWORD '…'``, as the warehouse's role);
* otherwise the warehouse's URL with user ``hub_api`` and no password: the embedded PostgreSQL (UNIX
  socket, trust) and servers that trust the local connection need nothing more;
* when the warehouse's URL carries a password (and ``HUB_API_DATABASE_URL`` is not set), it logs in
  as the warehouse's user and switches to ``hub_api`` for the whole session (``SET ROLE``; ``hub grants
  apply`` made the warehouse's user a member of ``hub_api`` for this).

The engine is checked before it is returned: a missing role or a superuser connection is an error
naming what to do.
"""

from __future__ import annotations

import logging
import os
import weakref

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hub.errors import HubError

log = logging.getLogger(__name__)
API_URL_VARIABLE = "HUB_API_DATABASE_URL"
_warned: weakref.WeakSet = weakref.WeakSet()


def api_engine(warehouse_url: str | None = None, *, role_prefix: str = "hub_") -> sa.Engine:
    """The engine ``hub serve`` hands to the read API: connected as the API's own role."""
    from hub import settings
    from warehouse.api_role import api_role

    role = api_role(role_prefix)
    explicit = os.environ.get(API_URL_VARIABLE)
    if explicit:
        engine = sa.create_engine(settings.normalize_url(explicit), pool_pre_ping=True)
    else:
        url = make_url(warehouse_url or settings.database_url())
        if url.password:
            engine = sa.create_engine(url, pool_pre_ping=True)
            quoted = engine.dialect.identifier_preparer.quote(role)

            @sa.event.listens_for(engine, "connect")
            def _become_api_role(dbapi_conn, _record):
                with dbapi_conn.cursor() as cur:
                    cur.execute(f"SET SESSION ROLE {quoted}")
                dbapi_conn.commit()
        else:
            engine = sa.create_engine(url.set(username=role, password=None), pool_pre_ping=True)
    _check(engine, role)
    return engine


def _check(engine: sa.Engine, role: str) -> None:
    try:
        with engine.connect() as conn:
            user, superuser = conn.execute(sa.text(
                "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")).one()
    except sa.exc.DBAPIError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        raise HubError(f"the read API cannot connect to the warehouse as {role!r} ({reason}); run"
                       f" `hub grants apply` to create the role, or set {API_URL_VARIABLE} to a URL of"
                       " a login role that is not a superuser") from None
    if superuser:
        engine.dispose()
        raise HubError(f"the read API's database user {user!r} is a superuser: the department roles and row"
                       f" security would not protect what it serves; point {API_URL_VARIABLE} at"
                       f" {role!r} (created by `hub grants apply`)")


def warn_if_superuser(engine: sa.Engine) -> bool:
    """Log a warning (once per engine) when ``engine`` connects as a superuser; returns whether it does.
    For :func:`hub.api.create_app` given an engine of its own (tests, scripts)."""
    with engine.connect() as conn:
        superuser = bool(conn.execute(sa.text(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar())
    if superuser and engine not in _warned:
        _warned.add(engine)
        log.warning("read API: the database user is a superuser, so the department roles and row security do"
                    " not limit what is served; `hub serve` connects as hub_api (see hub/api_db.py)")
    return superuser
