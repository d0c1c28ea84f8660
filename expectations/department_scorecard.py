"""A data-quality scorecard per department, with charts: data goes to the department that owns it.

:func:`build_department_scorecards` writes one self-contained page per department
(``scorecard_<department>.html``, beside the all-department ``scorecard.html``) holding only that
department's sources:

* **validity and completeness** per source — records in ``std.resident``, the ID validity rate and
  the ID-number status codes, the usable share of each key field, quarantine and the latest source
  gate, graded as in :mod:`expectations.scorecard` (whose figures are reused);
* **duplicates within the department** — records of one source that share a master id
  (``mpi.crosswalk``: the same person enrolled twice on one platform) and masters enrolled on two or
  more of the department's own platforms (typed in again);
* **conflicts with other departments** — masters whose name / sex / birth date as a source of this
  department gives it disagrees with the value another department's source gives
  (``mpi.golden_conflict``), and the open audit findings the department owns (``audit.finding``);
* **trend across releases** — per release: published records and duplicates
  (``publish.enrolment``), rows and ID validity at the release's gate run (``audit.validation_suite``
  / ``audit.validation_result``), findings (``audit.finding_count``).

Three PNG charts (matplotlib, Agg, a CJK font when one is installed; English-only labels otherwise)
are embedded as base64 ``<img>``. The page holds aggregates only — counts, shares, status codes,
source, field and finding-kind names — never a name, ID number, phone or address: values are
compared in SQL and only counted. Every string is escaped; no JavaScript, no network resources.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from expectations.scorecard import _CSS as scorecard_css
from expectations.scorecard import (
    DEFAULT_DEPARTMENT_TITLES,
    KEY_FIELDS,
    SCORECARD_FILE,
    THRESHOLDS,
    DepartmentCard,
    Scorecard,
    SourceCard,
    _aware,
    _e,
    _exists,
    _light,
    _num,
    _pct,
    _th,
    _when,
    collect_scorecard,
)
from expectations.sources import SOURCE_SUITE_PREFIX
from schemas import id_number

__all__ = [
    "CONFLICT_FIELDS",
    "DepartmentScorecard",
    "FieldConflicts",
    "ReleasePoint",
    "SourceDuplicates",
    "build_department_scorecards",
    "cjk_font",
    "collect_department_scorecards",
    "department_scorecard_file",
    "render_charts",
    "render_department_scorecard",
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
    return f"scorecard_{department}.html"


# --------------------------------------------------------------------------- the figures


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
    # records still in std only: a crosswalk row of a record deleted since is no enrolment any more
    base = ("SELECT c.source, c.master_id FROM mpi.crosswalk c JOIN std.resident r USING (source, source_record_id)"
            " WHERE c.source = ANY(:mine)")
    params = {"mine": mine}
    per_source = {r.source: r for r in conn.execute(sa.text(
        f"SELECT source, count(*) AS records, count(DISTINCT master_id) AS masters FROM ({base}) x GROUP BY source"),
        params)}
    twice = dict(conn.execute(sa.text(
        f"SELECT source, count(*) FROM (SELECT source, master_id FROM ({base}) x GROUP BY 1, 2"
        " HAVING count(*) > 1) m GROUP BY source"), params).all())
    duplicates = [SourceDuplicates(s, int(per_source[s].records) if s in per_source else 0,
                                   int(per_source[s].masters) if s in per_source else 0, int(twice.get(s, 0)))
                  for s in mine]
    cross, overlaps = _overlaps(conn, base, params, mine)
    return duplicates, cross, overlaps


def _overlaps(conn: sa.Connection, base: str, params: dict, mine: list[str]) -> tuple[int, dict[tuple[str, str], int]]:
    cross = conn.execute(sa.text(
        f"SELECT count(*) FROM (SELECT master_id FROM ({base}) x GROUP BY master_id"
        " HAVING count(DISTINCT source) > 1) m"), params).scalar_one()
    pairs = {(r.a, r.b): int(r.n) for r in conn.execute(sa.text(
        f"WITH x AS (SELECT DISTINCT source, master_id FROM ({base}) b)"
        " SELECT a.source AS a, b.source AS b, count(*) AS n FROM x a JOIN x b"
        " ON a.master_id = b.master_id AND a.source < b.source GROUP BY 1, 2"), params)}
    order = {s: i for i, s in enumerate(mine)}
    overlaps: dict[tuple[str, str], int] = {}
    for i, a in enumerate(mine):
        for b in mine[i + 1:]:
            key = (a, b) if a < b else (b, a)
            overlaps[tuple(sorted((a, b), key=order.__getitem__))] = pairs.get(key, 0)
    return int(cross), overlaps


def _conflicts(conn: sa.Connection, mine: list[str], department_of: Mapping[str, str]) -> tuple[list[FieldConflicts], int]:
    """Per field: masters where a value given by one of ``mine`` differs from a value given by another department.

    Values are compared in SQL and never leave the database: only counts come back.
    """
    sources = sorted(department_of)
    params = {"mine": mine, "fields": [f for f, _, _ in CONFLICT_FIELDS],
              "src": sources, "dept": [department_of[s] for s in sources], "other": OTHER}
    cte = (
        "WITH dept AS (SELECT * FROM unnest(CAST(:src AS text[]), CAST(:dept AS text[])) AS d (source, department)),"
        " v AS (SELECT master_id, field, value, chosen, sources FROM mpi.golden_conflict WHERE field = ANY(:fields)),"
        # one row per (master, field, my source, other department) whose values disagree
        " pair AS (SELECT DISTINCT a.master_id, a.field, ms.source AS my_source,"
        "                 coalesce(d.department, :other) AS other_department"
        "          FROM v a CROSS JOIN LATERAL unnest(a.sources) AS ms (source)"
        "          JOIN v b ON b.master_id = a.master_id AND b.field = a.field AND b.value <> a.value"
        "          CROSS JOIN LATERAL unnest(b.sources) AS os (source)"
        "          LEFT JOIN dept d ON d.source = os.source"
        "          WHERE ms.source = ANY(:mine) AND os.source <> ALL(:mine))")
    totals = {r.field: r for r in conn.execute(sa.text(
        cte + ", hit AS (SELECT DISTINCT master_id, field FROM pair)"
        " SELECT h.field, count(*) AS masters,"
        "        count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM v WHERE v.master_id = h.master_id"
        "                         AND v.field = h.field AND v.chosen AND v.sources && CAST(:mine AS text[])))"
        "          AS not_chosen"
        " FROM hit h GROUP BY h.field"), params)}
    by_department: dict[str, dict[str, int]] = {}
    for r in conn.execute(sa.text(
            cte + " SELECT field, other_department, count(DISTINCT master_id) AS n FROM pair GROUP BY 1, 2 ORDER BY 1, 2"),
            params):
        by_department.setdefault(r.field, {})[r.other_department] = int(r.n)
    by_source: dict[str, dict[str, int]] = {}
    for r in conn.execute(sa.text(
            cte + " SELECT field, my_source, count(DISTINCT master_id) AS n FROM pair GROUP BY 1, 2 ORDER BY 1, 2"),
            params):
        by_source.setdefault(r.field, {})[r.my_source] = int(r.n)
    any_masters = conn.execute(sa.text(cte + " SELECT count(DISTINCT master_id) FROM pair"), params).scalar_one()
    out = []
    for name, _, _ in CONFLICT_FIELDS:
        t = totals.get(name)
        out.append(FieldConflicts(name, int(t.masters) if t else 0, int(t.not_chosen) if t else 0,
                                  by_department.get(name, {}), by_source.get(name, {})))
    return out, int(any_masters)


def _findings(conn: sa.Connection, key: str) -> tuple[bool, dict[str, int], int | None]:
    if not (_exists(conn, "audit.finding") and _exists(conn, "audit.finding_count")):
        return False, {}, None
    audited = conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM audit.finding) OR EXISTS (SELECT 1 FROM audit.finding_count)")).scalar_one()
    if not audited:
        return False, {}, None
    open_ = {r.kind: int(r.n) for r in conn.execute(sa.text(
        "SELECT kind, count(*) AS n FROM audit.finding WHERE department = :d AND status = 'open'"
        " GROUP BY kind ORDER BY kind"), {"d": key})}
    last = conn.execute(sa.text(
        "SELECT greatest((SELECT max(release_no) FROM audit.finding_count),"
        "                (SELECT max(last_release) FROM audit.finding))")).scalar_one()
    return True, open_, None if last is None else int(last)


def _trend(conn: sa.Connection, key: str, mine: list[str]) -> list[ReleasePoint]:
    releases = conn.execute(sa.text(
        "SELECT release_no, published_at, withdrawn_at IS NOT NULL AS withdrawn, validation_run_id"
        " FROM publish.release ORDER BY release_no")).mappings().all()
    if not releases:
        return []
    params = {"mine": mine}
    enrolment = "SELECT release_no, source, master_id FROM publish.enrolment WHERE source = ANY(:mine)"
    records: dict[int, dict[str, int]] = {}
    dups: dict[int, int] = {}
    for r in conn.execute(sa.text(
            f"SELECT release_no, source, count(*) AS n, count(DISTINCT master_id) AS m FROM ({enrolment}) e"
            " GROUP BY 1, 2"), params):
        records.setdefault(r.release_no, {})[r.source] = int(r.n)
        dups[r.release_no] = dups.get(r.release_no, 0) + int(r.n) - int(r.m)
    masters = dict(conn.execute(sa.text(
        f"SELECT release_no, count(DISTINCT master_id) FROM ({enrolment}) e GROUP BY 1"), params).all())
    cross = dict(conn.execute(sa.text(
        f"SELECT release_no, count(*) FROM (SELECT release_no, master_id FROM ({enrolment}) e"
        " GROUP BY 1, 2 HAVING count(DISTINCT source) > 1) m GROUP BY 1"), params).all())
    suites = [SOURCE_SUITE_PREFIX + s for s in mine]
    rows: dict[int, dict[str, int]] = {}
    valid: dict[int, dict[str, int]] = {}
    if _exists(conn, "audit.validation_suite"):
        for r in conn.execute(sa.text(
                "SELECT p.release_no, s.suite, s.row_count,"
                "       (SELECT sum(v.unexpected_count) FROM audit.validation_result v WHERE v.run_id = s.run_id"
                "        AND v.suite = s.suite AND v.expectation = :exp) AS invalid,"
                "       (SELECT count(*) FROM audit.validation_result v WHERE v.run_id = s.run_id"
                "        AND v.suite = s.suite AND v.expectation = :exp AND v.unexpected_count IS NOT NULL) AS checked"
                " FROM publish.release p JOIN audit.validation_suite s ON s.run_id = p.validation_run_id"
                " WHERE s.suite = ANY(:suites) AND s.row_count IS NOT NULL"),
                {"suites": suites, "exp": ID_VALIDITY_EXPECTATION}):
            source = r.suite[len(SOURCE_SUITE_PREFIX):]
            rows.setdefault(r.release_no, {})[source] = int(r.row_count)
            if r.checked:
                valid.setdefault(r.release_no, {})[source] = int(r.row_count) - int(r.invalid or 0)
    findings: dict[int, dict[str, int]] = {}
    if _exists(conn, "audit.finding_count"):
        for r in conn.execute(sa.text(
                "SELECT release_no, kind, findings FROM audit.finding_count WHERE department = :d"
                " ORDER BY release_no, kind"), {"d": key}):
            findings.setdefault(r.release_no, {})[r.kind] = int(r.findings)
        audited_releases = set(conn.execute(sa.text("SELECT DISTINCT release_no FROM audit.finding_count")).scalars())
    else:
        audited_releases = set()
    points = []
    for rel in releases:
        n = rel["release_no"]
        points.append(ReleasePoint(
            release_no=n, published_at=rel["published_at"], withdrawn=bool(rel["withdrawn"]),
            records={s: records.get(n, {}).get(s, 0) for s in mine}, masters=int(masters.get(n, 0)),
            duplicate_records=dups.get(n, 0), cross_source_masters=int(cross.get(n, 0)),
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
    for extra in conn.execute(sa.text(
            "SELECT DISTINCT source FROM mpi.crosswalk UNION SELECT DISTINCT source FROM std.resident")).scalars():
        department_of.setdefault(extra, OTHER)
    current = conn.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()
    generated = _aware(now or dt.datetime.now())
    out: dict[str, DepartmentScorecard] = {}
    for key, mine in mapping.items():
        duplicates, cross, overlaps = _duplicates(conn, mine)
        conflicts, conflict_masters = _conflicts(conn, mine, department_of)
        audited, open_findings, last_audited = _findings(conn, key)
        out[key] = DepartmentScorecard(
            key=key, title=all_titles.get(key, key), generated_at=generated, card=cards[key],
            duplicates=duplicates, cross_source_masters=cross, overlaps=overlaps, conflicts=conflicts,
            conflict_masters=conflict_masters, audited=audited, open_findings=open_findings,
            last_audited_release=last_audited, trend=_trend(conn, key, mine),
            current_release=None if current is None else int(current),
            other_departments={k: all_titles.get(k, k) for k in mapping if k != key})
    return out


# --------------------------------------------------------------------------- charts

#: Fonts tried first for Chinese labels; any other installed font with "CJK" in its name comes next.
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Microsoft YaHei", "PingFang SC", "SimHei", "Noto Sans CJK TC", "Noto Sans CJK JP",
             "Noto Serif CJK SC", "AR PL UMing CN")
_PROBE = "民政卫健人社"


@functools.lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The family name of an installed font that has Chinese glyphs, or None (charts fall back to English)."""
    from matplotlib import font_manager, ft2font

    files: dict[str, str] = {}
    for entry in font_manager.fontManager.ttflist:
        files.setdefault(entry.name, entry.fname)
    names = [n for n in CJK_FONTS if n in files]
    names += sorted(n for n in files if ("CJK" in n or "Han Sans" in n) and n not in names)
    for name in names:
        try:
            charmap = ft2font.FT2Font(files[name]).get_charmap()
        except Exception:  # an unreadable font file: try the next one
            continue
        if all(ord(c) in charmap for c in _PROBE):
            return name
    return None


