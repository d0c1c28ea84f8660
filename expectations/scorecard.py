"""Per-department data-quality scorecard: one static HTML page beside the GX Data Docs.

:func:`build_scorecard` reads the warehouse (``std.resident``, ``raw.load_batch``, ``raw.quarantine``,
the validation history in ``audit``, the releases in ``publish``) and writes ``scorecard.html``:
per department and per source, the records in std, the ID validity rate, the completeness of the
key fields, quarantined records, the latest source-gate result with its failing expectations; the
latest ``master_index`` gate run, the current release and the latest publish attempt; and a traffic
light per source and per department, with the rules that set it printed on the page.

The page holds aggregates only — counts, percentages, status codes, source, suite, table, column
and expectation names — never a name, ID number, phone or address. Free text from the history
(GX ``observed`` values, publish reasons) is shown only when it cannot be personal data (no CJK
characters, no run of eleven or more digits); otherwise it is withheld. Every string is escaped.
The page is self-contained: inline CSS, no JavaScript, no network resources.

The caller passes the department → sources mapping (this package does not import the registry).
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from expectations.sources import SOURCE_SUITE_PREFIX
from schemas import addresses, dates, id_number, names, phones, sex

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

GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"
_LIGHT_ORDER = {GREEN: 0, GREY: 1, AMBER: 2, RED: 3}
_LIGHT_LABEL = {GREEN: "绿 green", AMBER: "黄 amber", RED: "红 red", GREY: "无数据 no data"}
_LIGHT_COLOUR = {GREEN: "#1e8e3e", AMBER: "#f29900", RED: "#d93025", GREY: "#9aa0a6"}


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


def _aware(value: dt.datetime) -> dt.datetime:
    """A naive time is taken as the machine's local time."""
    return value if value.tzinfo is not None else value.astimezone()


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


# --------------------------------------------------------------------------- reading the warehouse


def _exists(conn: sa.Connection, relation: str) -> bool:
    return conn.execute(sa.text("SELECT to_regclass(:r) IS NOT NULL"), {"r": relation}).scalar_one()


def _has_column(conn: sa.Connection, schema: str, table: str, column: str) -> bool:
    return conn.execute(sa.text(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
        " WHERE table_schema = :s AND table_name = :t AND column_name = :c)"),
        {"s": schema, "t": table, "c": column}).scalar_one()


def _std_figures(conn: sa.Connection) -> dict[str, dict]:
    parts = ["count(*) AS records"]
    params: dict[str, object] = {}
    for f in KEY_FIELDS:
        params[f"u_{f.column}"] = list(f.usable)
        parts.append(f"count(*) FILTER (WHERE {f.column}_status = ANY(:u_{f.column})) AS usable_{f.column}")
        parts.append(f"count({f.column}_raw) AS supplied_{f.column}")
    rows = conn.execute(sa.text(f"SELECT source, {', '.join(parts)} FROM std.resident GROUP BY source"), params).mappings()
    figures = {r["source"]: dict(r) for r in rows}
    for source, status, count in conn.execute(sa.text(
            "SELECT source, id_number_status, count(*) FROM std.resident GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")):
        figures[source].setdefault("id_statuses", {})[status] = count
    return figures


def _load_figures(conn: sa.Connection) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    if not _exists(conn, "raw.load_batch"):
        return figures
    for r in conn.execute(sa.text(
            "SELECT source, sum(received) AS received, sum(landed) AS landed, sum(duplicates) AS duplicates"
            " FROM raw.load_batch GROUP BY source")).mappings():
        figures[r["source"]] = {k: int(r[k] or 0) for k in ("received", "landed", "duplicates")}
    for r in conn.execute(sa.text(
            "SELECT DISTINCT ON (source) source, coalesce(finished_at, started_at) AS at, status"
            " FROM raw.load_batch ORDER BY source, batch_id DESC")).mappings():
        figures.setdefault(r["source"], {}).update(last_load_at=r["at"], last_load_status=r["status"])
    if _exists(conn, "raw.quarantine"):
        for source, reason, count in conn.execute(sa.text(
                "SELECT source, reason_code, count(*) FROM raw.quarantine GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2")):
            entry = figures.setdefault(source, {})
            entry.setdefault("quarantine_reasons", {})[reason] = count
            entry["quarantined"] = entry.get("quarantined", 0) + count
    return figures


