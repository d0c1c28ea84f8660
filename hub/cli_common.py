"""What every part of the ``hub`` command shares: the consoles, the one-line error handler, logging."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of tables"
                                                          " (times in ISO 8601 with their offset, +08:00: China"
                                                          " Standard Time).")]

#: The label beside a time the CLI prints: China Standard Time, the zone the hub shows people times in.
TIME_LABEL = "北京时间 (UTC+8)"  # as reports.render.TIME_LABEL
#: The same label in a table's column header, so that the cells can show the bare time.
TIME_HEADER = "（北京时间 UTC+8）"


def local_time(value, *, labelled: bool = True, sep: str = " ") -> str:
    """A time for people: China Standard Time to the second, labelled ``2026-12-07 10:15:03 北京时间 (UTC+8)``
    (bare in a table whose header carries :data:`TIME_HEADER`); see :func:`reports.render.beijing_time`."""
    from reports.render import beijing_time

    return beijing_time(value, labelled=labelled, sep=sep)


@contextlib.contextmanager
def user_errors():
    """Turn the failures a user can act on into one clear line and exit code 1."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from connectors.base import ExtractError
    from connectors.connections import ConnectionConfigError
    from connectors.registry import RegistryError
    from hub.errors import HubError
    from reports.errors import ReportError
    from warehouse.landing import LoadIdentityError

    try:
        yield
    except (HubError, ReportError, RegistryError, ExtractError, ConnectionConfigError, LoadIdentityError) as exc:
        # the message is text, not markup: a bracket such as std.resident[mz_dibao] must show as written
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    except OperationalError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if "permission denied for database" in first:  # hub grants apply takes CONNECT from PUBLIC
            err.print(f"[bold red]error:[/] the warehouse refused this role: {escape(first.split('FATAL:')[-1].strip())}"
                      " (only the hub's own roles may connect: GRANT CONNECT ON DATABASE … TO the role, as the"
                      " warehouse's owner)", highlight=False)
            raise typer.Exit(1) from None
        err.print(f"[bold red]error:[/] cannot reach the warehouse database: {first}", highlight=False)
        raise typer.Exit(1) from None
    except ProgrammingError as exc:
        if "permission denied" in str(exc.orig):
            first = str(exc.orig).strip().splitlines()[0]
            err.print(f"[bold red]error:[/] the warehouse refused this role: {escape(first)} (the objects belong to"
                      " another role: restore with --no-owner as the warehouse's role, or connect as the owner)",
                      highlight=False)
            raise typer.Exit(1) from None
        if "does not exist" in str(exc.orig):
            err.print("[bold red]error:[/] the warehouse is not set up: run 'hub db upgrade' first", highlight=False)
            raise typer.Exit(1) from None
        raise


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _jsonable(value):
    """Plain JSON values for what the warehouse returns: ISO timestamps (an aware one in China Standard Time,
    +08:00) and dates, numbers for decimals, lists for arrays and sets, dicts for rows."""
    import dataclasses
    import datetime as dt
    import decimal
    import math
    import uuid
    from collections.abc import Mapping
    from pathlib import PurePath

    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        from reports.render import CHINA_STANDARD_TIME

        return value.astimezone(CHINA_STANDARD_TIME).isoformat()
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (PurePath, uuid.UUID)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN and infinities are not JSON
        return None
    if hasattr(value, "item") and callable(value.item) and not isinstance(value, (str, bytes)):
        return _jsonable(value.item())  # a NumPy scalar
    return value


def print_json(data) -> None:
    """Print ``data`` as one JSON document on stdout, and nothing else (machine output for ``--json``):
    timestamps and dates in ISO 8601 (times in China Standard Time, +08:00), decimals as numbers, keys in the
    order given."""
    import json
    import sys

    sys.stdout.write(json.dumps(_jsonable(data), ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()

