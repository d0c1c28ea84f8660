"""File-drop extractor: CSV (UTF-8 with or without BOM, GBK, GB18030) and XLSX ledgers.

Each file is one snapshot of the source, read in parts of 20,000 rows, once it has parsed whole.
A title row above the header and two-level merged headers are handled: the header row is the row
that names the most of the source's declared fields. A file whose content was ingested before is
never ingested again; processed files are moved aside into ``processed/``.

What the hub does with a file that is not a clean snapshot:

- A file still being written is not read yet: its size and modification time must stay the same
  for the source's ``settle_seconds`` (one watch for all the files of a run; a file last changed
  longer ago than that needs no wait), and where the source declares a ``completion_marker`` the
  marker file must be there. Such a file is left in place for a later run.
- A file that did not parse whole is *incomplete*: a quote that opens and never closes (the lines it
  would swallow are read as rows of their own and the line with the quote is quarantined), a last
  line without a line break (the file was cut off), or a line that cannot be read as CSV. Its good
  rows land, but it deletes nothing; the last part of the file carries the reason (``Chunk.problem``).
- A row with too few or too many cells is quarantined (``bad_row_shape``); the file stays a
  snapshot, and the row's key, where its key cell can be read, counts as seen.
- A file that cannot be read at all (a damaged or encrypted workbook, an unknown encoding, no header
  row, a column named twice, data under a column without a name) is *rejected*: nothing of it lands.

Incomplete and rejected files are moved into ``rejected/`` beside a ``<file>.reason.txt`` once the
load has committed; the files after them are read in the same run.

Drop files hold personal data. ``processed/`` and ``rejected/`` are readable by the hub's user only
(folders 0700, files 0600, whatever mode the file arrived with). A processed file is kept for
``HUB_DROP_RETENTION_DAYS`` (default 30) days from when the hub took it, then deleted by the next
ingest of its source (the log says how many); rejected files stay until someone deals with them.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts
from connectors.drop_aside import drop_retention_days, expire_processed, marker_of, move_aside
from connectors.registry import FileSource

log = logging.getLogger("connectors.files")

_BLOCK = 1 << 20
#: the longest CSV field read (in characters); a longer one makes its line unreadable. The landing
#: step quarantines fields far shorter than this; the limit only keeps one line from filling memory.
FIELD_LIMIT = 16 << 20
#: a quoted field may span at most this many lines; a quote still open after them is a stray quote
RECORD_LINES = 100
csv.field_size_limit(max(csv.field_size_limit(), FIELD_LIMIT))


def detect_encoding(path: Path, *, cut_tail: bool = False) -> str:
    """UTF-8 (with or without BOM) or GB18030 (a superset of GBK and GB2312), by decoding the whole file.

    A file that is UTF-8 but for a few bad bytes is refused rather than read as GB18030: UTF-8
    Chinese text often decodes as GB18030 without error, into nonsense. With ``cut_tail``, a character
    cut off at the very end of the file does not count: read with ``errors="replace"``, it ends a
    truncated last line, which the caller reports.
    """
    with path.open("rb") as f:
        if f.read(3) == codecs.BOM_UTF8:
            return "utf-8-sig"
    errors, non_ascii, first_error = 0, 0, None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with path.open("rb") as f:
        offset = 0
        while block := f.read(_BLOCK):
            non_ascii += int(np.count_nonzero(np.frombuffer(block, dtype=np.uint8) >= 0x80))
            found = decoder.decode(block).count("\ufffd")
            if found and first_error is None:
                first_error = offset
            errors += found
            offset += len(block)
    if not cut_tail:
        errors += decoder.decode(b"", final=True).count("\ufffd")
    if errors == 0:
        return "utf-8"
    if errors * 10 < non_ascii:
        raise ValueError(f"{path.name}: mostly UTF-8 but with {errors} invalid byte sequence(s) (first in the block "
                         f"at byte {first_error}); re-export it as UTF-8 or GBK")
    try:
        decoder = codecs.getincrementaldecoder("gb18030")()
        with path.open("rb") as f:
            while block := f.read(_BLOCK):
                decoder.decode(block)
            if not cut_tail:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: neither UTF-8 nor GBK/GB18030 ({exc.reason})") from None
    return "gb18030"


def _cell(value) -> str | None:
    """A workbook cell as text. Numbers keep the digits the file holds: a whole number below 2**53 is
    written as an integer, any other number as Python writes the float (``3.41522199001018e+17``), so an
    18-digit ID number Excel kept as a number (15 significant digits) never gains digits it did not have."""
    if value is None:
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def xlsx_rows(path: Path) -> list[list[str | None]]:
    """All rows of the first sheet, with merged cells' value repeated over the merged range.

    A workbook that cannot be opened (damaged, cut off, encrypted, an old .xls) is an :class:`ExtractError`.
    """
    from openpyxl import load_workbook

    with path.open("rb") as f:
        if f.read(8) == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # an OLE container: encrypted .xlsx or old .xls
            raise ExtractError(f"{path.name}: an encrypted workbook or an old-format .xls file; save it as an .xlsx "
                               "without a password")
    try:
        wb = load_workbook(path, read_only=False, data_only=True)
        ws = wb.worksheets[0]
        rows = [[_cell(v) for v in row] for row in ws.iter_rows(values_only=True)]
        for rng in ws.merged_cells.ranges:
            value = rows[rng.min_row - 1][rng.min_col - 1]
            for r in range(rng.min_row, rng.max_row + 1):
                for c in range(rng.min_col, rng.max_col + 1):
                    rows[r - 1][c - 1] = value
        wb.close()
    except Exception as exc:  # openpyxl and zipfile raise many kinds; the type says enough, the text may hold data
        raise ExtractError(f"{path.name}: cannot be read as a workbook ({type(exc).__name__}); the file may be "
                           "damaged or cut off") from None
    return rows


@dataclass
class BadLine:
    """A line of a CSV file that could not be read as a row; ``cells`` holds what could be read of it."""

    reason: str  # quarantine reason code
    detail: str  # where and why, without its content
    text: str
    cells: list[str]


_END = (0, "\n")  # handed to the reader after the file's last line: consumed inside a field, a quote never closed


class _Runaway(Exception):
    """A quoted field went on for more than RECORD_LINES lines."""


class _Lines:
    """The physical lines of a text file, numbered; the lines of the record being read are kept to be read again."""

    def __init__(self, lines: Iterable[str]):
        self._source, self._again, self.taken = iter(lines), deque(), []
        self._number, self._ended = 0, False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if len(self.taken) >= RECORD_LINES:
            raise _Runaway
        if self._again:
            item = self._again.popleft()
        elif self._ended:
            raise StopIteration
        else:
            text = next(self._source, None)
            if text is None:
                self._ended, item = True, _END
            else:
                self._number += 1
                item = (self._number, text)
        self.taken.append(item)
        return item[1]

    def take(self) -> list[tuple[int, str]]:
        taken, self.taken = self.taken, []
        return taken

    def read_again(self, items: list[tuple[int, str]]) -> None:
        self._again.extendleft(reversed(items))


def _broken(first: tuple[int, str], why: str) -> BadLine:
    """The first line of a record that did not read whole; the cells before the one that broke are kept."""
    number, text = first
    try:
        cells = next(csv.reader([text]), [])[:-1]
    except csv.Error:
        cells = []
    if not text.endswith(("\n", "\r")):
        return BadLine("truncated_line", f"line {number}: the last line is cut off (no line break at the end of "
                                         "the file)", text, cells)
    return BadLine("unclosed_quote", f"line {number}: {why}; the lines after it were read as rows", text, cells)


def csv_rows(path: Path, fields: Collection[str] = ()) -> Iterator[tuple[int, list[str] | BadLine]]:
    """(line number, cells) of a CSV file, decoded in its detected encoding, read lazily.

    A record is one physical line, or several when a quoted field holds line breaks (a multi-line
    address): such a record is accepted when its quote closes within RECORD_LINES lines and it has as
    many cells as the header (the first row naming two of ``fields``). Otherwise the quote is a stray
    one: its line comes back as a :class:`BadLine` and the lines after it are read again as rows of
    their own, so one stray quote loses one line, not the rest of the file. A last line without a line
    break, and a line the csv module cannot read, come back as a :class:`BadLine` too. Every record of
    the file is yielded exactly once (as cells or as a bad line), so counting them counts the file's
    physical records: its non-blank data lines, a multi-line quoted field counting once.
    """
    try:
        encoding = detect_encoding(path, cut_tail=True)
    except ValueError as exc:
        raise ExtractError(str(exc)) from None
    wanted, width = set(fields), None
    with path.open(encoding=encoding, newline="", errors="replace") as f:  # only a cut-off last character is replaced
        lines = _Lines(f)
        while True:
            try:
                for cells in csv.reader(lines):
                    taken = lines.take()
                    if taken[-1] is _END and len(taken) == 1:
                        return
                    if taken[-1] is _END or (len(taken) > 1 and not _fits(cells, width)):
                        yield taken[0][0], _broken(taken[0], "a quote opens here and never closes")
                        lines.read_again(taken[1:])
                        break
                    if not taken[-1][1].endswith(("\n", "\r")):
                        yield taken[0][0], BadLine("truncated_line", f"line {taken[-1][0]}: the last line is cut off "
                                                   "(no line break at the end of the file)",
                                                   "".join(t for _, t in taken), cells[:-1])
                        continue
                    if width is None and len(wanted & {c.strip() for c in cells}) >= 2:
                        width = len(cells)
                    yield taken[0][0], cells
                else:
                    return
            except _Runaway:
                taken = lines.take()
                yield taken[0][0], _broken(taken[0], "a quote opens here and is still open "
                                                     f"{RECORD_LINES} lines later")
                lines.read_again(taken[1:])
            except csv.Error as exc:
                taken = lines.take()
                yield taken[0][0], BadLine("unreadable_line", f"line {taken[0][0]}: cannot be read as CSV ({exc})",
                                           taken[0][1], [])
                lines.read_again(taken[1:])


def _fits(cells: list[str], width: int | None) -> bool:
    """Whether a multi-line record has the header's cells (empty cells after the last column are allowed)."""
    if width is None:
        return True
    return len(cells) == width or (len(cells) > width and not any(cells[width:]))


