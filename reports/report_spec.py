"""The declaration of the statistical report kinds (统计报表): who is counted, by what, in which lines.

The kinds the hub ships are declared in ``reports/statistics.yaml`` (the format is described in the
file itself); :func:`load_statistics` reads and validates such a file through :mod:`schemas.policy`,
so that every error names the file and the key. Whether the sources exist is a question for the
source registry, which the caller passes to :meth:`StatisticsFile.check_sources`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reports.errors import ReportConfigError
from reports.ledger_spec import AgeRange, Band, DeclaredSource
from schemas.policy import read_policy, validate_policy

STATISTICS_FILE = Path(__file__).resolve().with_name("statistics.yaml")

#: what a row or column can be broken down by
DIMENSIONS = ("sex", "age", "status", "field", "province", "month", "program_pair")
#: dimensions read from the person's enrolment (the population must name its sources)
ENROLMENT_DIMENSIONS = ("status", "field", "province", "program_pair")
UNKNOWN = "不详"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Population(_Strict):
    """Who is counted. With ``sources``, a person counts when one of their enrolments of the release in
    those sources qualifies (programme, raw status); without, every person of the release counts."""

    sources: list[str] | None = None
    programs: list[str] | None = None
    statuses: list[str] | None = None
    exclude_statuses: list[str] = Field(default_factory=list)
    min_programs: int | None = Field(None, ge=2, le=10)
    sex: Literal[1, 2] | None = None
    age: AgeRange | None = None
    vital: Literal["alive", "deceased"] = "alive"
    event: Literal["birth", "death"] | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.sources is None and (self.programs or self.statuses or self.exclude_statuses):
            raise ValueError("programs and statuses need 'sources'")
        if self.event == "death" and self.vital != "deceased":
            raise ValueError("event 'death' needs 'vital: deceased'")
        return self


class Breakdown(_Strict):
    """A dimension: ``sex``; ``age`` with ``bands``; ``status`` (the enrolment's raw status, with
    ``labels``); ``field`` (the enrolment record's field ``name`` as received); ``province`` (the first
    two digits of the raw status, a GB/T 2260 code); ``month`` (of the population's event date);
    ``program_pair`` (each pair of programmes a person is in)."""

    by: Literal["sex", "age", "status", "field", "province", "month", "program_pair"]
    header: str | None = None
    bands: list[Band] | None = None
    labels: dict[str, str] | None = None
    name: str | None = None
    values: list[str] | None = None  # the order (and at least these values) of status/field columns

    @field_validator("labels", mode="before")
    @classmethod
    def _text_keys(cls, labels):
        return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else labels

    @model_validator(mode="after")
    def _complete(self):
        if self.by == "age" and not self.bands:
            raise ValueError("'by: age' needs 'bands'")
        if self.by != "age" and self.bands:
            raise ValueError("'bands' go with 'by: age' only")
        if self.by == "field" and not self.name:
            raise ValueError("'by: field' needs the field's 'name'")
        return self

    @property
    def heading(self) -> str:
        return self.header or {"sex": "性别", "age": "年龄", "status": "类别", "field": self.name or "",
                               "province": "户籍省份", "month": "月份", "program_pair": "项目组合"}[self.by]


class ColumnGroup(_Strict):
    """A measure (persons, households, or deaths in the period), in total or broken down by a dimension."""

    measure: Literal["persons", "households", "deaths"] = "persons"
    header: str
    by: Breakdown | None = None

    @model_validator(mode="after")
    def _by(self):
        if self.by is not None and self.measure != "persons":
            raise ValueError(f"a {self.measure} column cannot be broken down (only persons)")
        return self


class KindSpec(_Strict):
    """One report kind as declared."""

    title: str = Field(min_length=1, max_length=60)
    owner: str
    description: str = ""
    ledger: str | None = None
    population: Population
    rows: list[Breakdown] = Field(default_factory=list, max_length=1)
    columns: list[ColumnGroup] = Field(min_length=1)
    period: Literal["year", "since_previous"] | None = None
    due: Literal["every_release", "monthly", "quarterly", "yearly"] | None = None
    chart: Literal["pyramid", "monthly_trend"] | None = None

    @field_validator("rows", mode="before")
    @classmethod
    def _short_rows(cls, rows):
        return [{"by": r} if isinstance(r, str) else r for r in rows] if isinstance(rows, list) else rows

    @model_validator(mode="after")
    def _consistent(self):
        dims = [b.by for b in self.rows] + [c.by.by for c in self.columns if c.by is not None]
        if self.population.sources is None and any(d in ENROLMENT_DIMENSIONS for d in dims):
            raise ValueError(f"{[d for d in dims if d in ENROLMENT_DIMENSIONS]} need population.sources")
        if "month" in dims and self.population.event is None:
            raise ValueError("'month' needs population.event (birth or death)")
        if ("program_pair" in dims) != (self.population.min_programs is not None):
            raise ValueError("'program_pair' and population.min_programs go together")
        if "program_pair" in [c.by.by for c in self.columns if c.by is not None]:
            raise ValueError("'program_pair' is a row breakdown only")
        if any(c.measure == "deaths" for c in self.columns) and self.period != "since_previous":
            raise ValueError("a deaths column needs 'period: since_previous'")
        if self.population.event is not None and self.period is None:
            raise ValueError("an event population needs a 'period' (year or since_previous)")
        if any(c.measure == "households" for c in self.columns) and self.rows:
            raise ValueError("households are counted by community only (no row breakdown)")
        return self

    def fields(self) -> list[str]:
        """The enrolment record fields the kind reads (``by: field``)."""
        dims = [*self.rows, *(c.by for c in self.columns if c.by is not None)]
        return list(dict.fromkeys(d.name for d in dims if d.by == "field" and d.name))


class StatisticsFile(_Strict):
    version: Literal[1]
    timezone: str = "Asia/Shanghai"
    threshold: int = Field(5, ge=1, le=100)
    due: Literal["every_release", "monthly", "quarterly", "yearly"] = "monthly"
    programs: dict[str, str] = Field(default_factory=dict)
    departments: dict[str, str] = Field(min_length=1)
    kinds: dict[str, KindSpec] = Field(min_length=1)

    def due_of(self, kind: str) -> str:
        """When the pipeline writes the kind's forms (reports.report_calendar): its own ``due`` or the file's."""
        return self.kinds[kind].due or self.due

    @field_validator("kinds")
    @classmethod
    def _kind_names(cls, kinds: dict) -> dict:
        bad = [k for k in kinds if not re.match(r"^[a-z][a-z0-9_]{1,40}$", k)]
        if bad:
            raise ValueError(f"kinds {bad} must be lower-case names (letters, digits, _)")
        return kinds

    @model_validator(mode="after")
    def _owners(self):
        bad = [f"{k}: {s.owner!r}" for k, s in self.kinds.items() if s.owner not in self.departments]
        if bad:
            raise ValueError(f"owners not among departments {sorted(self.departments)}: {', '.join(bad)}")
        return self

    def check_sources(self, registry: Mapping[str, DeclaredSource], path: str = "statistics.yaml") -> None:
        """Fail unless every population source is in ``registry`` and every ``by: field`` is one its sources declare."""
        problems = []
        for kind, spec in self.kinds.items():
            sources = spec.population.sources or []
            for i, source in enumerate(sources):
                if source not in registry:
                    problems.append(f"kinds.{kind}.population.sources[{i}]: {source!r} is not a registered source")
            declared = set().union(*(set(registry[s].fields or []) for s in sources if s in registry))
            for field in spec.fields():
                if field not in declared:
                    problems.append(f"kinds.{kind}: field {field!r} is not among the fields its sources declare "
                                    f"({', '.join(sorted(declared)) or 'none'})")
        if problems:
            raise ReportConfigError(f"invalid statistics file {path}:\n  " + "\n  ".join(problems))


def load_statistics(path: Path | str = STATISTICS_FILE) -> StatisticsFile:
    """Load and validate a statistics file (its sources are checked by :meth:`StatisticsFile.check_sources`)."""
    data = read_policy(path, ReportConfigError, "statistics file")
    return validate_policy(data, StatisticsFile, path, ReportConfigError, "statistics file")


@lru_cache(maxsize=1)
def shipped_statistics() -> StatisticsFile:
    """The report kinds the hub ships (``reports/statistics.yaml``)."""
    return load_statistics(STATISTICS_FILE)


def report_kinds() -> dict[str, KindSpec]:
    """The declared report kinds, in file order."""
    return dict(shipped_statistics().kinds)
