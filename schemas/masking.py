"""Masking of personal data for logs, messages and reports.

Nothing outside the protected warehouse layers may show a full ID number or name.
"""

from __future__ import annotations


def mask_id_number(value: object) -> str:
    """Mask an ID number as ``341522********123X`` (first 6 and last 4 kept).

    Short or odd values are masked entirely but for their length, so that a mistyped number
    cannot leak through a shorter mask either.
    """
    if not isinstance(value, str) or not value:
        return "<empty>"
    s = value.strip()
    if len(s) >= 15:
        return s[:6] + "*" * (len(s) - 10) + s[-4:]
    return "*" * len(s)


def mask_name(value: object) -> str:
    """Mask a name as ``张*`` / ``欧阳**``: the first character stays, the rest are starred."""
    if not isinstance(value, str) or not value.strip():
        return "<empty>"
    s = value.strip()
    return s[0] + "*" * (len(s) - 1)