def header_row(rows: list[list], fields: list[str], name: str) -> int:
    """Index of the row that names the most declared fields (title and group rows sit above it)."""
    wanted = set(fields)
    scores = [len(wanted & {str(c).strip() for c in row if c}) for row in rows[:20]]
    best = max(range(len(scores)), key=lambda i: (scores[i], i)) if scores else 0
    if not scores or scores[best] < 2:
        raise ExtractError(f"{name}: no header row names the source's fields (expected some of {fields[:5]} …)")
    return best


@dataclass
class Part:
    """Up to ``chunk_rows`` records of a file, its bad rows, the keys of bad rows whose key cell could be
    read, and what makes the file incomplete (the lines that did not read whole)."""

    header: list[str]
    records: list[dict] = field(default_factory=list)
    bad: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def quarantine(self, name: str, reason: str, detail: str, text: str, cells: list, key_at: int | None) -> None:
        self.bad.append((reason, f"{name} {detail}\n{text}"))
        if key_at is not None and key_at < len(cells) and cells[key_at] not in (None, ""):
            self.keys.append(str(cells[key_at]).strip())


def _cells(row) -> list:
    return row.cells if isinstance(row, BadLine) else row


def check_header(header: list[str], name: str) -> None:
    """A column named twice is a schema error naming the file and the column."""
    where: dict[str, list[int]] = {}
    for i, column in enumerate(header, start=1):
        if column:
            where.setdefault(column, []).append(i)
    twice = [(c, at) for c, at in where.items() if len(at) > 1]
    if twice:
        column, at = twice[0]
        raise ExtractError(f"{name}: column {column!r} appears {len(at)} times in the header (columns "
                           f"{', '.join(map(str, at))}); each column needs a name of its own")


