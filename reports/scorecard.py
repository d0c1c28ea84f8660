"""The all-department data-quality scorecard: one static HTML page beside the GX Data Docs.

:func:`build_scorecard` reads the warehouse through :mod:`warehouse.quality` (std, the load
batches and quarantine, the validation history, the releases) and writes ``scorecard.html``: per
department and per source, the records in std, the ID validity rate, the completeness of the key
fields, quarantined records, the latest source-gate result with its failing expectations; the
latest ``master_index`` gate run, the current release and the latest publish attempt; and a traffic
light per source and per department, with the rules that set it printed on the page.

The page holds aggregates only — counts, percentages, status codes, source, suite, table, column
and expectation names — never a name, ID number, phone or address. Free text from the history
(GX ``observed`` values, publish reasons) is shown only when it cannot be personal data (no CJK
characters, no run of eleven or more digits); otherwise it is withheld. Every string is escaped.
The page is self-contained: inline CSS, no JavaScript, no network resources.

The caller passes the department → sources mapping, the titles and the per-source thresholds
(this package does not read the source registry or the gate rules).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from reports.render import generated_time, percent, render, write_page
from schemas import addresses, dates, id_number, names, phones, sex
from warehouse import quality
from warehouse.audit import SOURCE_SUITE_PREFIX

__all__ = [
    "DEFAULT_DEPARTMENT_TITLES",
    "KEY_FIELDS",
    "SCORECARD_FILE",
    "THRESHOLDS",
    "DepartmentCard",
    "Failure",
    "GateRun",
    "Scorecard",
    "SourceCard",
    "build_scorecard",
    "collect_scorecard",
    "render_scorecard",
]

SCORECARD_FILE = "scorecard.html"
DEPARTMENT_PAGE = "scorecard_{}.html"  # one department's page (reports.department_scorecard)
DOCS_INDEX = "index.html"  # the GX Data Docs index, in the same folder
MASTER_INDEX_SUITE = "master_index"

DEFAULT_DEPARTMENT_TITLES: dict[str, str] = {
    "civil_affairs": "民政 civil affairs",
    "health": "卫健/计生 health and family planning",
    "social_security": "人社 social security",
}
UNASSIGNED = "_unassigned"
UNASSIGNED_TITLE = "未归属部门 sources not assigned to a department"


@dataclass(frozen=True)
class KeyField:
    column: str  # std.resident column prefix: <column>_status, <column>_raw
    zh: str
    en: str
    usable: tuple[str, ...]  # status codes that count as usable

    @property
    def label(self) -> str:
        return f"{self.zh} {self.en}"


#: The key fields and the status codes (from ``schemas``) under which a value counts as usable.
KEY_FIELDS: tuple[KeyField, ...] = (
    KeyField("name", "姓名", "name", (names.VALID,)),
    KeyField("id_number", "证件号码", "ID number", tuple(id_number.USABLE)),
    KeyField("sex", "性别", "sex", (sex.VALID,)),
    KeyField("birth_date", "出生日期", "birth date", tuple(dates.USABLE)),
    KeyField("phone", "联系电话", "phone", tuple(phones.USABLE)),
    KeyField("address", "地址", "address", (addresses.VALID, addresses.COUNTY_ASSUMED)),
)
#: The key fields graded by completeness (the ID number is graded by validity).
COMPLETENESS_FIELDS: tuple[KeyField, ...] = tuple(f for f in KEY_FIELDS if f.column != "id_number")

#: Traffic-light thresholds (shares, 0–1). A source is red when any red rule holds, amber when any
#: amber rule holds, green otherwise; a department takes the worst light of its sources.
THRESHOLDS: dict[str, float] = {
    "id_valid_green": 0.98,
    "id_valid_red": 0.90,
    "field_green": 0.95,
    "field_red": 0.80,
    "quarantine_green": 0.01,
    "quarantine_red": 0.05,
}
_THRESHOLD_LABELS = {
    "id_valid_green": "ID validity for green", "id_valid_red": "ID validity below which red",
    "field_green": "key field for green", "field_red": "key field below which red",
    "quarantine_green": "quarantined share for green", "quarantine_red": "quarantined share above which red",
}

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"


@dataclass(frozen=True)
class LightStyle:
    label: str
    colour: str


_LIGHT_ORDER = {GREEN: 0, GREY: 1, AMBER: 2, RED: 3}
LIGHTS: dict[str, LightStyle] = {
    GREEN: LightStyle("绿 green", "#1e8e3e"), AMBER: LightStyle("黄 amber", "#f29900"),
    RED: LightStyle("红 red", "#d93025"), GREY: LightStyle("无数据 no data", "#9aa0a6"),
}


# --------------------------------------------------------------------------- the figures


@dataclass(frozen=True)
class Failure:
    """One failing expectation of a gate run (names and counts only)."""

    expectation: str
    table: str | None
    column: str | None
    observed: str | None
    unexpected_count: int | None
    unexpected_percent: float | None


@dataclass(frozen=True)
class GateRun:
    """The latest run of one suite (``source.<name>`` or ``master_index``)."""

    suite: str
    run_id: int
    started_at: dt.datetime | None
    success: bool
    evaluated: int
    successful: int
    failed: int
    docs_path: str | None
    failures: tuple[Failure, ...] = ()


@dataclass
class SourceCard:
    source: str
    title: str | None
    records: int = 0
    id_valid: int = 0
    usable: dict[str, int] = field(default_factory=dict)  # key field -> rows with a usable value
    supplied: dict[str, int] = field(default_factory=dict)  # key field -> rows with any raw value
    id_statuses: dict[str, int] = field(default_factory=dict)
    received: int = 0
    landed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    last_load_at: dt.datetime | None = None
    last_load_status: str | None = None
    gate: GateRun | None = None
    thresholds: dict[str, float] = field(default_factory=lambda: dict(THRESHOLDS))
    light: str = GREY
    reasons: list[str] = field(default_factory=list)

    @property
    def id_valid_rate(self) -> float | None:
        return self.id_valid / self.records if self.records else None

    def field_rate(self, column: str) -> float | None:
        """Share of rows with a usable value; None when there are no rows or the source never supplies the field."""
        if not self.records or not self.supplied.get(column):
            return None
        return self.usable.get(column, 0) / self.records

    @property
    def quarantine_rate(self) -> float | None:
        return self.quarantined / self.received if self.received else None


@dataclass
class DepartmentCard:
    key: str
    title: str
    sources: list[SourceCard]
    light: str = GREY
    reasons: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.sources)

    @property
    def id_valid_rate(self) -> float | None:
        return _ratio(sum(s.id_valid for s in self.sources), self.records)

    def field_rate(self, column: str) -> float | None:
        rows = [s for s in self.sources if s.field_rate(column) is not None]
        return _ratio(sum(s.usable.get(column, 0) for s in rows), sum(s.records for s in rows))

    @property
    def quarantined(self) -> int:
        return sum(s.quarantined for s in self.sources)

    @property
    def gates(self) -> tuple[int, int, int]:
        """(passed, failed, not yet run) latest source gates."""
        passed = sum(1 for s in self.sources if s.gate is not None and s.gate.success)
        failed = sum(1 for s in self.sources if s.gate is not None and not s.gate.success)
        return passed, failed, len(self.sources) - passed - failed


@dataclass
class Scorecard:
    generated_at: dt.datetime
    departments: list[DepartmentCard]
    master_index: GateRun | None
    release: dict | None
    publish_attempt: dict | None
    validation_runs: int


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- reading the warehouse


def _gate_runs(conn: sa.Connection, *, prefix: str | None = None, suite: str | None = None) -> dict[str, GateRun]:
    """The latest run of each suite named ``suite`` or starting with ``prefix``."""
    latest: dict[str, GateRun] = {}
    for r in quality.latest_suite_runs(conn, prefix=prefix, suite=suite):
        failures = tuple(
            Failure(f["expectation"], f["table_name"], f["column_name"], f["observed"],
                    None if f["unexpected_count"] is None else int(f["unexpected_count"]), f["unexpected_percent"])
            for f in r["failures"])
        latest[r["suite"]] = GateRun(r["suite"], int(r["run_id"]), r["started_at"], bool(r["success"]),
                                     int(r["evaluated"]), int(r["successful"]), int(r["failed"]),
                                     r["docs_path"] or None, failures)
    return latest


def _source_card(name: str, title: str | None, figures: Mapping, load: Mapping, gate: GateRun | None,
                 thresholds: Mapping[str, float]) -> SourceCard:
    card = SourceCard(
        source=name, title=title,
        records=int(figures.get("records", 0)),
        id_valid=int(figures.get("usable_id_number", 0)),
        usable={f.column: int(figures.get(f"usable_{f.column}", 0)) for f in KEY_FIELDS},
        supplied={f.column: int(figures.get(f"supplied_{f.column}", 0)) for f in KEY_FIELDS},
        id_statuses=dict(figures.get("id_statuses", {})),
        received=load.get("received", 0), landed=load.get("landed", 0), duplicates=load.get("duplicates", 0),
        quarantined=load.get("quarantined", 0), quarantine_reasons=dict(load.get("quarantine_reasons", {})),
        last_load_at=load.get("last_load_at"), last_load_status=load.get("last_load_status"),
        gate=gate, thresholds={**THRESHOLDS, **thresholds},
    )
    _grade_source(card)
    return card


def _checked_overrides(source_thresholds: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    overrides = {name: dict(values) for name, values in (source_thresholds or {}).items()}
    for name, values in overrides.items():
        unknown = sorted(set(values) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"source_thresholds[{name!r}]: unknown key(s) {unknown}; expected some of {sorted(THRESHOLDS)}")
    return overrides


def collect_scorecard(conn: sa.Connection, departments: Mapping[str, Sequence[str]],
                      department_titles: Mapping[str, str] | None = None, *,
                      source_titles: Mapping[str, str] | None = None,
                      source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                      now: dt.datetime | None = None) -> Scorecard:
    """Read the scorecard's figures from the warehouse (aggregates only) and grade them."""
    titles = {**DEFAULT_DEPARTMENT_TITLES, **(department_titles or {})}
    source_titles = source_titles or {}
    overrides = _checked_overrides(source_thresholds)
    std = quality.std_figures(conn, {f.column: f.usable for f in KEY_FIELDS})
    loads = quality.load_figures(conn)
    gates = _gate_runs(conn, prefix=SOURCE_SUITE_PREFIX)

    mapping: dict[str, list[str]] = {key: list(dict.fromkeys(sources)) for key, sources in departments.items()}
    assigned = {s for sources in mapping.values() for s in sources}
    seen = set(std) | set(loads) | {suite[len(SOURCE_SUITE_PREFIX):] for suite in gates}
    unassigned = sorted(seen - assigned)
    if unassigned:
        mapping[UNASSIGNED] = unassigned
        titles.setdefault(UNASSIGNED, UNASSIGNED_TITLE)

    cards = []
    for key, sources in mapping.items():
        department = DepartmentCard(key, titles.get(key, key), [
            _source_card(name, source_titles.get(name), std.get(name, {}), loads.get(name, {}),
                         gates.get(SOURCE_SUITE_PREFIX + name), overrides.get(name, {}))
            for name in sources])
        _grade_department(department)
        cards.append(department)

    return Scorecard(
        generated_at=generated_time(now),
        departments=cards,
        master_index=_gate_runs(conn, suite=MASTER_INDEX_SUITE).get(MASTER_INDEX_SUITE),
        release=quality.release_summary(conn),
        publish_attempt=quality.latest_publish_attempt(conn),
        validation_runs=quality.validation_run_count(conn),
    )