class _Labels:
    def __init__(self, cjk: bool):
        self.cjk = cjk

    def __call__(self, zh: str, en: str, sep: str = " ") -> str:
        return f"{zh}{sep}{en}" if self.cjk else en

    def text(self, value: str) -> str:
        """A title from the caller: its CJK part only shows with a CJK font."""
        if self.cjk:
            return value
        stripped = re.sub(r"[\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]+", "", value).strip(" ()（）")
        return stripped or value.encode("ascii", "replace").decode()


_STATUS_COLOURS = {
    id_number.VALID: "#1e8e3e", id_number.UPGRADED_FROM_15: "#81c995", id_number.CHECKSUM_ERROR: "#d93025",
    id_number.BAD_REGION: "#f29900", id_number.BAD_DATE: "#e37400", id_number.PLACEHOLDER: "#a142f4",
    id_number.MALFORMED: "#b31412", id_number.MISSING: "#9aa0a6",
}
_PALETTE = ("#1a73e8", "#e8710a", "#12b5cb", "#9334e6", "#e52592", "#188038", "#f9ab00", "#5f6368")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=11, color="#5f6368", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#dadce0")


def _quality_chart(d: DepartmentScorecard, L: _Labels) -> bytes:
    sources = d.sources
    n = max(len(sources), 1)
    fig = _figure(12, 1.9 + 0.5 * n)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.25])
    names = [s.source for s in sources]
    # left: ID-number status codes as shares of each source's records
    if any(s.records for s in sources):
        y = range(len(sources))
        start = [0.0] * len(sources)
        for status in id_number.STATUSES:
            shares = [s.id_statuses.get(status, 0) / s.records if s.records else 0 for s in sources]
            if not any(shares):
                continue
            left.barh(list(y), [v * 100 for v in shares], left=[v * 100 for v in start], height=0.6,
                      color=_STATUS_COLOURS.get(status, "#5f6368"), label=status)
            start = [a + b for a, b in zip(start, shares)]
        for i, s in enumerate(sources):
            label = _pct(s.id_valid_rate) if s.records else L("无记录", "no records")
            left.text(101, i, label, va="center", fontsize=9)
        left.set_yticks(list(y), names)
        left.invert_yaxis()
        left.set_xlim(0, 118)
        left.set_xticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"])
        left.axvline(THRESHOLDS["id_valid_green"] * 100, color="#1e8e3e", lw=0.8, ls="--")
        left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    else:
        _empty(left, L("无记录", "no records"))
    left.set_title(L("证件号码状态", "ID number status (share of records)"), fontsize=11)
    # right: usable share of each key field, grouped by field, a bar per source
    fields = [f for f in KEY_FIELDS]
    if any(s.records for s in sources):
        width = 0.8 / n
        for i, s in enumerate(sources):
            xs, vs = [], []
            for j, f in enumerate(fields):
                rate = s.id_valid_rate if f.column == "id_number" else s.field_rate(f.column)
                if rate is not None:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    vs.append(rate * 100)
            right.bar(xs, vs, width=width * 0.92, color=_PALETTE[i % len(_PALETTE)], label=s.source)
        right.set_xticks(range(len(fields)), [L(f.zh, f.en, "\n") for f in fields], fontsize=9)
        right.set_ylim(0, 105)
        right.set_yticks([0, 20, 40, 60, 80, 100], ["0%", "20%", "40%", "60%", "80%", "100%"])
        right.axhline(THRESHOLDS["field_green"] * 100, color="#1e8e3e", lw=0.8, ls="--")
        right.axhline(THRESHOLDS["field_red"] * 100, color="#d93025", lw=0.8, ls="--")
        right.legend(fontsize=8, loc="lower left", ncol=min(n, 4), framealpha=0.9)
    else:
        _empty(right, L("无记录", "no records"))
    right.set_title(L("关键字段可用率", "usable key fields (ID validity, completeness)"), fontsize=11)
    return _png(fig)


