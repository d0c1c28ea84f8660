"""Phone numbers: mainland mobiles, landlines and 400/800 numbers in E.164.

A phone is a weak, shared identifier (a household shares one; numbers change hands), so the
standardizer only normalizes: separators, country prefix, trunk 0 and extensions. Carrier and
place are not derived (number portability makes them unreliable).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from schemas.text import NULL, TEXT, blank_or_null, distinct, expand, flag, lit, nfkc, series, squeeze

VALID = "valid"
MULTIPLE = "multiple"
MISSING = "missing"
PLACEHOLDER = "placeholder"
NO_AREA_CODE = "no_area_code"
INVALID = "invalid"
STATUSES = (VALID, MULTIPLE, NO_AREA_CODE, INVALID, PLACEHOLDER, MISSING)
USABLE = (VALID, MULTIPLE)

MOBILE, LANDLINE, SERVICE = "mobile", "landline", "service"

_WORDS = "^(?:无|暂无|没有|不详|未知|空|NULL|NONE|NAN|N/?A|[-/\\\\_.*?？—]+)$"
# between two numbers in one cell
_DELIMITERS = "[/,;、|]|或|和|及"
_ANOTHER_NUMBER = f"(?:{_DELIMITERS})[^0-9]*(?:[0-9][^0-9/,;、|]*){{7}}"
# two whitespace-separated runs of 7+ digits are two numbers, not one number written in groups
_TWO_RUNS = "^[^0-9]*(?P<first>\\+?[0-9]{7,})[ ]+\\+?[0-9]{7,}"
# a label before the number (手机:, TEL:) and a note in brackets (本人, 父亲) are not part of it
_LABEL = "^[^0-9+(]*:"
_NOTE = "\\([^0-9)]*\\)"
_EXTENSION = "(?:转|分机|EXT\\.?|X|#)[0-9]{1,6}$"
_DASH_EXTENSION = "-[0-9]{1,5}$"  # 0551-6234567-801: only when the number is whole without it
_SEPARATORS = "[ ().\\-]"
_FLOAT_TAIL = "^([0-9]+)\\.0+$"  # 13812345678.0 from a spreadsheet or a float column

_MOBILE = "^1[3-9][0-9]{9}$"
_SERVICE_NUMBER = "^[48]00[0-9]{7}$"
# trunk 0, then a two-digit (010, 02x) or three-digit (0[3-9]xx) area code, then 7 or 8 digits
_LANDLINE = "^0(?:10|2[0-9]|[3-9][0-9]{2})[2-9][0-9]{6,7}$"
_LOCAL = "^[2-9][0-9]{6,7}$"
_ALL_SAME = "^(?:0+|1{5,}|2{5,}|3{5,}|4{5,}|5{5,}|6{5,}|7{5,}|8{5,}|9{5,})$"
_KNOWN_FAKES = ["12345678901", "1234567890", "123456789", "12345678", "1234567", "01234567890", "13800138000",
                "98765432100", "9876543210"]


def _first_number(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(the first number of each cell, whether the cell holds another one)."""
    two_runs = pc.extract_regex(text, _TWO_RUNS)
    spaced = flag(pc.is_valid(two_runs))
    first = pc.replace_substring_regex(text, f"(?:{_DELIMITERS}).*$", "")
    first = pc.if_else(pa.array(spaced), pc.struct_field(two_runs, "first"), first)
    return first, spaced | flag(pc.match_substring_regex(text, _ANOTHER_NUMBER))


def _classify(candidate: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray]:
    """(phone_type or None, E.164 or null, whether only the area code is missing) of each candidate number."""
    digits = pc.replace_substring_regex(candidate, _SEPARATORS, "")
    # +86 / 0086 / 86 before a mobile; after a country code a landline has lost its trunk 0
    international = flag(pc.match_substring_regex(digits, "^(?:\\+86|0086)"))
    national = pc.replace_substring_regex(digits, "^(?:\\+86|0086)0?", "")
    national = pc.replace_substring_regex(national, "^86(1[3-9][0-9]{9})$", "\\1")
    trunked = pc.if_else(
        pa.array(international & ~flag(pc.match_substring_regex(national, "^(?:1[3-9]|[48]00)"))),
        pc.binary_join_element_wise(lit("0"), national, lit("")), national)

    mobile = flag(pc.match_substring_regex(trunked, _MOBILE))
    service = flag(pc.match_substring_regex(trunked, _SERVICE_NUMBER))
    landline = flag(pc.match_substring_regex(trunked, _LANDLINE))
    local = flag(pc.match_substring_regex(trunked, _LOCAL)) & ~international
    kind = np.select([mobile, service, landline], [MOBILE, SERVICE, LANDLINE], None)
    without_trunk = pc.if_else(pa.array(landline), pc.utf8_slice_codeunits(trunked, 1), trunked)
    e164 = pc.if_else(pa.array(pd.notna(kind)), pc.binary_join_element_wise(lit("+86"), without_trunk, lit("")),
                      NULL)
    return kind, e164, local


def _standardize_distinct(values: pa.Array) -> pd.DataFrame:
    text = pc.utf8_upper(nfkc(values))
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, "[\r\n]+", "/"))
    squeezed = squeeze(text)
    missing = blank_or_null(squeezed)
    words = ~missing & flag(pc.match_substring_regex(squeezed, _WORDS))

    first, several = _first_number(text)
    first = pc.replace_substring_regex(first, _LABEL, "")
    first = pc.replace_substring_regex(first, _NOTE, "")
    first = pc.replace_substring_regex(squeeze(first), _EXTENSION, "")
    first = pc.replace_substring_regex(first, _FLOAT_TAIL, "\\1")
    kind, e164, local = _classify(first)
    # a trailing -NNN is an extension only if the number is complete without it
    retry = pd.isna(kind) & flag(pc.match_substring_regex(first, _DASH_EXTENSION))
    if retry.any():
        kind2, e164_2, _ = _classify(pc.replace_substring_regex(first, _DASH_EXTENSION, ""))
        better = retry & (kind2 == LANDLINE)
        kind = np.where(better, kind2, kind)
        e164 = pc.if_else(pa.array(better), e164_2, e164)

    bare = pc.replace_substring_regex(pc.replace_substring_regex(first, _SEPARATORS, ""), "^(?:\\+86|0086)", "")
    fake = ~missing & ~words & (
        flag(pc.match_substring_regex(bare, _ALL_SAME)) | flag(pc.is_in(bare, value_set=pa.array(_KNOWN_FAKES))))
    placeholder = words | fake
    found = pd.notna(kind)
    status = np.select(
        [missing, placeholder, found & several, found, local],
        [MISSING, PLACEHOLDER, MULTIPLE, VALID, NO_AREA_CODE], INVALID)
    usable = np.isin(status, USABLE)
    return pd.DataFrame({
        "phone": series(pc.if_else(pa.array(usable), e164, NULL)),
        "phone_type": pd.array(np.where(usable, kind, None), dtype=TEXT),
        "phone_status": pd.array(status, dtype=TEXT),
    })


def standardize_phones(raw: pd.Series) -> pd.DataFrame:
    """Standardize raw phone numbers.

    Returns ``phone`` (E.164, ``+8613812345678`` / ``+861062345678``), ``phone_type`` (mobile,
    landline, service) and ``phone_status``: valid (an extension is dropped), multiple (several
    numbers: the first is taken), missing, placeholder (无, 00000000000, 12345678901, …),
    no_area_code (a 7–8 digit local number: which city is not known), invalid.
    """
    codes, values = distinct(raw)
    return expand(_standardize_distinct(values), codes, raw.index)
