"""A data-quality scorecard per department, with charts: data goes to the department that owns it.

:func:`build_department_scorecards` writes one self-contained page per department
(``scorecard_<department>.html``, beside the all-department ``scorecard.html``) holding only that
department's sources: validity and completeness, duplicates within the department, conflicts with
other departments and the open audit findings it owns, and the trend across releases (the figures:
:mod:`reports.department_figures`).

Three PNG charts (:mod:`reports.charts`: a CJK font when one is installed, English-only labels
otherwise) are embedded as base64 ``<img>``. The page holds aggregates only — counts, shares, status
codes, source, field and finding-kind names — never a name, ID number, phone or address. Every string
is escaped; no JavaScript, no network resources.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa

from reports import charts
from reports.department_figures import (
    CONFLICT_FIELDS,
    ID_VALIDITY_EXPECTATION,
    KIND_LABELS,
    OTHER,
    TREND_RELEASES,
    DepartmentScorecard,
    collect_department_scorecards,
    department_scorecard_file,
)
from reports.render import percent, render, write_page
from reports.scorecard import KEY_FIELDS, SCORECARD_FILE, THRESHOLDS, Scorecard, page_context
from schemas import id_number

__all__ = [
    "build_department_scorecards",
    "render_charts",
    "render_department_scorecard",
]

_STATUS_COLOURS = {
    id_number.VALID: "#1e8e3e", id_number.UPGRADED_FROM_15: "#81c995", id_number.CHECKSUM_ERROR: "#d93025",
    id_number.BAD_REGION: "#f29900", id_number.BAD_DATE: "#e37400", id_number.PLACEHOLDER: "#a142f4",
    id_number.MALFORMED: "#b31412", id_number.PRECISION_LOST: "#c5221f", id_number.MISSING: "#9aa0a6",
}
_PALETTE = charts.PALETTE


# --------------------------------------------------------------------------- charts


def _id_status_chart(ax, d: DepartmentScorecard, L: charts.Labels) -> None:
    """ID-number status codes as shares of each source's records."""
    sources = d.sources
    if not any(s.records for s in sources):
        charts.empty(ax, L("无记录", "no records"))
    else:
        y = range(len(sources))
        start = [0.0] * len(sources)
        for status in id_number.STATUSES:
            shares = [s.id_statuses.get(status, 0) / s.records if s.records else 0 for s in sources]
            if not any(shares):
                continue
            ax.barh(list(y), [v * 100 for v in shares], left=[v * 100 for v in start], height=0.6,
                    color=_STATUS_COLOURS.get(status, "#5f6368"), label=status)
            start = [a + b for a, b in zip(start, shares)]
        for i, s in enumerate(sources):
            ax.text(101, i, percent(s.id_valid_rate) if s.records else L("无记录", "no records"), va="center",
                    fontsize=9)
        ax.set_yticks(list(y), [s.source for s in sources])
        ax.invert_yaxis()
        ax.set_xlim(0, 118)
        ax.set_xticks([0, 25, 50, 75, 100], ["0%", "25%", "50%", "75%", "100%"])
        ax.axvline(THRESHOLDS["id_valid_green"] * 100, color="#1e8e3e", lw=0.8, ls="--")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    ax.set_title(L("证件号码状态", "ID number status (share of records)"), fontsize=11)


def _usable_fields_chart(ax, d: DepartmentScorecard, L: charts.Labels) -> None:
    """The usable share of each key field, grouped by field, a bar per source."""
    sources = d.sources
    if not any(s.records for s in sources):
        charts.empty(ax, L("无记录", "no records"))
    else:
        n = max(len(sources), 1)
        width = 0.8 / n
        for i, s in enumerate(sources):
            xs, vs = [], []
            for j, f in enumerate(KEY_FIELDS):
                rate = s.id_valid_rate if f.column == "id_number" else s.field_rate(f.column)
                if rate is not None:
                    xs.append(j - 0.4 + width * (i + 0.5))
                    vs.append(rate * 100)
            ax.bar(xs, vs, width=width * 0.92, color=_PALETTE[i % len(_PALETTE)], label=s.source)
        ax.set_xticks(range(len(KEY_FIELDS)), [L(f.zh, f.en, "\n") for f in KEY_FIELDS], fontsize=9)
        ax.set_ylim(0, 105)
        ax.set_yticks([0, 20, 40, 60, 80, 100], ["0%", "20%", "40%", "60%", "80%", "100%"])
        ax.axhline(THRESHOLDS["field_green"] * 100, color="#1e8e3e", lw=0.8, ls="--")
        ax.axhline(THRESHOLDS["field_red"] * 100, color="#d93025", lw=0.8, ls="--")
        ax.legend(fontsize=8, loc="lower left", ncol=min(n, 4), framealpha=0.9)
    ax.set_title(L("关键字段可用率", "usable key fields (ID validity, completeness)"), fontsize=11)