def _barh(ax, labels: list[str], values: list[int], colour: str | list[str]) -> None:
    y = list(range(len(labels)))
    ax.barh(y, values, height=0.6, color=colour)
    top = max(values) if values else 0
    for i, v in enumerate(values):
        ax.text(v + max(top, 1) * 0.02, i, f"{v:,}", va="center", fontsize=9)
    ax.set_yticks(y, labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, max(top, 1) * 1.2)
    ax.xaxis.get_major_locator().set_params(integer=True)


def _issues_chart(d: DepartmentScorecard, L: _Labels) -> bytes:
    rows = max(len(d.duplicates) + 1 + len(d.overlaps), len(CONFLICT_FIELDS), len(d.open_findings), 3)
    fig = _figure(12, 1.5 + 0.38 * rows)
    dup_ax, conf_ax, find_ax = fig.subplots(1, 3)
    # duplicates within the department
    labels = [f"{x.source}" for x in d.duplicates] + [L("本部门2个以上数据源", "on 2+ own sources")]
    labels += [f"{a} & {b}" for a, b in d.overlaps]
    values = [x.duplicate_records for x in d.duplicates] + [d.cross_source_masters] + list(d.overlaps.values())
    if d.duplicates:
        _barh(dup_ax, labels, values, ["#e8710a"] * len(d.duplicates) + ["#f9ab00"] * (len(labels) - len(d.duplicates)))
    else:
        _empty(dup_ax, L("无数据源", "no sources"))
    dup_ax.set_title(L("部门内重复", "duplicates within the department", "\n"), fontsize=11)
    dup_ax.set_xlabel(L("重复记录 / 主索引人数", "extra records / masters"), fontsize=9)
    # conflicts with other departments, per field, stacked by the other department
    others = sorted({o for c in d.conflicts for o in c.by_department})
    y = list(range(len(d.conflicts)))
    start = [0] * len(d.conflicts)
    for k, other in enumerate(others):
        vals = [c.by_department.get(other, 0) for c in d.conflicts]
        label = L.text(d.other_departments.get(other, other)) if other != OTHER else L("其他", "other")
        conf_ax.barh(y, vals, left=start, height=0.6, color=_PALETTE[(k + 2) % len(_PALETTE)], label=label)
        start = [a + b for a, b in zip(start, vals)]
    top = max([c.masters for c in d.conflicts] + [max(start, default=0), 1])
    for i, c in enumerate(d.conflicts):
        conf_ax.text(max(start[i], 0) + top * 0.02, i, f"{c.masters:,}", va="center", fontsize=9)
    conf_ax.set_yticks(y, [L(zh, en, "\n") for _, zh, en in CONFLICT_FIELDS], fontsize=9)
    conf_ax.invert_yaxis()
    conf_ax.set_xlim(0, top * 1.25)
    conf_ax.xaxis.get_major_locator().set_params(integer=True)
    if others:
        conf_ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    conf_ax.set_title(L("与其他部门冲突", "conflicts with other departments", "\n"), fontsize=11)
    conf_ax.set_xlabel(L("主索引人数", "masters"), fontsize=9)
    # open audit findings the department owns
    if not d.audited:
        _empty(find_ax, L("尚未运行审计", "no audit run yet", "\n"))
    elif not d.open_findings:
        _empty(find_ax, L("无未解决的问题", "no open findings", "\n"))
    else:
        kinds = list(d.open_findings)
        _barh(find_ax, [L(*KIND_LABELS[k], "\n") if k in KIND_LABELS else k for k in kinds],
              [d.open_findings[k] for k in kinds], "#d93025")
    find_ax.set_title(L("未解决的审计问题", "open audit findings", "\n"), fontsize=11)
    return _png(fig)


