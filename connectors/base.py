"""What every extractor yields, and the error it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


class ExtractError(RuntimeError):
    """The source returned something that cannot be used; the message names the source and where."""


@dataclass
class Chunk:
    """A page, a file or a block of rows, as received.

    ``records`` that are not objects, or miss the primary key, are quarantined by the landing step.
    ``snapshot`` says the chunks of this extract together hold every live record of the source, so
    records not seen are deleted at the source. ``after_commit`` runs once the chunk's data is
    committed (e.g. to move a processed file aside).
    """

    label: str
    records: list
    total: int | None = None
    snapshot_key: str | None = None  # on a file's last part: its content hash (never ingest a file twice)
    file_name: str | None = None
    bad_rows: list[tuple[str, str]] = field(default_factory=list)  # (reason_code, raw text) that could not be parsed
    after_commit: Callable[[], None] | None = None
    columns: list[str] | None = None  # the header of a file, for schema-drift checks