def _quality_chart(d: DepartmentScorecard, L: charts.Labels) -> bytes:
    fig = charts.figure(12, 1.9 + 0.5 * max(len(d.sources), 1))
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.25])
    _id_status_chart(left, d, L)
    _usable_fields_chart(right, d, L)
    return charts.png(fig)


def _conflicts_chart(ax, d: DepartmentScorecard, L: charts.Labels) -> None:
    """Conflicts with other departments per field, stacked by the other department."""
    others = sorted({o for c in d.conflicts for o in c.by_department})
    y = list(range(len(d.conflicts)))
    start = [0] * len(d.conflicts)
    for k, other in enumerate(others):
        vals = [c.by_department.get(other, 0) for c in d.conflicts]
        label = L.text(d.other_departments.get(other, other)) if other != OTHER else L("其他", "other")
        ax.barh(y, vals, left=start, height=0.6, color=_PALETTE[(k + 2) % len(_PALETTE)], label=label)
        start = [a + b for a, b in zip(start, vals)]
    top = max([c.masters for c in d.conflicts] + [max(start, default=0), 1])
    for i, c in enumerate(d.conflicts):
        ax.text(max(start[i], 0) + top * 0.02, i, f"{c.masters:,}", va="center", fontsize=9)
    ax.set_yticks(y, [L(zh, en, "\n") for _, zh, en in CONFLICT_FIELDS], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, top * 1.25)
    ax.xaxis.get_major_locator().set_params(integer=True)
    if others:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.9)
    ax.set_title(L("与其他部门冲突", "conflicts with other departments", "\n"), fontsize=11)
    ax.set_xlabel(L("主索引人数", "masters"), fontsize=9)


def _issues_chart(d: DepartmentScorecard, L: charts.Labels) -> bytes:
    rows = max(len(d.duplicates) + 1 + len(d.overlaps), len(CONFLICT_FIELDS), len(d.open_findings), 3)
    fig = charts.figure(12, 1.5 + 0.38 * rows)
    dup_ax, conf_ax, find_ax = fig.subplots(1, 3)
    # duplicates within the department
    labels = [f"{x.source}" for x in d.duplicates] + [L("本部门2个以上数据源", "on 2+ own sources")]
    labels += [f"{a} & {b}" for a, b in d.overlaps]
    values = [x.duplicate_records for x in d.duplicates] + [d.cross_source_masters] + list(d.overlaps.values())
    if d.duplicates:
        colours = ["#e8710a"] * len(d.duplicates) + ["#f9ab00"] * (len(labels) - len(d.duplicates))
        charts.barh(dup_ax, labels, values, colours)
    else:
        charts.empty(dup_ax, L("无数据源", "no sources"))
    dup_ax.set_title(L("部门内重复", "duplicates within the department", "\n"), fontsize=11)
    dup_ax.set_xlabel(L("重复记录 / 主索引人数", "extra records / masters"), fontsize=9)
    _conflicts_chart(conf_ax, d, L)
    # open audit findings the department owns
    if not d.audited:
        charts.empty(find_ax, L("尚未运行审计", "no audit run yet", "\n"))
    elif not d.open_findings:
        charts.empty(find_ax, L("无未解决的问题", "no open findings", "\n"))
    else:
        kinds = list(d.open_findings)
        charts.barh(find_ax, [L(*KIND_LABELS[k], "\n") if k in KIND_LABELS else k for k in kinds],
                    [d.open_findings[k] for k in kinds], "#d93025")
    find_ax.set_title(L("未解决的审计问题", "open audit findings", "\n"), fontsize=11)
    return charts.png(fig)