def _trend_chart(d: DepartmentScorecard, L: _Labels) -> bytes:
    fig = _figure(12, 3.6)
    rec_ax, val_ax, iss_ax = fig.subplots(1, 3)
    points = d.trend
    if not points:
        for ax in (rec_ax, val_ax, iss_ax):
            _empty(ax, L("尚无发布版本", "no release yet", "\n"))
    else:
        xs = [p.release_no for p in points]
        for i, s in enumerate(d.source_names):
            colour = _PALETTE[i % len(_PALETTE)]
            rec_ax.plot(xs, [p.records.get(s, 0) for p in points], marker="o", color=colour, label=s)
            rates = [p.source_id_valid_rate(s) for p in points]
            val_ax.plot(xs, [None if r is None else r * 100 for r in rates], marker="o", color=colour, label=s)
        val_ax.plot(xs, [None if p.id_valid_rate is None else p.id_valid_rate * 100 for p in points],
                    marker="s", color="#202124", ls="--", label=L("全部门", "department"))
        val_ax.axhline(THRESHOLDS["id_valid_green"] * 100, color="#1e8e3e", lw=0.8, ls=":")
        iss_ax.plot(xs, [p.duplicate_records for p in points], marker="o", color="#e8710a",
                    label=L("源内重复记录", "duplicate records"))
        iss_ax.plot(xs, [p.cross_source_masters for p in points], marker="o", color="#f9ab00",
                    label=L("跨本部门数据源", "on 2+ own sources"))
        audited = [(p.release_no, p.total_findings) for p in points if p.total_findings is not None]
        if audited:
            iss_ax.plot([a for a, _ in audited], [b for _, b in audited], marker="^", color="#d93025",
                        label=L("审计问题", "audit findings"))
        ticks = [f"R{p.release_no}" + ("×" if p.withdrawn else "") for p in points]
        for ax in (rec_ax, val_ax, iss_ax):
            ax.set_xticks(xs, ticks, fontsize=9)
            ax.grid(True, color="#e8eaed")
            if len(xs) == 1:
                ax.set_xlim(xs[0] - 1, xs[0] + 1)
            ax.legend(fontsize=8, framealpha=0.9)
        rec_ax.yaxis.get_major_locator().set_params(integer=True)
        iss_ax.yaxis.get_major_locator().set_params(integer=True)
        iss_ax.set_ylim(bottom=0)
        val_ax.yaxis.set_major_formatter("{x:.0f}%")
    rec_ax.set_title(L("发布记录数", "published records", "\n"), fontsize=11)
    val_ax.set_title(L("证件号码有效率", "ID validity at the gate", "\n"), fontsize=11)
    iss_ax.set_title(L("重复与审计问题", "duplicates and findings", "\n"), fontsize=11)
    rec_ax.set_xlabel(L("发布版本", "release"), fontsize=9)
    return _png(fig)


