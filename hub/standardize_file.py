"""Standardize an ad-hoc resident file (CSV or XLSX) into a CSV with clean values and status codes.

For the lists a department hands over outside any platform: the file is read as text (nothing
is inferred as a number or date), standardized in chunks with the same ``standardize_frame`` the
pipeline uses, and written as UTF-8 with a byte-order mark so that Excel opens it correctly.

An XLSX cell is read as the text it holds; a numeric cell whose value is not exactly an integer
below 2**53 (an 18-digit ID number typed into a number cell) is read as the floating-point number
it is, e.g. ``3.41522199001018e+17``, so its ID number gets the status ``precision_lost`` instead of
digits the file never held. Text cells the output holds that a spreadsheet would run as a formula
(starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) are written with a leading ``'``.
A file with a header row and no records gives an output with the header row only.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from connectors.files import detect_encoding, xlsx_rows
from schemas.masking import mask_name
from schemas.resident import standardize_frame
from schemas.text import formula_safe_frame

CANONICAL_COLUMNS = ("source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address")
STATUS_FIELDS = ("id_number", "name", "birth_date", "sex", "phone", "address")
CHUNK_ROWS = 200_000
HEADER_SEARCH_ROWS = 20  # a title row or two may sit above the header in a spreadsheet


def _delimiter(path: Path, encoding: str) -> str:
    with path.open(encoding=encoding, newline="") as f:
        header = f.readline()
    return max([",", "\t", ";", "|"], key=header.count)


def _check_columns(path: Path, columns) -> None:
    missing = [c for c in CANONICAL_COLUMNS if c not in set(columns)]
    if missing:
        # a file without a header row has data where the names should be: show only identifier-like names
        found = ", ".join(c if re.fullmatch("[A-Za-z_][A-Za-z0-9_ ]{0,40}", c) else mask_name(c) for c in map(str, columns))
        raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)} (found: {found or 'none'})")


def _csv_chunks(path: Path, chunk_rows: int) -> tuple[Iterator[pd.DataFrame], int, str]:
    encoding = detect_encoding(path)
    options = {"encoding": encoding, "sep": _delimiter(path, encoding), "dtype": str, "keep_default_na": False,
               "na_filter": False}
    try:
        header = pd.read_csv(path, nrows=0, **options)
        _check_columns(path, [str(c).strip() for c in header.columns])
        total = sum(len(c) for c in pd.read_csv(path, usecols=[0], chunksize=1_000_000, **options))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path.name}: not a readable CSV file ({str(exc).splitlines()[0]})") from None

    def chunks():
        try:
            for chunk in pd.read_csv(path, chunksize=chunk_rows, **options):
                chunk.columns = [str(c).strip() for c in chunk.columns]
                yield chunk
        except pd.errors.ParserError as exc:  # pandas names the line and the field count, never a value
            raise ValueError(f"{path.name}: not a readable CSV file ({str(exc).splitlines()[0]})") from None

    return chunks(), total, encoding


def _xlsx_chunks(path: Path, chunk_rows: int) -> tuple[Iterator[pd.DataFrame], int, str]:
    try:  # cells as the drop-file extractor reads them: text as is, numbers that lost digits as floats
        rows = xlsx_rows(path)
    except Exception as exc:  # a corrupt or password-protected workbook: say so, not a stack trace
        raise ValueError(f"{path.name}: cannot be read as an XLSX workbook ({type(exc).__name__})") from None
    sheet = pd.DataFrame(rows, dtype=object)
    header_row = next((i for i, row in sheet.head(HEADER_SEARCH_ROWS).iterrows()
                       if len(set(row.dropna().astype(str).str.strip()) & set(CANONICAL_COLUMNS)) >= 2), None)
    if header_row is None:
        _check_columns(path, sheet.iloc[0].dropna().astype(str).tolist() if len(sheet) else [])
    columns = [str(c).strip() if pd.notna(c) else f"column_{i + 1}" for i, c in enumerate(sheet.iloc[header_row])]
    _check_columns(path, columns)
    data = sheet.iloc[header_row + 1:].set_axis(columns, axis=1).reset_index(drop=True)
    data = data.dropna(how="all")  # blank rows at the end of a sheet are not records
    return (data.iloc[i:i + chunk_rows] for i in range(0, len(data), chunk_rows)), len(data), "xlsx"


def resident_file_chunks(path: Path, chunk_rows: int = CHUNK_ROWS) -> tuple[Iterator[pd.DataFrame], int, str]:
    """(chunks of rows as text, row count, encoding) of a CSV or XLSX resident file, its columns checked."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        return _csv_chunks(path, chunk_rows)
    if suffix in (".xlsx", ".xlsm"):
        return _xlsx_chunks(path, chunk_rows)
    raise ValueError(f"{path.name}: not a CSV or XLSX file")


def read_resident_file(path: Path) -> pd.DataFrame:
    """Every row of a CSV or XLSX resident file as text, with its canonical columns checked.

    Raises ``ValueError`` naming the file when it cannot be read or lacks a column.
    """
    chunks, _, _ = resident_file_chunks(path)
    parts = list(chunks)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(CANONICAL_COLUMNS))
    return frame.fillna("").astype(str)


def standardize_file(input: Path, out: Path, *, sex_codes: dict[str, int] | None = None,
                     date_formats: list[str] | None = None, default_county: str | None = None,
                     on_progress: Callable[[int, int], None] | None = None, chunk_rows: int = CHUNK_ROWS) -> dict:
    """Standardize a CSV (UTF-8, UTF-8 with BOM, GBK, GB18030) or XLSX file of resident records into ``out``.

    The file needs the columns ``source, source_record_id, name, id_number, sex, birth_date, phone,
    address``; other columns are carried through. ``out`` is a UTF-8 CSV (with BOM) holding the raw
    values beside the clean values and status codes. Returns the row count, the input encoding and
    the status counts per field. Raises ``ValueError`` naming the file for unreadable input.
    """
    path, out = Path(input), Path(out)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    # the options are checked before the file is read: a wrong code map should fail at once
    standardize_frame(pd.DataFrame(columns=list(CANONICAL_COLUMNS), dtype=str), sex_codes=sex_codes,
                      date_formats=date_formats, default_county=default_county)
    chunks, total, encoding = resident_file_chunks(path, chunk_rows)

    counts = {field: Counter() for field in STATUS_FIELDS}
    done, header_written = 0, False
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # never leave a half-written result under the final name
    try:
        with partial.open("w", encoding="utf-8-sig", newline="") as f:
            for chunk in chunks:
                std = standardize_frame(chunk, sex_codes=sex_codes, date_formats=date_formats, default_county=default_county)
                formula_safe_frame(std).to_csv(f, header=not header_written, index=False, lineterminator="\r\n")
                header_written = True
                for field in STATUS_FIELDS:
                    counts[field].update(std[f"{field}_status"].value_counts().to_dict())
                done += len(std)
                if on_progress:
                    on_progress(done, total)
            if not header_written:  # a header-only file: the output has the header row only
                empty = standardize_frame(pd.DataFrame(columns=list(CANONICAL_COLUMNS), dtype=str))
                empty.to_csv(f, index=False, lineterminator="\r\n")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {"rows": done, "encoding": encoding,
            **{f"{field}_status": {k: int(v) for k, v in sorted(c.items())} for field, c in counts.items()}}
