"""One department's scorecard figures: its sources' quality, duplicates, conflicts, findings and trend.

Read from the warehouse through :mod:`warehouse.quality` (aggregates only: values are compared in
SQL and only counted); :mod:`reports.department_scorecard` draws and writes the pages.

* **validity and completeness** per source — as graded on the all-department scorecard
  (:mod:`reports.scorecard`, whose figures are reused);
* **duplicates within the department** — records of one source that share a master id (the same
  person enrolled twice on one platform) and masters enrolled on two or more of the department's
  own platforms (typed in again);
* **conflicts with other departments** — masters whose name / sex / birth date as a source of this
  department gives it disagrees with the value another department's source gives, and the open
  audit findings the department owns;
* **trend across releases** — per release of the latest ``TREND_RELEASES``: published records and duplicates,
  rows and ID validity at the release's gate run, findings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from reports.render import generated_time
from reports.scorecard import (
    DEFAULT_DEPARTMENT_TITLES,
    DEPARTMENT_PAGE,
    DepartmentCard,
    Scorecard,
    SourceCard,
    collect_scorecard,
)
from warehouse import quality

__all__ = [
    "CONFLICT_FIELDS",
    "ID_VALIDITY_EXPECTATION",
    "KIND_LABELS",
    "OTHER",
    "DepartmentScorecard",
    "FieldConflicts",
    "ReleasePoint",
    "SourceDuplicates",
    "collect_department_scorecards",
    "department_scorecard_file",
]

#: Fields whose disagreement with another department is reported (``mpi.golden_conflict.field``).
CONFLICT_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("name", "姓名", "name"),
    ("sex", "性别", "sex"),
    ("birth_date", "出生日期", "birth date"),
)
#: The source gate's ID-validity expectation: its unexpected count is the records without a usable ID number.
ID_VALIDITY_EXPECTATION = "expect_id_numbers_to_be_mostly_valid"
OTHER = "_other"  # sources that belong to no department given
#: How many releases the trend shows, the latest last: a hub that publishes daily would otherwise count a year of
#: releases' enrolments again on every run, and a chart of hundreds of points reads as a smear.
TREND_RELEASES = 30

#: Labels of the audit finding kinds (``warehouse.findings``; unknown kinds show their code).
KIND_LABELS: dict[str, tuple[str, str]] = {
    "deceased_active": ("死亡后仍在享受待遇", "deceased but still active on a roll"),
    "exclusive_programs": ("同时参加互斥项目", "enrolled in mutually exclusive programmes"),
    "sex_conflict": ("性别不一致", "sex conflicts"),
    "birth_date_conflict": ("出生日期不一致", "birth date conflicts"),
    "shared_id_number": ("身份证号被他人使用", "ID number used by another person"),
}
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def department_scorecard_file(department: str) -> str:
    """The page's file name, ``scorecard_<department>.html``; the key must be a plain name."""
    if not _SAFE_KEY.match(department) or ".." in department:
        raise ValueError(f"department key {department!r} cannot name a file: use letters, digits, '_', '-' or '.'")
    return DEPARTMENT_PAGE.format(department)


@dataclass(frozen=True)
class SourceDuplicates:
    """One source's records (with a master id) and those that share a master id within the source."""

    source: str
    records: int
    masters: int
    duplicate_masters: int  # masters with two or more records in this source

    @property
    def duplicate_records(self) -> int:
        """Records beyond the first of each master: what a clean roll would not hold."""
        return self.records - self.masters


@dataclass(frozen=True)
class FieldConflicts:
    """Masters whose value of ``field`` from this department disagrees with another department's."""

    field: str
    masters: int
    not_chosen: int  # of those, masters whose golden value is none of this department's values
    by_department: dict[str, int]  # other department -> masters
    by_source: dict[str, int]  # this department's source -> masters


@dataclass(frozen=True)
class ReleasePoint:
    """The department's figures in one release."""

    release_no: int
    published_at: dt.datetime | None
    withdrawn: bool
    records: dict[str, int]  # source -> published enrolments
    masters: int
    duplicate_records: int  # within a source, summed over sources
    cross_source_masters: int
    gate_rows: dict[str, int]  # source -> rows its suite saw at the release's gate run
    gate_valid: dict[str, int]  # source -> of those, with a usable ID number
    findings: dict[str, int] | None  # kind -> findings counted for the release; None: not audited

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    @property
    def id_valid_rate(self) -> float | None:
        rows = sum(self.gate_rows[s] for s in self.gate_valid)
        return sum(self.gate_valid.values()) / rows if rows else None

    def source_id_valid_rate(self, source: str) -> float | None:
        rows = self.gate_rows.get(source)
        if not rows or source not in self.gate_valid:
            return None
        return self.gate_valid[source] / rows

    @property
    def total_findings(self) -> int | None:
        return None if self.findings is None else sum(self.findings.values())