def render_charts(d: DepartmentScorecard) -> dict[str, bytes]:
    """The page's charts as PNG bytes: ``quality``, ``issues`` and ``trend``."""
    import matplotlib

    font = cjk_font()
    families = [font, "DejaVu Sans"] if font else ["DejaVu Sans"]
    L = _Labels(font is not None)
    with matplotlib.rc_context({"font.family": families, "axes.unicode_minus": False, "axes.spines.top": False,
                                "axes.spines.right": False}):
        return {"quality": _quality_chart(d, L), "issues": _issues_chart(d, L), "trend": _trend_chart(d, L)}


# --------------------------------------------------------------------------- the page


def _img(png: bytes, chart: str, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="chart" data-chart="{_e(chart)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _kind(kind: str) -> str:
    zh, en = KIND_LABELS.get(kind, ("", kind))
    return f"{_e(zh)} <code>{_e(kind)}</code>" if zh else f"<code>{_e(kind)}</code>"


# the overview's stylesheet, and the tiles, charts and notes only this page has
_CSS = scorecard_css + """
.tiles { display: flex; flex-wrap: wrap; gap: 10px; }
.tile { flex: 1 1 150px; border: 1px solid #dadce0; border-radius: 6px; padding: 8px 12px; background: #fff; }
.tile .v { font-size: 22px; font-weight: 600; }
.tile .k { color: #5f6368; font-size: 12px; }
img.chart { display: block; max-width: 100%; height: auto; margin: 6px 0 10px; border: 1px solid #e8eaed; }
.note { background: #fef7e0; border: 1px solid #f9ab00; padding: 6px 10px; border-radius: 4px; }
"""


def _tiles(d: DepartmentScorecard) -> str:
    findings = (_num(sum(d.open_findings.values())) if d.audited else "—")
    items = [
        ("评级", "grade", _light(d.card.light)),
        ("数据源", "sources", _num(len(d.sources))),
        ("记录", "records in std", _num(d.card.records)),
        ("证件号码有效率", "ID validity", _e(_pct(d.card.id_valid_rate))),
        ("源内重复记录", "duplicate records", _num(d.duplicate_records)),
        ("跨本部门数据源", "masters on 2+ own sources", _num(d.cross_source_masters)),
        ("与其他部门冲突", "masters in conflict", _num(d.conflict_masters)),
        ("未解决审计问题", "open findings", findings),
    ]
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><div class="v">{v}</div><div class="k">{_e(zh)} {_e(en)}</div></div>'
        for zh, en, v in items) + "</div>"


