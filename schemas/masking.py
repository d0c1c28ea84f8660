"""Masking of personal data for logs, messages and reports.

Nothing outside the protected warehouse layers may show a full ID number or name, and no mask may be
undone with what is shown beside it. Review pages, explanations and findings show a record's birth
date, sex and village next to its masked ID number: an ID number is its region (6 digits), its birth
date (8), a 3-digit sequence whose last digit is odd for men and even for women, and a check character
computed from the rest. A mask that kept the last four characters (``341522********123X``) left
nothing but the birth date hidden, which the page printed beside it. So a mask keeps only the region
(no more than the county a record's village names): with birth date and sex known, 500 numbers still
fit it (as many for a 15-digit number), and the check character narrows nothing: it follows from the rest.

A mobile phone keeps its carrier prefix and last four digits (``138****5678``): ten thousand
numbers fit and nothing else shown holds a digit of it. A house number is starred entirely: the
village and the masked name beside it would otherwise point to one household.
"""

from __future__ import annotations

import re


def mask_id_number(value: object) -> str:
    """Mask an ID number as ``341522************``: the region (first 6 characters) kept, the birth date,
    sequence and check character starred.

    Short or odd values are masked entirely but for their length, so that a mistyped number
    cannot leak through a shorter mask either.
    """
    if not isinstance(value, str) or not value:
        return "<empty>"
    s = value.strip()
    if len(s) >= 15:
        return s[:6] + "*" * (len(s) - 6)
    return "*" * len(s)


def mask_name(value: object) -> str:
    """Mask a name as ``张*`` / ``欧阳**``: the first character stays, the rest are starred."""
    if not isinstance(value, str) or not value.strip():
        return "<empty>"
    s = value.strip()
    return s[0] + "*" * (len(s) - 1)


_COUNTRY = re.compile(r"^\+?86(?=\d{9,})")


def mask_phone(value: object) -> str | None:
    """Mask a phone number as ``138****5678`` (a mobile: carrier prefix and last four digits kept) or
    ``********5678`` (any other number: the last four kept when at least four digits stay hidden).

    The country code (``+86``) is dropped; None or blank gives None."""
    if not isinstance(value, str) or not value.strip():
        return None
    digits = _COUNTRY.sub("", re.sub(r"[^\d+]", "", value.strip()))
    digits = digits.lstrip("+")
    if len(digits) == 11 and digits.startswith("1"):
        return digits[:3] + "****" + digits[-4:]
    if len(digits) >= 8:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "*" * len(digits)


def mask_house_no(value: object) -> str | None:
    """Mask a house number entirely (``***``); None or blank gives None."""
    if not isinstance(value, str) or not value.strip():
        return None
    return "*" * len(value.strip())


def mask_birth_date(value: object) -> object:
    """A birth date shown to the year only: ``1968-**-**``, from a date, ``1968-01-02`` or ``1968-01-**``;
    None as None, anything else as it is."""
    text = value.isoformat() if hasattr(value, "isoformat") else value
    if isinstance(text, str) and re.match(r"^\d{4}-(?:\d{2}|\*\*)-(?:\d{2}|\*\*)$", text):
        return text[:4] + "-**-**"
    return value