def _latest_runs(conn: sa.Connection, *, prefix: str | None = None, suite: str | None = None) -> dict[str, GateRun]:
    """The latest run of each matching suite.

    A suite's outcome is a whole ``audit.validation_run`` (``suite`` = the suite's name) or, when one
    gate run covers several suites, a row of ``audit.validation_suite`` with its expectations marked
    by ``audit.validation_result.suite``. Both are read; the newest wins.
    """
    where = "suite = :suite" if suite is not None else "suite LIKE :prefix"
    params = {"suite": suite, "prefix": (prefix or "").replace("%", r"\%").replace("_", r"\_") + "%"}
    selects = [
        f"SELECT run_id, suite, started_at, success, evaluated, successful, failed, docs_path, 0 AS nested"
        f" FROM audit.validation_run WHERE {where}"]
    nested = _exists(conn, "audit.validation_suite") and _has_column(conn, "audit", "validation_result", "suite")
    if nested:
        # a suite's own Data Docs page (its validation result), when the history keeps one: unlike the index,
        # GX renders those pages without its CDN scripts
        docs = "coalesce(nullif(s.docs_path, ''), r.docs_path)" if _has_column(
            conn, "audit", "validation_suite", "docs_path") else "r.docs_path"
        selects.append(
            f"SELECT s.run_id, s.suite, r.started_at, s.success, s.evaluated, s.successful, s.failed, {docs}, 1"
            f" FROM audit.validation_suite s JOIN audit.validation_run r USING (run_id) WHERE s.{where}")
    rows = conn.execute(sa.text(
        f"SELECT DISTINCT ON (suite) * FROM ({' UNION ALL '.join(selects)}) runs"
        " ORDER BY suite, started_at DESC, run_id DESC, nested"), params).mappings().all()
    latest: dict[str, GateRun] = {}
    for r in rows:
        suite_filter = " AND suite = :suite" if r["nested"] else ""
        failures = tuple(
            Failure(f["expectation"], f["table_name"], f["column_name"], f["observed"],
                    None if f["unexpected_count"] is None else int(f["unexpected_count"]), f["unexpected_percent"])
            for f in conn.execute(sa.text(
                "SELECT expectation, table_name, column_name, observed, unexpected_count, unexpected_percent"
                f" FROM audit.validation_result WHERE run_id = :run AND NOT success{suite_filter} ORDER BY position"),
                {"run": r["run_id"], "suite": r["suite"]}).mappings())
        latest[r["suite"]] = GateRun(r["suite"], int(r["run_id"]), r["started_at"], bool(r["success"]), int(r["evaluated"]),
                                     int(r["successful"]), int(r["failed"]), r["docs_path"] or None, failures)
    return latest


def _release_and_attempt(conn: sa.Connection) -> tuple[dict | None, dict | None]:
    release = conn.execute(sa.text(
        "SELECT r.release_no, r.published_at, r.master_count, r.record_count, c.switched_at"
        " FROM publish.current_release c JOIN publish.release r USING (release_no)")).mappings().first()
    attempt = conn.execute(sa.text(
        "SELECT attempted_at, outcome, release_no, reason, validation_run_id FROM audit.publish_attempt"
        " ORDER BY attempted_at DESC, attempt_id DESC LIMIT 1")).mappings().first()
    return (dict(release) if release else None), (dict(attempt) if attempt else None)