# --------------------------------------------------------------------------- grading


def _grade_source(card: SourceCard) -> None:
    t = card.thresholds
    red: list[str] = []
    amber: list[str] = []
    if not card.records:
        card.light, card.reasons = GREY, ["std 中无记录 no records in std"]
        return
    if card.gate is None:
        amber.append("源数据校验未运行 no source-gate run yet")
    elif not card.gate.success:
        red.append(f"源数据校验未通过 source gate failed ({card.gate.failed} of {card.gate.evaluated})")
    rate = card.id_valid_rate or 0.0
    if rate < t["id_valid_red"]:
        red.append(f"证件号码有效率 ID validity {percent(rate)} < {percent(t['id_valid_red'])}")
    elif rate < t["id_valid_green"]:
        amber.append(f"证件号码有效率 ID validity {percent(rate)} < {percent(t['id_valid_green'])}")
    for f in COMPLETENESS_FIELDS:
        value = card.field_rate(f.column)
        if value is None:
            continue
        if value < t["field_red"]:
            red.append(f"{f.label} {percent(value)} < {percent(t['field_red'])}")
        elif value < t["field_green"]:
            amber.append(f"{f.label} {percent(value)} < {percent(t['field_green'])}")
    q = card.quarantine_rate
    if q is not None and q > t["quarantine_red"]:
        red.append(f"隔离 quarantined {percent(q)} > {percent(t['quarantine_red'])}")
    elif q is not None and q > t["quarantine_green"]:
        amber.append(f"隔离 quarantined {percent(q)} > {percent(t['quarantine_green'])}")
    card.light = RED if red else AMBER if amber else GREEN
    card.reasons = red + amber


