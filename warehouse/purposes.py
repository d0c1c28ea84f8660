"""The catalogue of approved purposes (``warehouse/purposes.yaml``): per department, the uses for which its
有条件 (conditional) fields are released.

A purpose has a ``code`` (what a request names), a bilingual ``title``, the ``legal_basis`` it rests on,
the 有条件 ``fields`` it unlocks and the day it ``expires`` (the last day it is in force). The catalogue is
checked against the sharing configuration when it is loaded: a field a purpose unlocks must be a 有条件
field of that department. :func:`warehouse.sharing.load_sharing` loads the catalogue that lies beside the
sharing file and attaches each department's purposes to its ``DepartmentSharing``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from schemas.policy import read_policy

PURPOSES_FILE = Path(__file__).with_name("purposes.yaml")
_CODE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)+$")
_KEYS = frozenset({"code", "title", "legal_basis", "fields", "expires"})

#: what the access log keeps instead of a purpose that is not an approved code of the caller's department
NOT_A_PURPOSE_CODE = "(not a purpose code)"
#: prefix of the access log's purpose when an approved code has expired: ``(expired) <code>``
EXPIRED_MARK = "(expired) "


class PurposeError(ValueError):
    """The purpose catalogue is wrong; the message names the file, department, purpose and field."""


@dataclass(frozen=True)
class Purpose:
    """One approved purpose of a department."""
    code: str
    department: str
    title: str
    legal_basis: str
    fields: tuple[str, ...]
    expires: dt.date

    def in_force(self, today: dt.date | None = None) -> bool:
        """Whether the purpose may still be used (it is in force through its ``expires`` day)."""
        return (today or dt.date.today()) <= self.expires


def purposes_file_for(sharing_path: str | Path) -> Path:
    """The catalogue that goes with a sharing file: ``purposes.yaml`` in the same folder."""
    return Path(sharing_path).with_name(PURPOSES_FILE.name)


def load_purposes(path: str | Path, conditional: Mapping[str, tuple[str, ...]]) -> dict[str, dict[str, Purpose]]:
    """department → code → :class:`Purpose`, read from ``path`` and checked against ``conditional``
    (department → its 有条件 fields). Raises :class:`PurposeError` listing every problem."""
    path = Path(path)
    data = read_policy(path, PurposeError, "purpose catalogue", allow_empty=True)
    problems: list[str] = []
    departments = data.get("departments") or {}
    if not isinstance(departments, dict):
        raise PurposeError(f"{path}: departments: expected a mapping of department → list of purposes")
    out: dict[str, dict[str, Purpose]] = {}
    seen: dict[str, str] = {}
    for department, entries in departments.items():
        department = str(department)
        where = f"{path}: departments.{department}"
        if department not in conditional:
            problems.append(f"{where}: not a department of the sharing configuration"
                            f" (departments: {', '.join(sorted(conditional))})")
            continue
        if not isinstance(entries, list):
            problems.append(f"{where}: expected a list of purposes")
            continue
        out[department] = {}
        for i, entry in enumerate(entries):
            purpose = _purpose(entry, department, f"{where}[{i}]", conditional[department], problems)
            if purpose is None:
                continue
            if purpose.code in seen:
                problems.append(f"{where}: purpose {purpose.code}: the code is used already (by {seen[purpose.code]});"
                                " a code names one purpose of one department")
                continue
            seen[purpose.code] = department
            out[department][purpose.code] = purpose
    if problems:
        raise PurposeError("; ".join(problems))
    return out


def _purpose(entry: object, department: str, where: str, conditional: tuple[str, ...],
             problems: list[str]) -> Purpose | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with {', '.join(sorted(_KEYS))}")
        return None
    code = str(entry.get("code") or "")
    if not _CODE.match(code):
        problems.append(f"{where}: code {code!r}: a purpose code is lower-case letters and digits in"
                        " hyphen-separated parts, e.g. mz-dibao-review")
        return None
    where = f"{where.rsplit('[', 1)[0]}: purpose {code}"
    before = len(problems)
    problems += [f"{where}: {k}: unknown key (keys: {', '.join(sorted(_KEYS))})" for k in entry if k not in _KEYS]
    title, basis = str(entry.get("title") or "").strip(), str(entry.get("legal_basis") or "").strip()
    if not title:
        problems.append(f"{where}: title: give the purpose's title (Chinese and English)")
    if not basis:
        problems.append(f"{where}: legal_basis: name the law or regulation the purpose rests on")
    fields = entry.get("fields")
    if not isinstance(fields, list) or not fields:
        problems.append(f"{where}: fields: list the 有条件 fields the purpose unlocks")
        fields = []
    for field in fields:
        if field not in conditional:
            problems.append(f"{where}: fields: {field!r} is not a 有条件 field of {department} in the sharing"
                            f" configuration (its 有条件 fields: {', '.join(conditional) or 'none'})")
    expires = entry.get("expires")
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            pass
    if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
        problems.append(f"{where}: expires: {expires!r} is not a date (YYYY-MM-DD, the last day in force)")
    if len(problems) > before:
        return None
    return Purpose(code, department, title, basis, tuple(dict.fromkeys(str(f) for f in fields)), expires)