def _check_unnamed(rows: Iterable[tuple[int, list | BadLine]], header: list[str], after: int, name: str) -> None:
    """Data under a column without a name is a schema error naming the file and the column."""
    unnamed = [i for i, column in enumerate(header) if not column]
    for number, row in rows:
        if number <= after or isinstance(row, BadLine):
            continue
        for i in unnamed:
            if i < len(row) and row[i] not in (None, ""):
                raise ExtractError(f"{name}: column {i + 1} has no name in the header but holds data (line {number});"
                                   " name the column or remove it")


def records_from_rows(rows_of: Callable[[], Iterable[tuple[int, list | BadLine]]], name: str, fields: list[str], *,
                      key: str | None = None, chunk_rows: int = 20_000) -> Iterator[Part]:
    """The parts of a table whose numbered rows ``rows_of()`` gives (called twice when the header has a
    column without a name, to look for data under it before anything is read)."""
    rows = iter(rows_of())
    head = list(itertools.islice(rows, 20))
    h = header_row([_cells(r) for _, r in head], fields, name)
    header = [str(c).strip() if c is not None else "" for c in _cells(head[h][1])]
    check_header(header, name)
    if "" in header:
        _check_unnamed(rows_of(), header, head[h][0], name)
    key_at = header.index(key) if key in header else None
    part = Part(header)
    for number, row in itertools.chain(head[h + 1:], rows):
        if isinstance(row, BadLine):
            part.quarantine(name, row.reason, row.detail, row.text, row.cells, key_at)
            part.problems.append(row.detail)
            continue
        if not any(c not in (None, "") for c in row):
            continue
        if len(row) != len(header):
            extra = row[len(header):]
            if len(row) > len(header) and not any(c not in (None, "") for c in extra):
                row = row[: len(header)]
            else:
                part.quarantine(name, "bad_row_shape", f"line {number}: {len(row)} cells, header has {len(header)}",
                                ",".join("" if c is None else str(c) for c in row), row, key_at)
                continue
        part.records.append({k: v for k, v in zip(header, row) if k})
        if len(part.records) >= chunk_rows:
            yield part
            part = Part(header)
    yield part


