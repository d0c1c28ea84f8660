"""Which published fields each consuming department may see (``warehouse/sharing.yaml``).

Classes follow the 2025 Regulation on Government Data Sharing: ``无条件`` (unconditional),
``有条件`` (conditional: released for an approved purpose) and ``不予共享`` (not shared).

A 有条件 field is released only for a purpose of the department's catalogue (``purposes.yaml`` beside
the sharing file, :mod:`warehouse.purposes`) that is in force and lists the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from schemas.policy import read_policy
from warehouse.purposes import Purpose, PurposeError, load_purposes, purposes_file_for
from warehouse.releases import PUBLISHED_COLUMNS

SHARING_FILE = Path(__file__).with_name("sharing.yaml")
UNCONDITIONAL, CONDITIONAL, NOT_SHARED = "无条件", "有条件", "不予共享"
CLASSES = (UNCONDITIONAL, CONDITIONAL, NOT_SHARED)
#: every column of publish.master_person a department could be given (release_no aside)
PUBLISHED_FIELDS = PUBLISHED_COLUMNS


class SharingError(ValueError):
    """The sharing configuration is wrong; the message names the file, department and field."""


@dataclass(frozen=True)
class DepartmentSharing:
    department: str
    title: str
    classes: Mapping[str, str]  # field -> class, for every published field
    own_enrolments_only: bool
    purposes: Mapping[str, Purpose] = field(default_factory=dict)  # code -> the department's approved purpose

    def visible(self) -> tuple[str, ...]:
        """Fields the department may see (unconditional or conditional), in published order."""
        return tuple(f for f in PUBLISHED_FIELDS if self.classes[f] != NOT_SHARED)

    def conditional(self) -> tuple[str, ...]:
        """Fields released only for a declared purpose."""
        return tuple(f for f in PUBLISHED_FIELDS if self.classes[f] == CONDITIONAL)

    def purpose(self, code: str | None) -> Purpose | None:
        """The department's approved purpose with exactly this code (in force or not), else None."""
        return self.purposes.get(code) if code else None

    def unlocked(self, code: str | None, today=None) -> tuple[str, ...]:
        """The 有条件 fields the purpose ``code`` releases: its fields when it is an approved purpose of the
        department in force today, else none (an unknown, expired or other department's code, free text)."""
        purpose = self.purpose(code)
        if purpose is None or not purpose.in_force(today):
            return ()
        return tuple(f for f in self.conditional() if f in purpose.fields)


def load_sharing(path: str | Path | None = None) -> dict[str, DepartmentSharing]:
    """Read the sharing configuration and the purpose catalogue beside it (``purposes.yaml``; none when that
    file is absent); raises :class:`SharingError` naming what is wrong in either."""
    path = Path(path) if path else SHARING_FILE
    data = read_policy(path, SharingError, "sharing configuration", allow_empty=True)
    problems: list[str] = []
    defaults = _section(data.get("fields"), f"{path}: fields", problems)
    problems += [f"{path}: fields.{f}: unknown field (published fields: {', '.join(PUBLISHED_FIELDS)})"
                 for f in defaults if f not in PUBLISHED_FIELDS]
    problems += [f"{path}: fields.{f}: no sharing class given" for f in PUBLISHED_FIELDS if f not in defaults]
    out: dict[str, DepartmentSharing] = {}
    for name, conf in _section(data.get("departments"), f"{path}: departments", problems).items():
        name = str(name)
        conf = _section(conf, f"{path}: departments.{name}", problems)
        overrides = _section(conf.get("fields"), f"{path}: departments.{name}.fields", problems)
        problems += [f"{path}: departments.{name}.fields.{f}: unknown field" for f in overrides
                     if f not in PUBLISHED_FIELDS]
        classes = {f: overrides.get(f, defaults.get(f)) for f in PUBLISHED_FIELDS}
        problems += [f"{path}: departments.{name}.fields.{f}: {c!r} is not one of {', '.join(CLASSES)}"
                     for f, c in classes.items() if c is not None and c not in CLASSES]
        enrolments = conf.get("enrolments", "own")
        if enrolments not in ("own", "all"):
            problems.append(f"{path}: departments.{name}.enrolments: {enrolments!r} is not 'own' or 'all'")
        if not name.isidentifier() or not name.islower():
            problems.append(f"{path}: departments.{name}: a department key is lower-case letters, digits and _")
        out[name] = DepartmentSharing(name, str(conf.get("title") or name), classes, enrolments == "own")
    if problems:
        raise SharingError("; ".join(problems))
    catalogue = purposes_file_for(path)
    if catalogue.exists():
        try:
            purposes = load_purposes(catalogue, {name: d.conditional() for name, d in out.items()})
        except PurposeError as exc:
            raise SharingError(str(exc)) from None
        out = {name: replace(d, purposes=purposes.get(name, {})) for name, d in out.items()}
    return out


def _section(value: object, where: str, problems: list[str]) -> dict:
    """A mapping of the file (empty when left out); anything else is noted as a problem."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: expected a mapping")
        return {}
    return value


def department_titles(path: str | Path | None = None) -> dict[str, str]:
    """department key → the title reports and scorecards show (``title`` in the sharing configuration)."""
    return {name: d.title for name, d in load_sharing(path).items()}