def _quality_section(d: DepartmentScorecard, charts: Mapping[str, bytes]) -> str:
    fields = [f for f in KEY_FIELDS if f.column != "id_number"]
    rows = []
    for s in d.sources:
        missing = "未提供 not supplied" if s.records else "—"
        cells = "".join(
            f'<td class="num">{_e(_pct(s.field_rate(f.column)) if s.field_rate(f.column) is not None else missing)}</td>'
            for f in fields)
        statuses = " · ".join(f"<code>{_e(k)}</code> {_num(v)}" for k, v in s.id_statuses.items()) or "—"
        if s.gate is None:
            gate = '<span class="muted">未运行 not run yet</span>'
        else:
            gate = (f"{'通过 passed' if s.gate.success else '未通过 failed'} "
                    f"{s.gate.successful}/{s.gate.evaluated} <span class=\"muted\">#{s.gate.run_id}</span>")
        title = f'<br><span class="muted">{_e(s.title)}</span>' if s.title else ""
        rows.append(
            f'<tr id="src-{_e(s.source)}"><td><code>{_e(s.source)}</code>{title}</td><td>{_light(s.light)}</td>'
            f'<td class="num">{_num(s.records)}</td><td class="num">{_e(_pct(s.id_valid_rate))}</td>'
            f"<td>{statuses}</td>{cells}<td class=\"num\">{_num(s.quarantined)}</td><td>{gate}</td></tr>")
    heads = "".join(_th(f.zh, f.en, True) for f in fields)
    return (
        '<section id="quality"><h2>数据质量 Validity and completeness</h2>'
        + _img(charts["quality"], "quality", "证件号码状态与关键字段可用率 ID number status and usable key fields per source")
        + f"<table><thead><tr>{_th('数据源', 'source')}{_th('评级', 'grade')}{_th('记录', 'records', True)}"
        f"{_th('证件号码有效率', 'ID validity', True)}{_th('证件号码状态', 'ID number status codes')}{heads}"
        f"{_th('隔离', 'quarantined', True)}{_th('源数据校验', 'latest source gate')}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>")