def drop_folder(connection: ConnectionParts) -> Path:
    """The drop folder a connection names (``extra.path``, or ``host``)."""
    path = connection.extra.get("path") or connection.host
    if not path:
        raise ConnectionConfigError(f"connection {connection.conn_id!r} names no folder (set extra.path)")
    return Path(path)


class FileExtractor:
    """Nightly file drops: every new file that parsed whole is one complete snapshot of the source."""

    reads_cursor = False
    marks_snapshots = True

    def extract(self, source: FileSource, connection: ConnectionParts, state: ExtractState) -> Iterator[Chunk]:
        return fetch(source, drop_folder(connection), already=state.ingested_files, last_file=state.last_file,
                     stamps=state.file_stamps)


def ready_files(source: FileSource, folder: Path) -> list[Path]:
    """The files of ``source`` in ``folder`` that are written completely, oldest name first.

    Files still changing over one watch of ``settle_seconds`` (for all files at once), and files
    without the completion marker the source declares, are left for a later run (logged).
    """
    files = [p for p in sorted(folder.glob(source.resource)) if p.is_file() and not p.name.endswith(".part")]
    if source.completion_marker:
        markers = {marker_of(p, source) for p in files}
        files = [p for p in files if p not in markers]
        for p in [p for p in files if not marker_of(p, source).exists()]:
            log.info("%s: %s has no completion marker %s yet; left for a later run", source.name, p.name,
                     marker_of(p, source).name)
            files.remove(p)
    return _settled(files, source.settle_seconds, source.name)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        s = path.stat()
    except FileNotFoundError:
        return None
    return s.st_size, s.st_mtime_ns


def _settled(files: list[Path], seconds: float, name: str) -> list[Path]:
    """The files whose size and modification time stayed the same for ``seconds``: one watch for all,
    only as long as the youngest file needs (a file last changed longer ago than that has settled)."""
    before = {p: _stat(p) for p in files}
    stamps = [s[1] / 1e9 for s in before.values() if s]
    if seconds > 0 and stamps:
        time.sleep(min(seconds, max(0.0, seconds - (time.time() - max(stamps)))))
    ready = []
    for p in files:
        if before[p] is None or _stat(p) != before[p]:
            log.info("%s: %s is still being written; left for a later run", name, p.name)
        else:
            ready.append(p)
    return ready


