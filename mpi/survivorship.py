"""Survivorship rules for golden records, declared in ``mpi/survivorship.yaml``.

Per field: an ordered authority list (一数一源: sources, departments, or ``id_number`` for the values
the master's anchored ID number encodes), then recency and frequency (in a configurable order),
then a deterministic tie-break. The file format is described in the file itself. Loading validates
everything that can be checked without the warehouse; :meth:`SurvivorshipRules.check_names` checks
the authority entries against the registry's sources and departments. Every error names the file
and the key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from schemas.policy import read_policy

DEFAULT_RULES = Path(__file__).resolve().parent / "survivorship.yaml"

FIELDS = ("name", "sex", "birth_date", "phone", "address", "status")
ID_NUMBER = "id_number"  # authority entry: the value the master's anchored ID number encodes
ID_DERIVED_FIELDS = ("sex", "birth_date")
CRITERIA = ("recency", "frequency")
VITAL_STATUSES = ("alive", "deceased")
_NAME = r"^[a-z][a-z0-9_]{1,40}$"

Criterion = Literal["recency", "frequency"]
VitalStatus = Literal["alive", "deceased"]


class SurvivorshipError(ValueError):
    """The survivorship rules file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_repeats(values: list) -> list:
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"lists {repeated} more than once")
    return values


class FieldRule(_Strict):
    """How one golden field is chosen."""

    authority: list[str] = Field(default_factory=list)
    order: list[Criterion] = Field(default_factory=lambda: list(CRITERIA))
    recency: Literal["loaded_at", "status_date"] = "loaded_at"

    @field_validator("authority")
    @classmethod
    def _authority(cls, entries: list[str]) -> list[str]:
        bad = [e for e in entries if not re.match(_NAME, e)]
        if bad:
            raise ValueError(f"entries {bad} are not source or department names (lower-case letters, digits, _)")
        return _no_repeats(entries)

    @field_validator("order")
    @classmethod
    def _order(cls, criteria: list[str]) -> list[str]:
        return _no_repeats(criteria)


class FieldRules(_Strict):
    name: FieldRule
    sex: FieldRule
    birth_date: FieldRule
    phone: FieldRule
    address: FieldRule
    status: FieldRule


class Recency(_Strict):
    """Load times within one ``resolution`` step (in ``timezone``) count as equally recent."""

    resolution: Literal["exact", "hour", "day"] = "day"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name such as Asia/Shanghai)") from exc
        return zone


class VitalStatusCodes(_Strict):
    """How a record's raw status reads as a vital status: per source, raw value → alive | deceased."""

    default: VitalStatus | None = "alive"
    codes: dict[str, dict[str, VitalStatus]] = Field(default_factory=dict)

    @field_validator("codes")
    @classmethod
    def _source_names(cls, codes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        bad = [s for s in codes if not re.match(_NAME, s)]
        if bad:
            raise ValueError(f"keys {bad} are not source names")
        return codes


class SurvivorshipRules(_Strict):
    """The validated contents of a survivorship rules file."""

    version: Literal[1]
    recency: Recency = Field(default_factory=Recency)
    fields: FieldRules
    vital_status: VitalStatusCodes = Field(default_factory=VitalStatusCodes)
    _path: str = PrivateAttr(default="<memory>")

    @property
    def path(self) -> str:
        """The file the rules were loaded from (for error messages)."""
        return self._path

    def field(self, name: str) -> FieldRule:
        return getattr(self.fields, name)

    def check_names(self, departments: Mapping[str, str]) -> None:
        """Fail unless every authority entry and status-code source is a known source or department.

        ``departments``: source name → department name (from the source registry).
        """
        known = set(departments) | set(departments.values())
        problems = []
        for name in FIELDS:
            allowed = known | ({ID_NUMBER} if name in ID_DERIVED_FIELDS else set())
            for i, entry in enumerate(self.field(name).authority):
                if entry not in allowed:
                    problems.append((f"fields.{name}.authority[{i}]",
                                     f"{entry!r} is neither a registered source nor a department"))
        for source in self.vital_status.codes:
            if source not in departments:
                problems.append((f"vital_status.codes.{source}", f"{source!r} is not a registered source"))
        if problems:
            raise SurvivorshipError(_message(self.path, problems))


def _message(path: str, problems: list[tuple[str, str]]) -> str:
    return "\n".join([f"invalid survivorship rules {path}:", *(f"  key '{k}': {m}" for k, m in problems)])


def _key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def _semantic_problems(rules: SurvivorshipRules) -> Iterator[tuple[str, str]]:
    for name in FIELDS:
        rule = rules.field(name)
        if ID_NUMBER in rule.authority and name not in ID_DERIVED_FIELDS:
            yield (f"fields.{name}.authority[{rule.authority.index(ID_NUMBER)}]",
                   f"'{ID_NUMBER}' is an authority only for {list(ID_DERIVED_FIELDS)}")
        if rule.recency == "status_date" and name != "status":
            yield f"fields.{name}.recency", "'status_date' is the date of a status: only the status field can use it"


def parse_rules(data: object, path: str = "<memory>") -> SurvivorshipRules:
    """Validate already-parsed YAML content; ``path`` names it in errors."""
    if not isinstance(data, dict):
        raise SurvivorshipError(_message(path, [("(file)", "expected a mapping at the top level")]))
    try:
        rules = SurvivorshipRules.model_validate(data)
    except ValidationError as exc:
        raise SurvivorshipError(_message(path, [(_key(e["loc"]), e["msg"]) for e in exc.errors()])) from exc
    problems = list(_semantic_problems(rules))
    if problems:
        raise SurvivorshipError(_message(path, problems))
    rules._path = path
    return rules


def load_rules(path: str | Path = DEFAULT_RULES) -> SurvivorshipRules:
    """Load and validate a survivorship rules file (default: ``mpi/survivorship.yaml``)."""
    path = Path(path)
    data = read_policy(path, SurvivorshipError, "survivorship rules")
    return parse_rules(data, str(path))