def collect_scorecard(conn: sa.Connection, departments: Mapping[str, Sequence[str]],
                      department_titles: Mapping[str, str] | None = None, *,
                      source_titles: Mapping[str, str] | None = None,
                      source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                      now: dt.datetime | None = None) -> Scorecard:
    """Read the scorecard's figures from the warehouse (aggregates only) and grade them."""
    titles = {**DEFAULT_DEPARTMENT_TITLES, **(department_titles or {})}
    source_titles = source_titles or {}
    overrides = {name: dict(values) for name, values in (source_thresholds or {}).items()}
    for name, values in overrides.items():
        unknown = sorted(set(values) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"source_thresholds[{name!r}]: unknown key(s) {unknown}; expected some of {sorted(THRESHOLDS)}")
    std = _std_figures(conn)
    loads = _load_figures(conn)
    gates = _latest_runs(conn, prefix=SOURCE_SUITE_PREFIX)

    mapping: dict[str, list[str]] = {key: list(dict.fromkeys(sources)) for key, sources in departments.items()}
    assigned = {s for sources in mapping.values() for s in sources}
    seen = set(std) | set(loads) | {suite[len(SOURCE_SUITE_PREFIX):] for suite in gates}
    unassigned = sorted(seen - assigned)
    if unassigned:
        mapping[UNASSIGNED] = unassigned
        titles.setdefault(UNASSIGNED, UNASSIGNED_TITLE)

    cards = []
    for key, sources in mapping.items():
        department = DepartmentCard(key, titles.get(key, key), [])
        for name in sources:
            figures = std.get(name, {})
            load = loads.get(name, {})
            card = SourceCard(
                source=name, title=source_titles.get(name),
                records=int(figures.get("records", 0)),
                id_valid=int(figures.get("usable_id_number", 0)),
                usable={f.column: int(figures.get(f"usable_{f.column}", 0)) for f in KEY_FIELDS},
                supplied={f.column: int(figures.get(f"supplied_{f.column}", 0)) for f in KEY_FIELDS},
                id_statuses=dict(figures.get("id_statuses", {})),
                received=load.get("received", 0), landed=load.get("landed", 0), duplicates=load.get("duplicates", 0),
                quarantined=load.get("quarantined", 0), quarantine_reasons=dict(load.get("quarantine_reasons", {})),
                last_load_at=load.get("last_load_at"), last_load_status=load.get("last_load_status"),
                gate=gates.get(SOURCE_SUITE_PREFIX + name),
                thresholds={**THRESHOLDS, **overrides.get(name, {})},
            )
            _grade_source(card)
            department.sources.append(card)
        _grade_department(department)
        cards.append(department)

    release, attempt = _release_and_attempt(conn)
    runs = conn.execute(sa.text("SELECT count(*) FROM audit.validation_run")).scalar_one()
    return Scorecard(
        generated_at=_aware(now or dt.datetime.now()),
        departments=cards,
        master_index=_latest_runs(conn, suite=MASTER_INDEX_SUITE).get(MASTER_INDEX_SUITE),
        release=release,
        publish_attempt=attempt,
        validation_runs=int(runs),
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
        red.append(f"证件号码有效率 ID validity {_pct(rate)} < {_pct(t['id_valid_red'])}")
    elif rate < t["id_valid_green"]:
        amber.append(f"证件号码有效率 ID validity {_pct(rate)} < {_pct(t['id_valid_green'])}")
    for f in KEY_FIELDS:
        if f.column == "id_number":
            continue  # graded as ID validity above
        value = card.field_rate(f.column)
        if value is None:
            continue
        if value < t["field_red"]:
            red.append(f"{f.label} {_pct(value)} < {_pct(t['field_red'])}")
        elif value < t["field_green"]:
            amber.append(f"{f.label} {_pct(value)} < {_pct(t['field_green'])}")
    q = card.quarantine_rate
    if q is not None and q > t["quarantine_red"]:
        red.append(f"隔离 quarantined {_pct(q)} > {_pct(t['quarantine_red'])}")
    elif q is not None and q > t["quarantine_green"]:
        amber.append(f"隔离 quarantined {_pct(q)} > {_pct(t['quarantine_green'])}")
    card.light = RED if red else AMBER if amber else GREEN
    card.reasons = red + amber


def _grade_department(department: DepartmentCard) -> None:
    graded = [s for s in department.sources if s.light != GREY]
    lights = [s.light for s in graded]
    empty = [s.source for s in department.sources if s.light == GREY]
    if empty and graded:
        lights.append(AMBER)
    department.light = max(lights, key=_LIGHT_ORDER.__getitem__) if lights else GREY
    department.reasons = [f"{s.source}: {_LIGHT_LABEL[s.light]}" for s in department.sources if s.light in (RED, AMBER)]
    if empty:
        department.reasons.append("无记录的数据源 sources without records: " + ", ".join(empty))


# --------------------------------------------------------------------------- rendering

_DIGIT_RUN = re.compile(r"[0-9０-９]{11,}")  # a phone or an ID number; counts are shorter
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
WITHHELD = "(已隐去 withheld)"


def _safe_text(value: object, limit: int = 240) -> str:
    """Free text from the history, or a placeholder when it could hold personal data."""
    if value is None:
        return ""
    text = str(value)
    if _CJK.search(text) or _DIGIT_RUN.search(text):
        return WITHHELD
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _pct(rate: float | None) -> str:
    if rate is None:
        return "—"
    text = f"{rate * 100:.1f}%"
    if rate < 1 and text == "100.0%":
        return ">99.9%"
    if rate > 0 and text == "0.0%":
        return "<0.1%"
    return text


def _percent(value: float | None) -> str:
    """A percentage as GX reports it (0–100)."""
    return _pct(None if value is None else value / 100)


def _num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _when(value: dt.datetime | None, tz: dt.tzinfo | None, *, short: bool = False) -> str:
    if value is None:
        return "—"
    if tz is not None and value.tzinfo is not None:
        value = value.astimezone(tz)
    if short:  # tables: the page header names the time zone
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat(sep=" ", timespec="seconds")


def _offset(value: dt.datetime) -> str:
    offset = value.utcoffset()
    if offset is None:
        return ""
    minutes = int(offset.total_seconds() // 60)
    return f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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


def _th(zh: str, en: str, num: bool = False) -> str:
    cls = ' class="num"' if num else ""
    return f'<th{cls}>{_e(zh)}<br><span class="en">{_e(en)}</span></th>'


def _light(light: str) -> str:
    return (f'<span class="light {light}"><span class="dot" style="background:{_LIGHT_COLOUR[light]}"></span>'
            f"{_e(_LIGHT_LABEL[light])}</span>")


def _rate_cell(rate: float | None, green: float, red: float, note: str = "") -> str:
    if rate is None:
        return f'<td class="num na">{_e(note or "—")}</td>'
    level = GREEN if rate >= green else RED if rate < red else AMBER
    width = max(0.0, min(100.0, rate * 100))
    return (f'<td class="num rate {level}"><span class="bar"><span style="width:{width:.1f}%"></span></span>'
            f"{_e(_pct(rate))}</td>")


def _counts(counts: Mapping[str, int], limit: int = 6) -> str:
    items = list(counts.items())
    shown = " · ".join(f"{_e(k)} {_num(v)}" for k, v in items[:limit])
    if len(items) > limit:
        shown += f" · … (+{len(items) - limit})"
    return shown


def _gate_cell(run: GateRun | None, out_dir: Path, tz: dt.tzinfo | None) -> str:
    if run is None:
        return '<span class="muted">未运行 not run yet</span>'
    if run.success:
        verdict = f'<span class="pass">通过 passed</span> {run.successful}/{run.evaluated}'
    else:
        verdict = f'<span class="fail">未通过 failed</span> {run.failed} of {run.evaluated} failing'
    text = (f"{verdict}<br>"
            f'<span class="muted">#{run.run_id} · {_e(_when(run.started_at, tz, short=True))}</span>')
    href = _href(run.docs_path, out_dir)
    if href:
        text += f' · <a href="{_e(href)}">Data Docs</a>'
    return text


def _failures_table(run: GateRun) -> str:
    if not run.failures:
        if run.success:
            return ""
        return '<p class="muted">未记录失败的期望 no failing expectation recorded for this run</p>'
    rows = "".join(
        f"<tr><td><code>{_e(f.expectation)}</code></td><td>{_e(f.table or '—')}</td><td>{_e(f.column or '*')}</td>"
        f'<td class="num">{_num(f.unexpected_count)}</td><td class="num">{_e(_percent(f.unexpected_percent))}</td>'
        f"<td>{_e(_safe_text(f.observed) or '—')}</td></tr>"
        for f in run.failures)
    return (f'<table class="failures"><caption>未通过的期望 failing expectations · <code>{_e(run.suite)}</code></caption>'
            f"<thead><tr>{_th('期望', 'expectation')}{_th('表', 'table')}{_th('列', 'column')}"
            f"{_th('异常数', 'unexpected', True)}{_th('异常比例', 'unexpected %', True)}{_th('观测', 'observed')}</tr></thead>"
            f"<tbody>{rows}</tbody></table>")


_CSS = """
:root { color-scheme: light; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC", "Microsoft YaHei", "DejaVu Sans",
       Arial, sans-serif; margin: 0; color: #202124; background: #f8f9fa; font-size: 14px; line-height: 1.45; }
header { background: #174ea6; color: #fff; padding: 16px 24px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 2px 0; opacity: .9; }
header a { color: #fff; }
main { padding: 12px 24px 32px; max-width: 1400px; }
section { background: #fff; border: 1px solid #dadce0; border-radius: 6px; padding: 12px 18px; margin: 14px 0; }
h2 { font-size: 19px; margin: 4px 0 10px; }
h3 { font-size: 16px; margin: 14px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid #e8eaed; padding: 5px 6px; text-align: left; vertical-align: top; }
th { background: #f1f3f4; font-weight: 600; font-size: 13px; }
th .en { font-weight: 400; color: #5f6368; font-size: 12px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.na { color: #9aa0a6; }
.muted { color: #5f6368; font-size: 12px; }
.light { white-space: nowrap; font-weight: 600; }
.dot { display: inline-block; width: 14px; height: 14px; border-radius: 50%; margin-right: 6px; vertical-align: -2px; }
.rate.green { color: #137333; } .rate.amber { color: #b06000; } .rate.red { color: #c5221f; font-weight: 600; }
.bar { display: inline-block; width: 34px; height: 7px; background: #e8eaed; margin-right: 6px; vertical-align: 1px; }
.bar span { display: block; height: 100%; background: currentColor; }
.pass { color: #137333; font-weight: 600; } .fail { color: #c5221f; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 280px; border: 1px solid #dadce0; border-radius: 6px; padding: 10px 14px; background: #fff; }
.card h3 { margin-top: 0; }
tr.main + tr.why td { border-top: 0; }
tr.why td { padding-top: 0; font-size: 12px; color: #3c4043; }
tr.why p { margin: 0 0 4px; }
tr:has(+ tr.why) td { border-bottom: 0; }
.why-label { font-weight: 600; }
table.failures { margin: 4px 0 8px; font-size: 12px; width: auto; min-width: 70%; }
table.failures th, table.failures td { padding: 3px 8px; }
table.failures caption { color: #c5221f; }
code { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
footer { color: #5f6368; font-size: 12px; padding: 0 24px 24px; }
"""


def _overview(card: Scorecard, out_dir: Path, tz: dt.tzinfo | None) -> str:
    release = card.release
    if release:
        rel = (f"<p><b>第 {_e(release['release_no'])} 版 release {_e(release['release_no'])}</b></p>"
               f"<p>发布时间 published: {_e(_when(release['published_at'], tz))}</p>"
               f"<p>主索引人数 masters: {_num(release['master_count'])} · 记录 records: {_num(release['record_count'])}</p>")
    else:
        rel = '<p class="muted">尚无发布版本 no release published yet</p>'
    attempt = card.publish_attempt
    if attempt:
        release_no = attempt["release_no"] if attempt["release_no"] is not None else "—"
        att = (f"<p><b>{_e(attempt['outcome'])}</b> · 版本 release {_e(release_no)}</p>"
               f"<p>时间 at: {_e(_when(attempt['attempted_at'], tz))}</p>"
               f"<p>原因 reason: {_e(_safe_text(attempt['reason'], 400))}</p>")
    else:
        att = '<p class="muted">尚无发布尝试 no publish attempt yet</p>'
    run = card.master_index
    if run:
        mi = f"<p>{_gate_cell(run, out_dir, tz)}</p><p>失败 failed: {run.failed}</p>"
    else:
        mi = '<p class="muted">主索引校验未运行 the master_index gate has not run yet</p>'
    failures = _failures_table(run) if run else ""
    return (
        '<section id="overview"><h2>发布与主索引 Release and master index</h2><div class="cards">'
        f'<div class="card"><h3>当前版本 current release</h3>{rel}</div>'
        f'<div class="card"><h3>最近一次发布尝试 latest publish attempt</h3>{att}</div>'
        f'<div class="card"><h3>主索引校验 latest <code>{_e(MASTER_INDEX_SUITE)}</code> gate run</h3>{mi}</div>'
        f"</div>{failures}</section>")


def _summary(card: Scorecard) -> str:
    rows = []
    for d in card.departments:
        passed, failed, missing = d.gates
        rows.append(
            f'<tr class="main"><td><a href="#dept-{_e(d.key)}"><b>{_e(d.title)}</b></a><br>'
            f'<span class="muted">{_e(d.key)}</span></td><td>{_light(d.light)}</td>'
            f'<td class="num">{len(d.sources)}</td><td class="num">{_num(d.records)}</td>'
            + _rate_cell(d.id_valid_rate, THRESHOLDS["id_valid_green"], THRESHOLDS["id_valid_red"])
            + "".join(_rate_cell(d.field_rate(f.column), THRESHOLDS["field_green"], THRESHOLDS["field_red"])
                      for f in KEY_FIELDS if f.column != "id_number")
            + f'<td class="num">{_num(d.quarantined)}</td>'
            f'<td class="num"><span class="pass">{passed}</span> / <span class="{"fail" if failed else ""}">{failed}</span>'
            f" / {missing}</td></tr>")
        if d.reasons:
            rows.append(f'<tr class="why"><td></td><td colspan="11">{_reasons(d.reasons)}</td></tr>')
    field_heads = "".join(_th(f.zh, f.en, True) for f in KEY_FIELDS if f.column != "id_number")
    return (
        '<section id="summary"><h2>部门汇总 Department summary</h2>'
        f"<table><thead><tr>{_th('部门', 'department')}{_th('评级', 'grade')}{_th('数据源', 'sources', True)}"
        f"{_th('记录', 'records', True)}{_th('证件号码有效率', 'ID validity', True)}"
        f"{field_heads}{_th('隔离', 'quarantined', True)}"
        f"{_th('源数据校验', 'gates passed / failed / not run', True)}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>")


def _reasons(reasons: Sequence[str]) -> str:
    return '<span class="why-label">原因 why:</span> ' + " · ".join(_e(r) for r in reasons)


_THRESHOLD_LABELS = {
    "id_valid_green": "ID validity for green", "id_valid_red": "ID validity below which red",
    "field_green": "key field for green", "field_red": "key field below which red",
    "quarantine_green": "quarantined share for green", "quarantine_red": "quarantined share above which red",
}


def _method(card: Scorecard) -> str:
    t = THRESHOLDS
    overrides = [
        (s.source, {k: v for k, v in s.thresholds.items() if v != THRESHOLDS[k]})
        for d in card.departments for s in d.sources]
    overrides = [(name, changed) for name, changed in overrides if changed]
    special = ""
    if overrides:
        items = "".join(
            f"<li><code>{_e(name)}</code>: " + "; ".join(f"{_e(_THRESHOLD_LABELS[k])} {_e(_pct(v))}" for k, v in changed.items())
            + "</li>" for name, changed in overrides)
        special = f"<p>数据源特定阈值 per-source thresholds (instead of the above):</p><ul>{items}</ul>"
    fields = "".join(
        f"<li>{_e(f.label)}: <code>{_e(f.column)}_status</code> ∈ {{{_e(', '.join(f.usable))}}}</li>" for f in KEY_FIELDS)
    return (
        '<section id="method"><h2>评级方法 How the grade is computed</h2>'
        "<p>每个数据源按以下规则评级，部门取其数据源中最差的评级；部门中有无记录的数据源时，部门至少为黄。"
        " Each source is graded by the rules below; a department takes the worst grade of its sources, and at least"
        " amber when one of its sources has no records.</p><ul>"
        f"<li>{_light(RED)}: 最近一次源数据校验未通过 the latest source-gate run failed; or ID validity &lt; "
        f"{_pct(t['id_valid_red'])}; or a supplied key field is usable in &lt; {_pct(t['field_red'])} of records; or more than "
        f"{_pct(t['quarantine_red'])} of received records were quarantined.</li>"
        f"<li>{_light(AMBER)}: 源数据校验尚未运行 no source-gate run yet; or ID validity &lt; {_pct(t['id_valid_green'])}; "
        f"or a supplied key field is usable in &lt; {_pct(t['field_green'])} of records; or more than "
        f"{_pct(t['quarantine_green'])} quarantined.</li>"
        f"<li>{_light(GREEN)}: none of the above 以上均不成立.</li>"
        f"<li>{_light(GREY)}: 该数据源在 std 中没有记录 the source has no records in std.resident.</li></ul>"
        "<p>比例以 std.resident 中当前记录为分母。证件号码有效率 = 状态为 valid 或 upgraded_from_15 的记录占比"
        "（15 位号码升位后计为有效，号码从不被自动更正）。关键字段“可用”指其状态码属于下列取值；"
        "数据源从未提供的字段显示为“未提供”，不参与评级。隔离比例 = raw.quarantine 记录数 / 接收记录数。"
        " Shares are of the current records in std.resident. ID validity is the share of records whose"
        " <code>id_number_status</code> is <code>valid</code> or <code>upgraded_from_15</code> (ID numbers are never"
        " corrected in place). A key field counts as usable when its status code is one of:</p>"
        f"<ul>{fields}</ul>"
        "<p>A field the source never supplies (no raw value in any record) is shown as “未提供 not supplied” and is"
        " not graded. The quarantine share is rows in <code>raw.quarantine</code> over records received by all load"
        f" batches.</p>{special}</section>")


def _department(d: DepartmentCard, out_dir: Path, tz: dt.tzinfo | None) -> str:
    field_heads = "".join(_th(f.zh, f.en, True) for f in KEY_FIELDS if f.column != "id_number")
    rows = []
    for s in d.sources:
        cells = "".join(
            _rate_cell(s.field_rate(f.column), s.thresholds["field_green"], s.thresholds["field_red"],
                       "未提供 not supplied" if s.records else "—")
            for f in KEY_FIELDS if f.column != "id_number")
        title = f'<br><span class="muted">{_e(s.title)}</span>' if s.title else ""
        load = (f'{_e(s.last_load_status or "—")}<br><span class="muted">{_e(_when(s.last_load_at, tz, short=True))}</span>'
                if s.last_load_at or s.last_load_status else '<span class="muted">—</span>')
        quarantine = _num(s.quarantined)
        if s.received:
            quarantine += f'<br><span class="muted">{_e(_pct(s.quarantine_rate))} / {_num(s.received)}</span>'
        rows.append(
            f'<tr class="main" id="src-{_e(s.source)}"><td><code>{_e(s.source)}</code>{title}</td>'
            f"<td>{_light(s.light)}</td>"
            f'<td class="num">{_num(s.records)}</td>'
            + _rate_cell(s.id_valid_rate, s.thresholds["id_valid_green"], s.thresholds["id_valid_red"])
            + cells
            + f'<td class="num">{quarantine}</td><td>{load}</td><td>{_gate_cell(s.gate, out_dir, tz)}</td></tr>')
        detail = []
        if s.reasons:
            detail.append(f"<p>{_reasons(s.reasons)}</p>")
        if s.id_statuses and set(s.id_statuses) - {id_number.VALID}:
            detail.append(f'<p class="muted">证件号码状态 ID number statuses: {_counts(s.id_statuses)}</p>')
        if s.quarantine_reasons:
            detail.append(f'<p class="muted">隔离原因 quarantine reasons: {_counts(s.quarantine_reasons)}</p>')
        if s.gate is not None:
            detail.append(_failures_table(s.gate))
        detail = [x for x in detail if x]
        if detail:
            rows.append(f'<tr class="why"><td></td><td colspan="11">{"".join(detail)}</td></tr>')
    return (
        f'<section id="dept-{_e(d.key)}"><h2>{_e(d.title)} <span class="muted">{_e(d.key)}</span> {_light(d.light)}</h2>'
        f'<p><a href="scorecard_{_e(d.key)}.html">本部门评分卡（含图表、重复与冲突、趋势）'
        f" the department's own scorecard: charts, duplicates, conflicts, trend</a></p>"
        f"<table><thead><tr>{_th('数据源', 'source')}{_th('评级', 'grade')}{_th('记录', 'records', True)}"
        f"{_th('证件号码有效率', 'ID validity', True)}{field_heads}{_th('隔离', 'quarantined', True)}"
        f"{_th('最近加载', 'latest load')}{_th('源数据校验', 'latest source gate')}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>")


def render_scorecard(card: Scorecard, out_dir: Path) -> str:
    """The scorecard page as HTML text (links relative to ``out_dir``)."""
    tz = card.generated_at.tzinfo
    no_runs = ("" if card.validation_runs else
               '<section><p class="fail">校验历史为空 No validation run has been recorded yet: gate results will appear'
               " here after the first gate run.</p></section>")
    body = (_overview(card, out_dir, tz) + _summary(card) + _method(card)
            + "".join(_department(d, out_dir, tz) for d in card.departments))
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<title>数据质量评分卡 Data-quality scorecard</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n"
        "<header><h1>居民数据质量评分卡 Resident data-quality scorecard</h1>"
        f"<p>生成时间 generated: {_e(_when(card.generated_at, tz))} (时间均为 all times UTC{_e(_offset(card.generated_at))}) · "
        f"校验记录 validation runs recorded: {_num(card.validation_runs)}</p>"
        f'<p><a href="{DOCS_INDEX}">Great Expectations 数据文档 Data Docs index</a> · '
        '<a href="#summary">部门汇总 summary</a> · <a href="#method">评级方法 method</a></p></header>\n'
        f"<main>{no_runs}{body}</main>\n"
        "<footer>本页只含汇总数字（计数、比例、状态码、数据源与期望名称），不含任何姓名、证件号码、电话或地址。"
        " This page holds aggregates only — counts, shares, status codes, source and expectation names — never a name,"
        " ID number, phone number or address.</footer>\n</body>\n</html>\n")


def build_scorecard(conn: sa.Connection, out_dir: Path, departments: Mapping[str, Sequence[str]],
                    department_titles: Mapping[str, str] | None = None, *,
                    source_titles: Mapping[str, str] | None = None,
                    source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                    now: dt.datetime | None = None, card: Scorecard | None = None) -> Path:
    """Write ``out_dir/scorecard.html`` for ``departments`` (department key → source names); returns its path.

    ``department_titles`` label departments (defaults for civil_affairs, health, social_security);
    ``source_titles`` label sources; ``source_thresholds`` override :data:`THRESHOLDS` per source (e.g.
    ``{"wj_chusheng": {"id_valid_red": 0.30}}`` where newborns have no ID number yet) and are listed on
    the page; ``now`` is the generation time shown (default: now); times on
    the page are shown in ``now``'s time zone (a naive ``now`` is local time).
    Put it beside the GX Data Docs ``index.html``: the page links to it.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if card is None:  # the figures, unless the caller collected them already
        card = collect_scorecard(conn, departments, department_titles, source_titles=source_titles,
                                 source_thresholds=source_thresholds, now=now)
    path = out_dir / SCORECARD_FILE
    tmp = path.with_name(f".{SCORECARD_FILE}.{os.getpid()}.tmp")
    tmp.write_text(render_scorecard(card, out_dir), encoding="utf-8")
    tmp.replace(path)
    return path