def fetch(source: FileSource, folder: Path, *, already: Collection[str], last_file: str | None = None,
          retention_days: float | None = None, stamps: Mapping[tuple[str, int, int], int] | None = None
          ) -> Iterator[Chunk]:
    """The chunks of every new file matching the source's glob that is written completely, oldest name first.

    A file loaded before is skipped unread (one chunk without records, ``unchanged``, that moves it aside): by
    its name, size and modification time when ``stamps`` (those of the files loaded before → the batch that
    loaded each) hold them, else by its content hash (``already``). A new file whose name sorts before
    ``last_file`` (the newest file already taken as a snapshot) is an older export arriving late: taken as a
    snapshot it would bring back records deleted or changed since, so it is rejected, unread. First, the
    source's processed files past ``retention_days`` (default :func:`drop_retention_days`) are deleted."""
    if not folder.is_dir():
        raise ExtractError(f"{source.name}: the drop folder {folder} does not exist")
    expire_processed(source, folder, drop_retention_days() if retention_days is None else retention_days)
    stamps = stamps or {}
    for path in ready_files(source, folder):
        marker = marker_of(path, source)
        stamp = _stat(path)
        if stamp is not None and (path.name, *stamp) in stamps:
            yield _unchanged(source, path, marker, f"loaded in batch {stamps[(path.name, *stamp)]}, and its size and "
                             "modification time have not changed since")
            continue
        try:
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
        except OSError as exc:
            yield _rejected(path, marker, f"{path.name}: cannot be read ({exc.strerror or type(exc).__name__})")
            continue
        if digest in already:  # ingested before (perhaps the move aside was interrupted): only move it
            yield _unchanged(source, path, marker, "its content equals a file loaded before")
            continue
        if last_file and path.name < last_file:
            yield _rejected(path, marker, f"{path.name}: older than {last_file}, which was loaded already; an older"
                            " export would bring back what was deleted or changed since")
            continue
        yield from _file_chunks(source, path, digest, marker, stamp)


def _unchanged(source: FileSource, path: Path, marker: Path | None, why: str) -> Chunk:
    """The chunk of a file loaded before: nothing of it is read or landed; it is only moved into processed/."""
    log.info("%s: %s skipped, unchanged: %s; nothing read, it is moved into processed/", source.name, path.name, why)
    return Chunk(f"file {path.name} (skipped, unchanged: {why})", [], file_name=path.name, unchanged=True,
                 after_commit=move_aside(path, "processed", marker))


def _file_chunks(source: FileSource, path: Path, digest: str, marker: Path | None,
                 stamp: tuple[int, int] | None = None) -> Iterator[Chunk]:
    """One chunk per part of a file; the last one carries the file's hash and, if it did not parse whole, why."""
    problems: list[str] = []
    try:
        if path.suffix.lower() in (".xlsx", ".xlsm"):
            numbered = list(enumerate(xlsx_rows(path), start=1))
            parts = records_from_rows(lambda: numbered, path.name, source.fields, key=source.primary_key)
        else:
            parts = records_from_rows(lambda: csv_rows(path, source.fields), path.name, source.fields,
                                      key=source.primary_key)
        part, start = next(parts), 1
        for following in itertools.chain(parts, [None]):
            problems += part.problems
            last = following is None  # the file's snapshot is complete with its last part, if it read whole
            yield Chunk(f"file {path.name} rows {start}-{start + len(part.records) - 1}", part.records,
                        snapshot_key=digest if last else None, file_stamp=stamp if last else None,
                        file_name=path.name, bad_rows=part.bad,
                        bad_row_keys=part.keys, columns=part.header,
                        problem=_incomplete(path.name, problems) if last else None,
                        after_commit=move_aside(path, "processed", marker) if last else None,
                        reject=move_aside(path, "rejected", marker) if last else None)
            start += len(part.records)
            part = following
    except (ExtractError, OSError) as exc:
        reason = str(exc) if isinstance(exc, ExtractError) else f"{path.name}: cannot be read ({exc.strerror})"
        yield _rejected(path, marker, reason)


def _incomplete(name: str, problems: list[str]) -> str | None:
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more line(s) that did not read whole)" if len(problems) > 1 else ""
    return f"{name}: {problems[0]}{more}"


def _rejected(path: Path, marker: Path | None, reason: str) -> Chunk:
    """The chunk of a file that cannot be read: no records; it goes to rejected/ with the reason."""
    return Chunk(f"file {path.name}", [], file_name=path.name, problem=reason, unreadable=True,
                 reject=move_aside(path, "rejected", marker))
