"""The declaration of the ledger kinds (台账): who is on each, which columns, which order.

The kinds the hub ships are declared in ``reports/ledgers.yaml`` (the format is described in the
file itself); :func:`load_ledgers` reads and validates such a file through :mod:`schemas.policy`.
Whether its sources and ``raw:`` fields exist is a question for the source registry, which the
caller passes to :meth:`LedgersFile.check_sources`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reports.errors import LedgerConfigError
from schemas.policy import read_policy, validate_policy

LEDGERS_FILE = Path(__file__).resolve().with_name("ledgers.yaml")

# catalogue: value → (default header, default width in characters)
PERSON_COLUMNS: dict[str, tuple[str, float]] = {
    "seq": ("序号", 6), "household_no": ("户号", 6), "household_size": ("户人数", 7),
    "master_id": ("主索引号", 13), "name": ("姓名", 10), "sex": ("性别", 6), "birth_date": ("出生日期", 12),
    "age": ("年龄", 6), "id_number": ("公民身份号码", 21), "address": ("住址", 30), "phone": ("联系电话", 14),
    "sources": ("数据来源", 30),
}
ENROLMENT_COLUMNS: dict[str, tuple[str, float]] = {
    "status": ("状态", 10), "status_date": ("状态日期", 12), "record_id": ("业务编号", 14), "program": ("项目", 10),
}
HOUSEHOLD_COLUMNS = ("household_no", "household_size")
#: values that identify someone or something: written as text, never as numbers
IDENTIFIER_COLUMNS = ("id_number", "phone", "master_id", "record_id")
SORT_KEYS = ("address", "household", "head", "birth_date", "age", "name", "master_id", "status")
RAW_PREFIX = "raw:"


class DeclaredSource(Protocol):
    """What a ledger needs of a registered source (``connectors.registry``'s source models have it)."""

    title: str
    department: str
    fields: Sequence[str]


# ------------------------------------------------------------------------------------ the declaration
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgeRange(_Strict):
    min: int | None = Field(None, ge=0, le=150)
    max: int | None = Field(None, ge=0, le=150)

    @model_validator(mode="after")
    def _ordered(self):
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, age: pd.Series) -> pd.Series:
        ok = pd.Series(True, index=age.index)
        if self.min is not None:
            ok &= age >= self.min
        if self.max is not None:
            ok &= age <= self.max
        return ok


class Band(AgeRange):
    label: str


class Members(_Strict):
    sources: list[str] = Field(min_length=1)
    programs: list[str] | None = None
    statuses: list[str] | None = None
    exclude_statuses: list[str] = Field(default_factory=list)
    sex: Literal[1, 2] | None = None
    age: AgeRange | None = None


class Head(_Strict):
    field: str
    values: list[str] = Field(min_length=1)


class Column(_Strict):
    value: str
    header: str | None = None
    labels: dict[str, str] | None = None
    bands: list[Band] | None = None
    width: float | None = Field(None, gt=0, le=100)
    # how the cells are written: as received (text), a number, a date, or a GB/T 2260 region code's name
    type: Literal["text", "number", "date", "region"] = "text"

    @field_validator("labels", mode="before")
    @classmethod
    def _text_keys(cls, labels):
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else labels

    @model_validator(mode="after")
    def _known_value(self):
        if not (self.value in PERSON_COLUMNS or self.value in ENROLMENT_COLUMNS
                or (self.value.startswith(RAW_PREFIX) and len(self.value) > len(RAW_PREFIX))):
            raise ValueError(f"unknown value {self.value!r}; expected one of "
                             f"{sorted(PERSON_COLUMNS) + sorted(ENROLMENT_COLUMNS)} or raw:<field>")
        if self.bands is not None and self.value != "age":
            raise ValueError("bands apply to value 'age' only")
        if self.type != "text" and not (self.value.startswith(RAW_PREFIX) or self.value in ENROLMENT_COLUMNS):
            raise ValueError(f"type {self.type!r} applies to raw:<field> and enrolment values only")
        return self

    @property
    def heading(self) -> str:
        if self.header:
            return self.header
        if self.value.startswith(RAW_PREFIX):
            return self.value[len(RAW_PREFIX):]
        return {**PERSON_COLUMNS, **ENROLMENT_COLUMNS}[self.value][0]

    @property
    def as_text(self) -> bool:
        """Whether the cells are written as text: identifiers, and fields as the source sent them."""
        return self.value in IDENTIFIER_COLUMNS or (self.value.startswith(RAW_PREFIX) and self.type == "text")

    @property
    def col_width(self) -> float:
        if self.width:
            return self.width
        default = {**PERSON_COLUMNS, **ENROLMENT_COLUMNS}.get(self.value)
        return default[1] if default else max(10.0, 2.2 * len(self.heading))


