"""The database connection the read API serves from (``hub serve``)."""

from __future__ import annotations

import sqlalchemy as sa


def api_engine() -> sa.Engine:
    """The engine ``hub serve`` hands to the read API: the hub's warehouse engine."""
    from hub import settings

    return settings.engine()
