"""Shared text plumbing for the standardizers: nullable Arrow strings, NFKC, work on distinct values.

Departmental columns repeat a lot (sex codes, dates, town names, shared household phones), so the
standardizers work on the distinct values of a column and broadcast the result back to the rows.
Regular expressions run through pyarrow (RE2), whose classes are ASCII-only: patterns spell out
the non-ASCII characters they mean instead of using ``\\s``, ``\\d`` or ``\\w``.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

TEXT = pd.StringDtype("pyarrow")

# Python's \s, written out for RE2 (NFKC has already folded most of them into a plain space)
WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# zero-width characters, byte-order marks and C0/C1 control characters: invisible in a form, present in the data
INVISIBLE = "\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u200b-\u200f\u2060\ufeff"
BLANKS = f"[{WHITESPACE}{INVISIBLE}]+"

NULL = pa.scalar(None, pa.large_string())


def lit(value: str) -> pa.Scalar:
    """A string constant of the type the Arrow text columns have (kernels do not mix string widths)."""
    return pa.scalar(value, pa.large_string())


def _scrub(value: object) -> str | None:
    """One value as text that UTF-8 can hold: lone surrogates (possible in JSON) become U+FFFD."""
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value).encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_text(raw: pd.Series) -> pd.Series:
    """A column of anything as nullable Arrow strings; None/NaN become NA, other non-strings their ``str()``."""
    if isinstance(raw.dtype, pd.StringDtype) and raw.dtype.storage == "pyarrow" and raw.dtype.na_value is pd.NA:
        return raw
    try:
        return raw.astype(TEXT)
    except (UnicodeError, pa.ArrowException, TypeError, ValueError):
        values = raw.astype(object)
        try:
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
        except TypeError:  # unhashable cells (a JSON list or object): rare enough to take one by one
            return pd.Series([_scrub(v) for v in values], index=raw.index, dtype=TEXT)
        clean = pd.array([_scrub(v) for v in uniques], dtype=TEXT)
        return pd.Series(clean.take(codes, allow_fill=True), index=raw.index, dtype=TEXT)


def arrow(s: pd.Series) -> pa.Array:
    """The Arrow strings behind a text series (as one array)."""
    return as_text(s).array.__arrow_array__().combine_chunks()


def series(values: pa.Array, index: pd.Index | None = None) -> pd.Series:
    """Arrow strings as a :data:`TEXT` series."""
    if values.type != pa.large_string():
        values = values.cast(pa.large_string())
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([values])), index=index)


def flag(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow boolean result as a numpy mask (null is False)."""
    return pc.fill_null(values, False).to_numpy(zero_copy_only=False)


def nfkc(values: pa.Array) -> pa.Array:
    """NFKC (full-width digits and letters, ideographic space, compatibility ideographs).

    ASCII is NFKC-stable, so only the non-ASCII values are normalized, in Python: pyarrow's
    ``utf8_normalize`` does not compose, which would tear Hangul and accented letters apart.
    """
    non_ascii = flag(pc.invert(pc.string_is_ascii(values)))
    if not non_ascii.any():
        return values
    normalized = [unicodedata.normalize("NFKC", v) for v in pc.filter(values, non_ascii).to_pylist()]
    return pc.replace_with_mask(values, pa.array(non_ascii), pa.array(normalized, type=values.type))


def squeeze(values: pa.Array) -> pa.Array:
    """Remove every whitespace, zero-width and control character."""
    return pc.replace_substring_regex(values, BLANKS, "")


def distinct(raw: pd.Series) -> tuple[np.ndarray, pa.Array]:
    """(codes, distinct values) of a column as text; NA is one of the distinct values."""
    codes, uniques = pd.factorize(as_text(raw), use_na_sentinel=False)
    return codes, arrow(pd.Series(uniques, dtype=TEXT))


def expand(per_value: pd.DataFrame, codes: np.ndarray, index: pd.Index) -> pd.DataFrame:
    """Broadcast a frame computed once per distinct value back onto the rows."""
    out = per_value.take(codes)
    out.index = index
    return out


def blank_or_null(values: pa.Array) -> np.ndarray:
    """Null or empty (callers squeeze first)."""
    return flag(pc.or_kleene(pc.is_null(values), pc.equal(pc.utf8_length(values), 0)))


def map_distinct(values: pa.Array, func) -> pa.Array:
    """Apply a scalar string function once per distinct non-null value (for what has no vectorized form)."""
    uniques = pc.unique(values).drop_null()
    mapped = pa.array([func(v) for v in uniques.to_pylist()], type=pa.large_string())
    return pc.take(mapped, pc.index_in(values, value_set=uniques))


# ------------------------------------------------------------------ formula-safe output (CSV injection)
#: A spreadsheet reads a cell that starts with one of these as a formula (OWASP CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_GUARD = "'"


def _plain_number(text: str) -> bool:
    """``-5``, ``+8613812345678``, ``-0.25``: a sign and digits only, which no spreadsheet runs as anything."""
    body = text[1:] if text[:1] in "+-" else text
    whole, _, fraction = body.partition(".")
    return whole.isascii() and whole.isdigit() and (not fraction or (fraction.isascii() and fraction.isdigit()))


def formula_safe(value: object) -> object:
    """``value`` as a cell the hub may write to a CSV or XLSX file that a spreadsheet opens.

    Text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a single quote in
    front, so that Excel, WPS and LibreOffice show it as text instead of running it as a formula
    (``=HYPERLINK(...)``, ``+cmd|...``, ``-3+4``, ``@SUM(...)``). Text that is only a signed number —
    a phone number in E.164 form ``+8613812345678``, a negative number a source sent as text
    ``-5`` — is left as it is: it cannot hold a formula, and a program reading the file gets the
    value unchanged (a spreadsheet shows it as a number). ``+86 138 0013 8000``, with its spaces, is
    not a plain number and gets the quote. Real numbers, dates and empty cells are returned as they are.
    """
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS) and not _plain_number(value):
        return FORMULA_GUARD + value
    return value


def formula_unsafe(value: object) -> object:
    """The text :func:`formula_safe` was given back (reading a file the hub wrote earlier)."""
    if isinstance(value, str) and value[:1] == FORMULA_GUARD and value[1:].startswith(FORMULA_TRIGGERS):
        return value[1:]
    return value


def formula_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`formula_safe` applied to its text cells (numeric columns untouched)."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if not (values.dtype == object or isinstance(values.dtype, pd.StringDtype)):
            continue
        risky = np.fromiter((isinstance(v, str) and formula_safe(v) is not v for v in values.astype(object)),
                            dtype=bool, count=len(values))
        if risky.any():
            out.loc[risky, column] = FORMULA_GUARD + values[risky].astype(str)
    return out
