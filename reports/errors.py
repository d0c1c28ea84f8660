"""Errors a reader of the hub's reports can act on: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class ReportError(RuntimeError):
    """A report cannot be made as asked; the message is meant for the user."""


class LedgerError(ReportError):
    """A ledger cannot be made as asked (unknown kind, community or release); ``known`` lists the valid choices."""

    def __init__(self, message: str, known: list[str] | None = None):
        super().__init__(message)
        self.known = list(known or [])


class LedgerConfigError(ReportError):
    """The ledgers file is missing, unreadable or invalid."""


class StatisticsError(ReportError):
    """A statistical report cannot be made as asked (unknown kind, community or release); ``known`` lists
    the valid choices."""

    def __init__(self, message: str, known: list[str] | None = None):
        super().__init__(message)
        self.known = list(known or [])


class ReportConfigError(ReportError):
    """The statistics file (the report kinds) is missing, unreadable or invalid."""
