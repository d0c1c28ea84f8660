"""File-drop extractor: CSV (UTF-8 with or without BOM, GBK, GB18030) and XLSX ledgers.

Each file is one snapshot of the source, read in parts of 20,000 rows. A title row above the header and two-level merged
headers are handled: the header row is the row that names the most of the source's declared
fields. A file whose content was ingested before is never ingested again; processed files are
moved aside into ``processed/``.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import itertools
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

import numpy as np

from connectors.base import Chunk, ExtractError, ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts
from connectors.registry import FileSource

_BLOCK = 1 << 20


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM) or GB18030 (a superset of GBK and GB2312), by decoding the whole file.

    A file that is UTF-8 but for a few bad bytes is refused rather than read as GB18030: UTF-8
    Chinese text often decodes as GB18030 without error, into nonsense.
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
            decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: neither UTF-8 nor GBK/GB18030 ({exc.reason})") from None
    return "gb18030"


def _cell(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def xlsx_rows(path: Path) -> list[list[str | None]]:
    """All rows of the first sheet, with merged cells' value repeated over the merged range."""
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=False, data_only=True)
    ws = wb.worksheets[0]
    rows = [[_cell(v) for v in row] for row in ws.iter_rows(values_only=True)]
    for rng in ws.merged_cells.ranges:
        value = rows[rng.min_row - 1][rng.min_col - 1]
        for r in range(rng.min_row, rng.max_row + 1):
            for c in range(rng.min_col, rng.max_col + 1):
                rows[r - 1][c - 1] = value
    wb.close()
    return rows


def csv_rows(path: Path) -> Iterator[list[str]]:
    """Rows of a CSV file, decoded in its detected encoding, read lazily."""
    try:
        encoding = detect_encoding(path)
    except ValueError as exc:
        raise ExtractError(str(exc)) from None
    with path.open(encoding=encoding, newline="") as f:
        yield from csv.reader(f)


def header_row(rows: list[list], fields: list[str], name: str) -> int:
    """Index of the row that names the most declared fields (title and group rows sit above it)."""
    wanted = set(fields)
    scores = [len(wanted & {str(c).strip() for c in row if c}) for row in rows[:20]]
    best = max(range(len(scores)), key=lambda i: (scores[i], i)) if scores else 0
    if not scores or scores[best] < 2:
        raise ExtractError(f"{name}: no header row names the source's fields (expected some of {fields[:5]} …)")
    return best


def records_from_rows(rows: Iterable[list], name: str, fields: list[str], *, chunk_rows: int = 20_000
                      ) -> Iterator[tuple[list[str], list[dict], list[tuple]]]:
    """(header, records, bad rows) from a table's rows, ``chunk_rows`` records at a time."""
    rows = iter(rows)
    head = list(itertools.islice(rows, 20))
    h = header_row(head, fields, name)
    header = [str(c).strip() if c is not None else "" for c in head[h]]
    records, bad = [], []
    for number, row in enumerate(itertools.chain(head[h + 1:], rows), start=h + 2):
        if not any(c not in (None, "") for c in row):
            continue
        if len(row) != len(header):
            extra = row[len(header):]
            if len(row) > len(header) and not any(c not in (None, "") for c in extra):
                row = row[: len(header)]
            else:
                bad.append(("bad_row_shape", f"{name} line {number}: {len(row)} cells, header has {len(header)}",
                            ",".join("" if c is None else str(c) for c in row)))
                continue
        records.append({k: v for k, v in zip(header, row) if k})
        if len(records) >= chunk_rows:
            yield header, records, bad
            records, bad = [], []
    yield header, records, bad


def drop_folder(connection: ConnectionParts) -> Path:
    """The drop folder a connection names (``extra.path``, or ``host``)."""
    path = connection.extra.get("path") or connection.host
    if not path:
        raise ConnectionConfigError(f"connection {connection.conn_id!r} names no folder (set extra.path)")
    return Path(path)


class FileExtractor:
    """Nightly file drops: every new file is one complete snapshot of the source (its last part says so)."""

    reads_cursor = False
    marks_snapshots = True

    def extract(self, source: FileSource, connection: ConnectionParts, state: ExtractState) -> Iterator[Chunk]:
        return fetch(source, drop_folder(connection), already=state.ingested_files)


def fetch(source: FileSource, folder: Path, *, already: Collection[str]) -> Iterator[Chunk]:
    """One chunk per new file matching the source's glob, oldest name first."""
    if not folder.is_dir():
        raise ExtractError(f"{source.name}: the drop folder {folder} does not exist")
    for path in sorted(folder.glob(source.resource)):
        if not path.is_file() or path.name.endswith(".part"):
            continue
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        move = _mover(path)
        if digest in already:  # ingested before (perhaps the move aside was interrupted)
            move()
            continue
        rows = xlsx_rows(path) if path.suffix.lower() in (".xlsx", ".xlsm") else csv_rows(path)
        parts = records_from_rows(rows, path.name, source.fields)
        part = next(parts)
        start = 1
        for following in itertools.chain(parts, [None]):
            header, records, bad = part
            last = following is None  # the file's snapshot is complete with its last part
            yield Chunk(f"file {path.name} rows {start}-{start + len(records) - 1}", records,
                        snapshot_key=digest if last else None, file_name=path.name,
                        bad_rows=[(reason, f"{detail}\n{raw}") for reason, detail, raw in bad],
                        after_commit=move if last else None, columns=header)
            start += len(records)
            part = following


def _mover(path: Path):
    def move() -> None:
        target = path.parent / "processed"
        target.mkdir(exist_ok=True)
        if path.exists():
            path.replace(target / path.name)

    return move