@dataclass
class DepartmentScorecard:
    key: str
    title: str
    generated_at: dt.datetime
    card: DepartmentCard  # validity, completeness, quarantine, gates and grades of the sources
    duplicates: list[SourceDuplicates]
    cross_source_masters: int  # masters on two or more of the department's sources
    overlaps: dict[tuple[str, str], int]  # (source, source) -> masters on both
    conflicts: list[FieldConflicts]
    conflict_masters: int  # masters with any reported conflict
    audited: bool  # any audit run recorded (audit.finding or audit.finding_count not empty)
    open_findings: dict[str, int]  # kind -> open findings the department owns
    last_audited_release: int | None
    trend: list[ReleasePoint]
    current_release: int | None
    other_departments: dict[str, str] = field(default_factory=dict)  # key -> title, for labels

    @property
    def sources(self) -> list[SourceCard]:
        return self.card.sources

    @property
    def source_names(self) -> list[str]:
        return [s.source for s in self.card.sources]

    @property
    def duplicate_records(self) -> int:
        return sum(d.duplicate_records for d in self.duplicates)


# --------------------------------------------------------------------------- reading the warehouse


def _duplicates(conn: sa.Connection, mine: list[str]) -> tuple[list[SourceDuplicates], int, dict[tuple[str, str], int]]:
    per_source, cross, pairs = quality.enrolled_overlaps(conn, mine)
    duplicates = [SourceDuplicates(s, *per_source.get(s, (0, 0, 0))) for s in mine]
    order = {s: i for i, s in enumerate(mine)}
    overlaps: dict[tuple[str, str], int] = {}
    for i, a in enumerate(mine):
        for b in mine[i + 1:]:
            key = (a, b) if a < b else (b, a)
            overlaps[tuple(sorted((a, b), key=order.__getitem__))] = pairs.get(key, 0)
    return duplicates, cross, overlaps


def _conflicts(conn: sa.Connection, mine: list[str], department_of: Mapping[str, str]) -> tuple[list[FieldConflicts], int]:
    """Per field: masters where a value given by one of ``mine`` differs from a value given by another department."""
    found = quality.value_conflicts(conn, mine, department_of, [f for f, _, _ in CONFLICT_FIELDS], OTHER)
    out = []
    for name, _, _ in CONFLICT_FIELDS:
        masters, not_chosen = found["totals"].get(name, (0, 0))
        out.append(FieldConflicts(name, masters, not_chosen, found["by_department"].get(name, {}),
                                  found["by_source"].get(name, {})))
    return out, found["masters"]


def _trend(conn: sa.Connection, key: str, mine: list[str]) -> list[ReleasePoint]:
    releases = quality.release_history(conn)[-TREND_RELEASES:]
    if not releases:
        return []
    enrolled = quality.enrolment_per_release(conn, mine, since=releases[0]["release_no"])
    rows, valid = quality.gate_rows_per_release(conn, mine, ID_VALIDITY_EXPECTATION)
    findings, audited_releases = quality.findings_per_release(conn, key)
    points = []
    for rel in releases:
        n = rel["release_no"]
        points.append(ReleasePoint(
            release_no=n, published_at=rel["published_at"], withdrawn=bool(rel["withdrawn"]),
            records={s: enrolled["records"].get(n, {}).get(s, 0) for s in mine},
            masters=int(enrolled["masters"].get(n, 0)), duplicate_records=enrolled["duplicates"].get(n, 0),
            cross_source_masters=int(enrolled["cross"].get(n, 0)),
            gate_rows=rows.get(n, {}), gate_valid=valid.get(n, {}),
            findings=findings.get(n, {}) if n in audited_releases else None))
    return points


def collect_department_scorecards(conn: sa.Connection, departments: Mapping[str, Sequence[str]],
                                  titles: Mapping[str, str] | None = None, *,
                                  source_titles: Mapping[str, str] | None = None,
                                  source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                                  now: dt.datetime | None = None,
                                  overall: Scorecard | None = None) -> dict[str, DepartmentScorecard]:
    """Read every department's figures from the warehouse (aggregates only), keyed by department.

    ``overall``: the all-department figures when the caller collected them already."""
    all_titles = {**DEFAULT_DEPARTMENT_TITLES, **(titles or {})}
    mapping = {key: list(dict.fromkeys(sources)) for key, sources in departments.items()}
    for key in mapping:
        department_scorecard_file(key)  # a bad key fails before anything is read
    if overall is None:
        overall = collect_scorecard(conn, mapping, all_titles, source_titles=source_titles,
                                    source_thresholds=source_thresholds, now=now)
    cards = {d.key: d for d in overall.departments}
    department_of = {s: key for key, sources in mapping.items() for s in sources}
    # sources the warehouse holds that no department was given count as "other" departments' sources
    for extra in quality.sources_held(conn):
        department_of.setdefault(extra, OTHER)
    current = quality.current_release_no(conn)
    generated = generated_time(now)
    out: dict[str, DepartmentScorecard] = {}
    for key, mine in mapping.items():
        duplicates, cross, overlaps = _duplicates(conn, mine)
        conflicts, conflict_masters = _conflicts(conn, mine, department_of)
        audited, open_findings, last_audited = quality.open_findings(conn, key)
        out[key] = DepartmentScorecard(
            key=key, title=all_titles.get(key, key), generated_at=generated, card=cards[key],
            duplicates=duplicates, cross_source_masters=cross, overlaps=overlaps, conflicts=conflicts,
            conflict_masters=conflict_masters, audited=audited, open_findings=open_findings,
            last_audited_release=last_audited, trend=_trend(conn, key, mine), current_release=current,
            other_departments={k: all_titles.get(k, k) for k in mapping if k != key})
    return out