def _trend_lines(axes, d: DepartmentScorecard, L: charts.Labels) -> None:
    rec_ax, val_ax, iss_ax = axes
    points = d.trend
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
    for ax in axes:
        ax.set_xticks(xs, ticks, fontsize=9)
        ax.grid(True, color="#e8eaed")
        if len(xs) == 1:
            ax.set_xlim(xs[0] - 1, xs[0] + 1)
        ax.legend(fontsize=8, framealpha=0.9)
    rec_ax.yaxis.get_major_locator().set_params(integer=True)
    iss_ax.yaxis.get_major_locator().set_params(integer=True)
    iss_ax.set_ylim(bottom=0)
    val_ax.yaxis.set_major_formatter("{x:.0f}%")


def _trend_chart(d: DepartmentScorecard, L: charts.Labels) -> bytes:
    fig = charts.figure(12, 3.6)
    axes = fig.subplots(1, 3)
    rec_ax, val_ax, iss_ax = axes
    if not d.trend:
        for ax in axes:
            charts.empty(ax, L("尚无发布版本", "no release yet", "\n"))
    else:
        _trend_lines(axes, d, L)
    rec_ax.set_title(L("发布记录数", "published records", "\n"), fontsize=11)
    val_ax.set_title(L("证件号码有效率", "ID validity at the gate", "\n"), fontsize=11)
    iss_ax.set_title(L("重复与审计问题", "duplicates and findings", "\n"), fontsize=11)
    rec_ax.set_xlabel(L("发布版本", "release"), fontsize=9)
    return charts.png(fig)


def render_charts(d: DepartmentScorecard) -> dict[str, bytes]:
    """The page's charts as PNG bytes: ``quality``, ``issues`` and ``trend``."""
    with charts.charting() as L:
        return {"quality": _quality_chart(d, L), "issues": _issues_chart(d, L), "trend": _trend_chart(d, L)}


# --------------------------------------------------------------------------- the page


def render_department_scorecard(d: DepartmentScorecard, charts: Mapping[str, bytes] | None = None, *,
                                overview_href: str | None = None, out_dir: Path | None = None) -> str:
    """One department's page as HTML text (charts rendered unless given; links relative to ``out_dir``)."""
    pngs = charts if charts is not None else render_charts(d)
    return render(
        "department_scorecard.html.j2", **page_context(out_dir or Path(".")), d=d, charts=pngs,
        tz=d.generated_at.tzinfo, overview_href=overview_href, kind_labels=KIND_LABELS, other=OTHER,
        conflict_fields=CONFLICT_FIELDS, id_validity_expectation=ID_VALIDITY_EXPECTATION, trend_releases=TREND_RELEASES)


def build_department_scorecards(conn: sa.Connection, out_dir: Path, departments: Mapping[str, Sequence[str]],
                                titles: Mapping[str, str] | None = None, *,
                                source_titles: Mapping[str, str] | None = None,
                                source_thresholds: Mapping[str, Mapping[str, float]] | None = None,
                                now: dt.datetime | None = None, overall: Scorecard | None = None) -> dict[str, Path]:
    """Write ``out_dir/scorecard_<department>.html`` for each department (key → its source names).

    Each page holds only that department's sources. ``titles`` label departments (defaults for
    civil_affairs, health, social_security); ``source_titles`` and ``source_thresholds`` as for
    :func:`reports.scorecard.build_scorecard`; ``now`` is the generation time shown. Returns
    department key → page path. Put the pages beside ``scorecard.html``: they link to it when it is there.
    """
    out_dir = Path(out_dir)
    cards = collect_department_scorecards(conn, departments, titles, source_titles=source_titles,
                                          source_thresholds=source_thresholds, now=now, overall=overall)
    overview = SCORECARD_FILE if (out_dir / SCORECARD_FILE).is_file() else None
    return {key: write_page(out_dir / department_scorecard_file(key),
                            render_department_scorecard(card, overview_href=overview, out_dir=out_dir))
            for key, card in cards.items()}