def _grade_department(department: DepartmentCard) -> None:
    graded = [s for s in department.sources if s.light != GREY]
    lights = [s.light for s in graded]
    empty = [s.source for s in department.sources if s.light == GREY]
    if empty and graded:
        lights.append(AMBER)
    department.light = max(lights, key=_LIGHT_ORDER.__getitem__) if lights else GREY
    department.reasons = [f"{s.source}: {LIGHTS[s.light].label}" for s in department.sources if s.light in (RED, AMBER)]
    if empty:
        department.reasons.append("无记录的数据源 sources without records: " + ", ".join(empty))


# --------------------------------------------------------------------------- rendering

_DIGIT_RUN = re.compile(r"[0-9０-９]{11,}")  # a phone or an ID number; counts are shorter
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
WITHHELD = "(已隐去 withheld)"


def safe_text(value: object, limit: int = 240) -> str:
    """Free text from the history, or a placeholder when it could hold personal data."""
    if value is None:
        return ""
    text = str(value)
    if _CJK.search(text) or _DIGIT_RUN.search(text):
        return WITHHELD
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _href(path: str | None, out_dir: Path) -> str | None:
    if not path:
        return None
    target = Path(path)
    if not target.is_absolute():
        return quote(target.as_posix())
    try:
        return quote(Path(os.path.relpath(target, out_dir)).as_posix())
    except ValueError:  # another drive
        return None


