"""The audit report: one static, self-contained HTML page (zh-CN and English labels).

It shows the open findings per kind and department, the counts of every audited release (the trend)
as tables and a chart (a PNG embedded in the page), and the open findings' summaries. The page is
``reports/templates/audit_report.html.j2``; it carries record references, codes and masked values only.

"Open" is every finding not closed yet: open, acknowledged or assigned (the auditors' inbox has not
resolved or dismissed it), of every kind of the inbox — the audits' and the failed gate expectations
(owned by the suite's department, or the hub's data office for the master index). The trend is the
audits' own: ``audit.finding_count`` per release, which does not count gate expectations.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from reports import charts
from reports.findings_workbook import record_refs
from reports.render import generated_time, png_base64, render, write_page
from warehouse.finding_lifecycle import NOT_CLOSED
from warehouse.findings import INBOX_KINDS, KIND_LABELS, KINDS, finding_counts, list_findings, transaction
from warehouse.gate_findings import DATA_OFFICE, DATA_OFFICE_TITLE
from warehouse.releases import current_release
from warehouse.sharing import department_titles

REPORT_NAME = "audit_report.html"
TEMPLATE = "audit_report.html.j2"
#: One colour per kind, in the order of KINDS (the page's legend uses the same ones).
KIND_COLOURS = ("#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d68910")

Trend = dict[int, dict[str, int]]  # release → kind → findings


def trend_chart(trend: Trend) -> bytes:
    """The findings of each kind per release as a line chart (PNG)."""
    releases = sorted(trend)
    with charts.charting() as label:
        fig = charts.figure(8, 3.2)
        ax = fig.add_subplot()
        for colour, kind in zip(KIND_COLOURS, KINDS):
            ax.plot(releases, [trend[r].get(kind, 0) for r in releases], marker="o", label=kind, color=colour)
        ax.set_xlabel(label("版本", "release"))
        ax.set_ylabel(label("发现", "findings"))
        ax.set_xticks(releases)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return charts.png(fig)


def _figures(counts_rows: list[dict], stored: list[dict]) -> dict:
    """The page's figures from the stored counts per release and the stored findings."""
    open_only = [r for r in stored if r["status"] in NOT_CLOSED]
    departments = sorted({r["department"] for r in counts_rows} | {r["department"] for r in stored})
    counts = {(r["release_no"], r["kind"], r["department"]): r["findings"] for r in counts_rows}
    releases = sorted({r["release_no"] for r in counts_rows})
    trend = {n: {k: sum(v for (rn, kk, _), v in counts.items() if rn == n and kk == k) for k in KINDS}
             for n in releases}
    open_counts: dict[tuple[str, str], int] = {}
    findings_by_department: dict[str, list[dict]] = {}
    for r in open_only:
        open_counts[r["kind"], r["department"]] = open_counts.get((r["kind"], r["department"]), 0) + 1
        findings_by_department.setdefault(r["department"], []).append({**r, "records": record_refs(r["evidence"] or [])})
    return {
        "departments": departments, "counts": counts, "releases": releases, "trend": trend,
        "open_counts": open_counts, "findings_by_department": findings_by_department,
        "open_by_kind": {k: sum(v for (kk, _), v in open_counts.items() if kk == k) for k in INBOX_KINDS},
        "open_by_department": {d: sum(v for (_, dd), v in open_counts.items() if dd == d) for d in departments},
        "open_total": len(open_only), "resolved_total": sum(1 for r in stored if r["status"] == "resolved"),
    }


def write_audit_report(conn: sa.Connection | sa.Engine, out_dir: str | Path, *, limit: int = 200) -> Path:
    """Write ``out_dir/audit_report.html``: findings not closed per kind and department, the trend across
    releases (tables and a chart) and up to ``limit`` findings not closed per department. Returns the path."""
    with transaction(conn) as c:
        counts_rows = finding_counts(c)
        stored = list_findings(c, status=None)
        current = current_release(c)
    figures = _figures(counts_rows, stored)
    html = render(TEMPLATE, generated=generated_time(), current=current["release_no"] if current else None,
                  kinds=INBOX_KINDS, trend_kinds=KINDS, kind_labels=KIND_LABELS,
                  department_labels={DATA_OFFICE: DATA_OFFICE_TITLE, **department_titles()}, limit=limit,
                  chart_png=png_base64(trend_chart(figures["trend"])) if figures["releases"] else None, **figures)
    return write_page(Path(out_dir) / REPORT_NAME, html)
