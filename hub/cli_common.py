"""What every part of the ``hub`` command shares: the consoles, the one-line error handler, logging."""

from __future__ import annotations

import contextlib
import logging

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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
        err.print(f"[bold red]error:[/] cannot reach the warehouse database: {first}", highlight=False)
        raise typer.Exit(1) from None
    except ProgrammingError as exc:
        if "does not exist" in str(exc.orig):
            err.print("[bold red]error:[/] the warehouse is not set up: run 'hub db upgrade' first", highlight=False)
            raise typer.Exit(1) from None
        raise


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