class LedgerSpec(_Strict):
    """One ledger kind as declared."""

    title: str = Field(min_length=1, max_length=60)
    description: str = ""
    members: Members
    households: bool = False
    head: Head | None = None
    deceased: Literal["separate", "exclude"] = "separate"
    columns: list[Column] = Field(min_length=1)
    sort: list[str] = Field(default_factory=lambda: ["address", "birth_date"])

    @field_validator("columns", mode="before")
    @classmethod
    def _short_columns(cls, columns):
        return [{"value": c} if isinstance(c, str) else c for c in columns] if isinstance(columns, list) else columns

    @field_validator("sort")
    @classmethod
    def _sort_keys(cls, keys: list[str]) -> list[str]:
        bad = [k for k in keys if k.lstrip("-") not in SORT_KEYS]
        if bad:
            raise ValueError(f"unknown sort key(s) {bad}; expected some of {list(SORT_KEYS)} (prefix - for descending)")
        return keys

    @model_validator(mode="after")
    def _consistent(self):
        values = [c.value for c in self.columns]
        if not self.households:
            wrong = [v for v in values if v in HOUSEHOLD_COLUMNS]
            wrong += [k for k in self.sort if k.lstrip("-") in ("household", "head")]
            if wrong:
                raise ValueError(f"{wrong} need 'households: true'")
        if self.head is not None and not self.households:
            raise ValueError("'head' needs 'households: true'")
        return self

    def raw_fields(self) -> list[str]:
        fields = [c.value[len(RAW_PREFIX):] for c in self.columns if c.value.startswith(RAW_PREFIX)]
        if self.head is not None:
            fields.append(self.head.field)
        return list(dict.fromkeys(fields))


class LedgersFile(_Strict):
    version: Literal[1]
    timezone: str = "Asia/Shanghai"
    departments: dict[str, str] = Field(default_factory=dict)
    ledgers: dict[str, LedgerSpec] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r} (use an IANA name such as Asia/Shanghai)") from exc
        return zone

    @field_validator("ledgers")
    @classmethod
    def _kind_names(cls, ledgers: dict) -> dict:
        bad = [k for k in ledgers if not re.match(r"^[a-z][a-z0-9_]{1,40}$", k)]
        if bad:
            raise ValueError(f"kinds {bad} must be lower-case names (letters, digits, _)")
        return ledgers

    def check_sources(self, registry: Mapping[str, DeclaredSource], path: str = "ledgers.yaml") -> None:
        """Fail unless every member source is in ``registry`` (the source registry: name → declared
        source) and every ``raw:`` field is one its sources declare."""
        problems = []
        for kind, spec in self.ledgers.items():
            for i, source in enumerate(spec.members.sources):
                if source not in registry:
                    problems.append(f"ledgers.{kind}.members.sources[{i}]: {source!r} is not a registered source")
            declared = set().union(*(set(registry[s].fields or [])
                                     for s in spec.members.sources if s in registry))
            for field in spec.raw_fields():
                if field not in declared:
                    problems.append(f"ledgers.{kind}: raw field {field!r} is not among the fields its sources "
                                    f"declare ({', '.join(sorted(declared)) or 'none'})")
        if problems:
            raise LedgerConfigError(f"invalid ledgers file {path}:\n  " + "\n  ".join(problems))


def load_ledgers(path: Path | str = LEDGERS_FILE) -> LedgersFile:
    """Load and validate a ledgers file (its sources are checked against the registry by
    :meth:`LedgersFile.check_sources` when a ledger is made)."""
    data = read_policy(path, LedgerConfigError, "ledgers file")
    return validate_policy(data, LedgersFile, path, LedgerConfigError, "ledgers file")


@lru_cache(maxsize=1)
def shipped_ledgers() -> LedgersFile:
    """The ledger kinds the hub ships (``reports/ledgers.yaml``)."""
    return load_ledgers(LEDGERS_FILE)


def ledger_kinds() -> dict[str, str]:
    """The declared ledger kinds: kind → title (``{"dibao": "最低生活保障户台账", …}``)."""
    return {kind: spec.title for kind, spec in shipped_ledgers().ledgers.items()}
