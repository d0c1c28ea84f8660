"""GB/T 2260 administrative division codes, with historical codes.

ID numbers keep the region code that was valid when they were issued, so abolished codes stay
valid. The table is read from python-stdnum's ``loc.dat`` (a scrape of the historical code lists),
extended with the residence-permit codes for Hong Kong, Macao and Taiwan residents.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

RESIDENCE_PERMIT_CODES = {"810000": "香港特别行政区", "820000": "澳门特别行政区", "830000": "台湾地区"}

_LINE = re.compile(r'^(\s*)(\d{2,4}) (\w+)="(.*)"$')
_SPAN = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    valid_from: int | None
    valid_to: int | None


def _spans() -> list[Region]:
    """Every (code, name, validity) entry of ``loc.dat``, in file order."""
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8")
    spans: list[Region] = []
    province = ""
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        indent, code, _kind, value = m.groups()
        if not indent:
            province = code
            spans.append(Region(province + "0000", value, None, None))
            continue
        full = province + code
        # a code may have been used for several names over time: "[1983-2004]a,[2005-]b"
        for part in value.split(","):
            span = _SPAN.match(part)
            if span:
                start, end, name = span.groups()
                spans.append(Region(full, name, int(start) if start else None, int(end) if end else None))
            else:
                spans.append(Region(full, part, None, None))
    return spans


@lru_cache(maxsize=1)
def region_table() -> dict[str, Region]:
    """All known 6-digit region codes (current and abolished) with their names."""
    table: dict[str, Region] = {}
    for region in _spans():
        table.setdefault(region.code, region)
    for code, name in RESIDENCE_PERMIT_CODES.items():
        table[code] = Region(code, name, None, None)
    return table


@lru_cache(maxsize=1)
def current_regions() -> dict[str, str]:
    """Codes in use today (no end year) with their current names, provinces and prefectures included."""
    return {region.code: region.name for region in _spans() if region.valid_to is None}


@lru_cache(maxsize=1)
def known_prefixes() -> tuple[frozenset[str], frozenset[str]]:
    """(known 6-digit codes, known 4-digit prefecture prefixes)."""
    table = region_table()
    return frozenset(table), frozenset(code[:4] for code in table)
