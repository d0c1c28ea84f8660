"""The extractor interface: what every kind of source is given, what it yields, the error it raises.

An extractor turns (source, connection, state) into chunks: ``extract(source, connection, state)``
yields :class:`Chunk` objects as they arrive. The source is the registry entry (data: paging,
cursor field, glob, table), the connection holds where the platform is and the secrets, and the
state is what the warehouse remembers from earlier loads. :mod:`connectors.kinds` says which
extractor serves each kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from connectors.connections import ConnectionParts
    from connectors.registry import AnySource


class ExtractError(RuntimeError):
    """The source returned something that cannot be used; the message names the source and where."""


@dataclass
class Chunk:
    """A page, a file or a block of rows, as received.

    ``records`` that are not objects, or miss the primary key, are quarantined by the landing step.
    ``snapshot_key`` says the chunks of this snapshot (a file's parts) together hold every live
    record of the source, so records not seen are deleted at the source — unless ``problem`` says why
    the file is not whole (then its records land and nothing is deleted). ``after_commit`` runs once
    the chunk's data is committed (e.g. to move a processed file aside); ``reject`` instead, with the
    reason, for a file that is incomplete or cannot be read.
    """

    label: str
    records: list
    total: int | None = None
    snapshot_key: str | None = None  # on a file's last part: its content hash (never ingest a file twice)
    file_name: str | None = None
    bad_rows: list[tuple[str, str]] = field(default_factory=list)  # (reason_code, raw text) that could not be parsed
    after_commit: Callable[[], None] | None = None
    columns: list[str] | None = None  # the header of a file, for schema-drift checks
    bad_row_keys: list[str] = field(default_factory=list)  # keys read from bad rows: seen in the snapshot
    problem: str | None = None  # on a file's last part: why it is not a whole snapshot (one line, no personal data)
    unreadable: bool = False  # the file could not be read at all (``problem`` says why): nothing of it lands
    reject: Callable[[str], None] | None = None  # moves the file into rejected/ with the reason, once committed
    file_stamp: tuple[int, int] | None = None  # on a file's last part: its (size, modification time in ns)
    unchanged: bool = False  # a file loaded before, skipped unread (``label`` says why): only moved aside


@dataclass(frozen=True)
class ExtractState:
    """What the warehouse remembers of a source's earlier loads, and how long to wait for it."""

    since: str | None = None  # the cursor less the overlap window: extract what changed since (None: everything)
    ingested_files: frozenset[str] = frozenset()  # content hashes of the files taken before
    #: (file name, size, modification time in ns) of the files taken before → the batch that took each
    file_stamps: Mapping[tuple[str, int, int], int] = field(default_factory=dict)
    last_file: str | None = None  # the name of the newest file taken as a complete snapshot
    timeout: float = 30  # seconds to wait for one answer of a remote platform
    retry_after_cap: float = 60  # at most this many seconds are waited when a platform asks to retry later
    deadline: float = 1800  # seconds an extract from a remote platform may take in all


class Extractor(Protocol):
    """One kind of source. Each kind's module takes from the connection parts what it needs."""

    #: The kind extracts only what changed since ``state.since`` when it is given (REST, SQL).
    reads_cursor: ClassVar[bool]
    #: The kind marks its own snapshots: a chunk with a ``snapshot_key`` ends one complete copy of
    #: the source (a file drop). Otherwise an extract without a cursor is the complete copy, and
    #: records it did not send were deleted at the source.
    marks_snapshots: ClassVar[bool]

    def extract(self, source: AnySource, connection: ConnectionParts, state: ExtractState) -> Iterator[Chunk]:
        """The chunks of one extract, in order."""
        ...