def _issues_section(d: DepartmentScorecard, charts: Mapping[str, bytes]) -> str:
    dup_rows = "".join(
        f'<tr><td><code>{_e(x.source)}</code></td><td class="num">{_num(x.records)}</td>'
        f'<td class="num">{_num(x.masters)}</td><td class="num">{_num(x.duplicate_masters)}</td>'
        f'<td class="num">{_num(x.duplicate_records)}</td></tr>' for x in d.duplicates)
    overlap_rows = "".join(
        f'<tr><td><code>{_e(a)}</code> &amp; <code>{_e(b)}</code></td><td class="num">{_num(n)}</td></tr>'
        for (a, b), n in d.overlaps.items())
    overlaps = (f"<table><thead><tr>{_th('数据源组合', 'pair of own sources')}{_th('同时在册人数', 'masters on both', True)}"
                f"</tr></thead><tbody>{overlap_rows}</tbody></table>" if overlap_rows else "")

    def others(c: FieldConflicts) -> str:
        return " · ".join(
            f"{_e(d.other_departments.get(k, '其他 other' if k == OTHER else k))} {_num(v)}"
            for k, v in c.by_department.items()) or "—"

    def by_source(c: FieldConflicts) -> str:
        return " · ".join(f"<code>{_e(k)}</code> {_num(v)}" for k, v in c.by_source.items()) or "—"

    conflict_rows = "".join(
        f'<tr><td>{_e(zh)} <span class="muted">{_e(en)}</span></td><td class="num">{_num(c.masters)}</td>'
        f'<td class="num">{_num(c.not_chosen)}</td><td>{others(c)}</td><td>{by_source(c)}</td></tr>'
        for c, (_, zh, en) in zip(d.conflicts, CONFLICT_FIELDS))
    if not d.audited:
        findings = '<p class="note">尚未运行审计 no audit run yet: findings appear here after the first audit.</p>'
    elif not d.open_findings:
        findings = (f'<p>本部门无未解决的审计问题 no open findings owned by this department'
                    f' <span class="muted">(最近审计版本 last audited release {_num(d.last_audited_release)})</span></p>')
    else:
        findings = (f"<table><thead><tr>{_th('问题类型', 'kind')}{_th('未解决', 'open', True)}</tr></thead><tbody>"
                    + "".join(f'<tr><td>{_kind(k)}</td><td class="num">{_num(v)}</td></tr>'
                              for k, v in d.open_findings.items())
                    + f'</tbody></table><p class="muted">最近审计版本 last audited release {_num(d.last_audited_release)}</p>')
    return (
        '<section id="issues"><h2>重复与跨部门冲突 Duplicates and conflicts</h2>'
        + _img(charts["issues"], "issues", "部门内重复、与其他部门冲突、未解决审计问题 duplicates, conflicts and open findings")
        + '<h3 id="duplicates">部门内重复 Duplicates within the department</h3>'
        f"<table><thead><tr>{_th('数据源', 'source')}{_th('记录', 'records with a master id', True)}"
        f"{_th('主索引人数', 'masters', True)}{_th('重复登记人数', 'masters enrolled twice or more', True)}"
        f"{_th('重复记录', 'extra records', True)}</tr></thead><tbody>{dup_rows}</tbody></table>"
        f"<p>在本部门两个及以上数据源登记的人数 masters on two or more of the department's sources:"
        f" <b>{_num(d.cross_source_masters)}</b></p>{overlaps}"
        '<h3 id="conflicts">与其他部门冲突 Conflicts with other departments</h3>'
        f"<table><thead><tr>{_th('字段', 'field')}{_th('冲突人数', 'masters', True)}"
        f"{_th('本部门值未被采用', 'own value not chosen', True)}{_th('对方部门', 'other department: masters')}"
        f"{_th('本部门数据源', 'own source: masters')}</tr></thead><tbody>{conflict_rows}</tbody></table>"
        f'<h3 id="findings">未解决的审计问题 Open audit findings owned by the department</h3>{findings}</section>')


def _trend_row(d: DepartmentScorecard, p: ReleasePoint, tz: dt.tzinfo | None) -> str:
    marks = ""
    if p.withdrawn:
        marks += ' <span class="muted">已撤回 withdrawn</span>'
    if p.release_no == d.current_release:
        marks += " <b>当前 current</b>"
    gate_rows = sum(p.gate_rows.values()) if p.gate_rows else None
    return (f"<tr><td>R{p.release_no}{marks}</td><td>{_e(_when(p.published_at, tz, short=True))}</td>"
            f'<td class="num">{_num(p.total_records)}</td><td class="num">{_num(p.masters)}</td>'
            f'<td class="num">{_num(gate_rows)}</td><td class="num">{_e(_pct(p.id_valid_rate))}</td>'
            f'<td class="num">{_num(p.duplicate_records)}</td><td class="num">{_num(p.cross_source_masters)}</td>'
            f'<td class="num">{_num(p.total_findings)}</td></tr>')


def _trend_section(d: DepartmentScorecard, charts: Mapping[str, bytes], tz: dt.tzinfo | None) -> str:
    if d.trend:
        rows = "".join(_trend_row(d, p, tz) for p in d.trend)
        table = (f"<table><thead><tr>{_th('版本', 'release')}{_th('发布时间', 'published')}"
                 f"{_th('发布记录', 'records', True)}{_th('人数', 'masters', True)}{_th('校验行数', 'gate rows', True)}"
                 f"{_th('证件号码有效率', 'ID validity', True)}{_th('源内重复记录', 'duplicate records', True)}"
                 f"{_th('跨本部门数据源', 'on 2+ own sources', True)}{_th('审计问题', 'findings', True)}</tr></thead>"
                 f"<tbody>{rows}</tbody></table>")
    else:
        table = '<p class="muted">尚无发布版本 no release published yet</p>'
    return ('<section id="trend"><h2>各版本趋势 Trend across releases</h2>'
            + _img(charts["trend"], "trend",
                   "各版本的记录数、证件号码有效率、重复与审计问题 records, ID validity, duplicates and findings per release")
            + table + "</section>")