def page_context(out_dir: Path) -> dict:
    """What the templates' scorecard pieces (``scorecard_macros.html.j2``) need, for pages written to ``out_dir``."""
    return {"lights": LIGHTS, "safe_text": safe_text, "docs_href": lambda path: _href(path, Path(out_dir)),
            "key_fields": COMPLETENESS_FIELDS, "thresholds": THRESHOLDS}


def render_scorecard(card: Scorecard, out_dir: Path) -> str:
    """The scorecard page as HTML text (links relative to ``out_dir``)."""
    overrides = [
        (s.source, {k: v for k, v in s.thresholds.items() if v != THRESHOLDS[k]})
        for d in card.departments for s in d.sources]
    return render(
        "scorecard.html.j2", **page_context(out_dir), card=card, tz=card.generated_at.tzinfo,
        all_fields=KEY_FIELDS, overrides=[(name, changed) for name, changed in overrides if changed],
        threshold_labels=_THRESHOLD_LABELS, docs_index=DOCS_INDEX, master_index_suite=MASTER_INDEX_SUITE,
        department_page=DEPARTMENT_PAGE, id_valid_status=id_number.VALID)


def build_scorecard(conn: sa.Connection, out_dir: Path, departments: Mapping[str, Sequence[str]],
                    department_titles: Mapping[str, str] | None = None, *,
                    source_titles: Mapping[str, str] | None = None,
                    source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                    now: dt.datetime | None = None, card: Scorecard | None = None) -> Path:
    """Write ``out_dir/scorecard.html`` for ``departments`` (department key → source names); returns its path.

    ``department_titles`` label departments (defaults for civil_affairs, health, social_security);
    ``source_titles`` label sources; ``source_thresholds`` override :data:`THRESHOLDS` per source (e.g.
    ``{"wj_chusheng": {"id_valid_red": 0.30}}`` where newborns have no ID number yet) and are listed on
    the page; ``now`` is the generation time shown (default: now, in China Standard Time); times on
    the page are shown in ``now``'s time zone (a naive ``now`` is local time).
    Put it beside the GX Data Docs ``index.html``: the page links to it.
    """
    out_dir = Path(out_dir)
    if card is None:  # the figures, unless the caller collected them already
        card = collect_scorecard(conn, departments, department_titles, source_titles=source_titles,
                                 source_thresholds=source_thresholds, now=now)
    return write_page(out_dir / SCORECARD_FILE, render_scorecard(card, out_dir))