def _method() -> str:
    return (
        '<section id="method"><h2>口径 How the figures are computed</h2><ul>'
        "<li>记录、证件号码有效率、关键字段可用率、隔离、评级：与全部门评分卡相同（std.resident 当前记录）。"
        " Records, ID validity, usable key fields, quarantine and grades as on the all-department scorecard"
        " (current records in <code>std.resident</code>).</li>"
        "<li>源内重复：同一数据源中主索引号相同的记录（<code>mpi.crosswalk</code>）；重复记录 = 记录数 − 人数。"
        " Duplicates: records of one source sharing a master id; extra records = records − masters.</li>"
        "<li>跨本部门数据源：在本部门两个及以上数据源登记的主索引人数（同一人被重复录入不同平台）。"
        " Masters on two or more of the department's own sources (the same person typed into several platforms).</li>"
        "<li>与其他部门冲突：<code>mpi.golden_conflict</code> 中，本部门数据源给出的姓名/性别/出生日期"
        "与其他部门数据源给出的值不同的主索引人数；"
        "“本部门值未被采用”指主索引采用的值不是本部门的任何值。"
        " Conflicts: masters whose name / sex / birth date from a source of this department differs from the value a"
        " source of another department gives; “own value not chosen”: the golden record took none of this"
        " department's values. Values are compared inside the database; only counts are shown.</li>"
        "<li>审计问题：<code>audit.finding</code> 中本部门负责且未解决的问题；趋势取 <code>audit.finding_count</code>。"
        " Findings: open rows of <code>audit.finding</code> the department owns; the trend is"
        " <code>audit.finding_count</code> per release.</li>"
        "<li>趋势：发布记录取 <code>publish.enrolment</code>；证件号码有效率取该版本所依据的校验运行"
        f"（<code>audit.validation_suite</code> 行数与 <code>{ID_VALIDITY_EXPECTATION}</code> 的异常数）。"
        " Trend: records from <code>publish.enrolment</code> per release; ID validity at the gate run the release"
        f" was published on (rows of <code>audit.validation_suite</code> less the unexpected count of"
        f" <code>{ID_VALIDITY_EXPECTATION}</code>).</li></ul></section>")


def render_department_scorecard(d: DepartmentScorecard, charts: Mapping[str, bytes] | None = None, *,
                                overview_href: str | None = None) -> str:
    """One department's page as HTML text (charts rendered unless given)."""
    charts = charts if charts is not None else render_charts(d)
    tz = d.generated_at.tzinfo
    current = (f"第 {d.current_release} 版 release {d.current_release}" if d.current_release is not None
               else "尚无发布版本 no release yet")
    links = f'<a href="{_e(overview_href)}">全部门评分卡 all-department scorecard</a> · ' if overview_href else ""
    sources = ", ".join(f"<code>{_e(s)}</code>" for s in d.source_names) or "—"
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(d.title)} · 数据质量评分卡 Data-quality scorecard</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1 id="department" data-department="{_e(d.key)}">{_e(d.title)}</h1>'
        f"<p>数据质量评分卡 Data-quality scorecard · <code>{_e(d.key)}</code> · 数据源 sources: {sources}</p>"
        f"<p>生成时间 generated: {_e(_when(d.generated_at, tz, short=True))} · 当前版本 current: {_e(current)}</p>"
        f'<p>{links}<a href="#quality">数据质量 quality</a> · <a href="#issues">重复与冲突 duplicates and conflicts</a>'
        ' · <a href="#trend">趋势 trend</a> · <a href="#method">口径 method</a></p></header>\n'
        f"<main><section id=\"summary\">{_tiles(d)}</section>"
        f"{_quality_section(d, charts)}{_issues_section(d, charts)}{_trend_section(d, charts, tz)}{_method()}</main>\n"
        "<footer>本页只含本部门数据源的汇总数字，不含任何姓名、证件号码、电话或地址。"
        " This page holds aggregates of this department's sources only — never a name, ID number, phone number"
        " or address.</footer>\n</body>\n</html>\n")


def build_department_scorecards(conn: sa.Connection, out_dir: Path, departments: Mapping[str, Sequence[str]],
                                titles: Mapping[str, str] | None = None, *,
                                source_titles: Mapping[str, str] | None = None,
                                source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                                now: dt.datetime | None = None, overall: Scorecard | None = None) -> dict[str, Path]:
    """Write ``out_dir/scorecard_<department>.html`` for each department (key → its source names).

    Each page holds only that department's sources. ``titles`` label departments (defaults for
    civil_affairs, health, social_security); ``source_titles`` and ``source_thresholds`` as for
    :func:`expectations.scorecard.build_scorecard`; ``now`` is the generation time shown. Returns
    department key → page path. Put the pages beside ``scorecard.html``: they link to it when it is there.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cards = collect_department_scorecards(conn, departments, titles, source_titles=source_titles,
                                          source_thresholds=source_thresholds, now=now, overall=overall)
    overview = SCORECARD_FILE if (out_dir / SCORECARD_FILE).is_file() else None
    paths: dict[str, Path] = {}
    for key, card in cards.items():
        name = department_scorecard_file(key)
        path = out_dir / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        tmp.write_text(render_department_scorecard(card, overview_href=overview), encoding="utf-8")
        tmp.replace(path)
        paths[key] = path
    return paths
