"""Cross-department consistency audits, run after each release; per-department XLSX and an HTML report.

The detection and the storage live in :mod:`warehouse.findings`; this module declares the audit
rules as data (which roll codes mean "active", which programmes exclude each other; the death codes
come from the survivorship rules' ``vital_status``), runs them on a release, and exports:

* :func:`export_findings_xlsx` — one workbook per department with its open findings;
* :func:`write_audit_report` — one static, self-contained HTML page (zh-CN and English labels):
  open findings per kind and department, the counts of every release (the trend) with a chart, and
  the open findings' summaries. The chart is a PNG (base64) when matplotlib is installed, an inline
  SVG otherwise.

Everything written carries record references, codes and masked values only.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from connectors.registry import source_departments
from warehouse.findings import KIND_LABELS, KINDS, AuditRules, ExclusivePair
from warehouse.sharing import department_titles

log = logging.getLogger("hub.audits")

# ---------------------------------------------------------------------------------------- the rules
#: Per roll: the raw status codes (std.resident.status_raw, the source's mapped ``status`` field) that
#: mean "on the roll and receiving". A deceased person with one of these is a ``deceased_active`` finding.
ACTIVE_CODES: dict[str, list[str]] = {
    "mz_dibao": ["在保"],        # 最低生活保障: 保障状态 在保
    "mz_gaoling": ["正常发放"],  # 高龄津贴: 补贴状态 正常发放 (停发 is the death registration)
    "rs_yanglao": ["1"],         # 城乡居民养老保险: 待遇状态 dyzt 1 = 领取中
}
#: Programmes one person may not be in at once.
EXCLUSIVE_PAIRS: tuple[ExclusivePair, ...] = (
    ExclusivePair("basic_medical_insurance", "职工基本医疗保险 / 城乡居民基本医疗保险",
                  ("rs_yiliao", ("职工基本医疗保险",)), ("rs_yiliao", ("城乡居民基本医疗保险",)),
                  owner="social_security"),
)

REPORT_NAME = "audit_report.html"


def audit_rules(departments: Mapping[str, str] | None = None) -> AuditRules:
    """The audit rules: death codes from ``mpi/survivorship.yaml``, active codes and exclusive pairs above."""
    from mpi.survivorship import load_rules

    departments = dict(departments if departments is not None else source_departments())
    vital = load_rules().vital_status.codes
    deceased = {source: sorted(raw for raw, status in codes.items() if status == "deceased")
                for source, codes in vital.items()}
    rules = AuditRules(departments=departments,
                       deceased_codes={s: c for s, c in deceased.items() if c and s in departments},
                       active_codes={s: c for s, c in ACTIVE_CODES.items() if s in departments},
                       exclusive=tuple(p for p in EXCLUSIVE_PAIRS
                                       if p.first[0] in departments and p.second[0] in departments))
    rules.check()
    return rules


def _connection(conn_or_engine):
    """(context manager giving a connection in a transaction) for an Engine or a Connection."""
    if isinstance(conn_or_engine, sa.Engine):
        return conn_or_engine.begin()
    from contextlib import nullcontext

    return nullcontext(conn_or_engine)


def run_audits(conn_or_engine: sa.Engine | sa.Connection | None = None, release_no: int | None = None,
               departments: Mapping[str, str] | None = None, *, rules: AuditRules | None = None) -> dict:
    """Detect the findings of a release (default: the current one) and store them in audit.finding.

    ``conn_or_engine``: an Engine (one transaction is opened) or a Connection (the caller's
    transaction); default the hub's warehouse. ``departments``: source → department (default: the
    registry). Returns counts only (safe for logs and XCom): detected, new, seen_again, reopened,
    resolved, open, and the detected ones ``by_kind`` and ``by_department``.
    """
    from warehouse.findings import detect_findings, refresh_findings
    from warehouse.releases import current_release

    if conn_or_engine is None:
        from hub import settings

        conn_or_engine = settings.engine()
    rules = rules or audit_rules(departments)
    with _connection(conn_or_engine) as conn:
        if release_no is None:
            current = current_release(conn)
            if current is None:
                raise LookupError("nothing is published yet: there is no release to audit")
            release_no = current["release_no"]
        findings = detect_findings(conn, release_no, rules)
        result = refresh_findings(conn, release_no, findings, set(rules.departments.values()))
    result["by_kind"] = {k: sum(1 for f in findings if f.kind == k) for k in KINDS}
    result["by_department"] = {d: sum(1 for f in findings if f.department == d)
                               for d in sorted({f.department for f in findings})}
    log.info("audits of release %s: %d findings (%d new, %d resolved, %d open) %s", release_no, result["detected"],
             result["new"], result["resolved"], result["open"], result["by_kind"])
    return result


# ------------------------------------------------------------------------------------------ exports
XLSX_COLUMNS = (
    ("finding_id", "编号 Finding id", 20),
    ("kind", "类型 Kind", 20),
    ("kind_label", "类型说明 Kind (label)", 28),
    ("summary", "摘要 Summary", 70),
    ("master_id", "主索引号 Master id", 16),
    ("records", "记录 Record references", 40),
    ("evidence", "证据（已脱敏）Masked evidence", 80),
    ("first_release", "首次发现版本 First release", 12),
    ("last_release", "最近发现版本 Last release", 12),
    ("first_seen_at", "首次发现时间 First seen", 20),
    ("last_seen_at", "最近发现时间 Last seen", 20),
    ("status", "状态 Status", 10),
)


def _record_refs(evidence: list[dict]) -> str:
    return "; ".join(f"{e['source']}/{e['source_record_id']} ({e['role']})" for e in evidence if "source" in e)


def _evidence_text(evidence: list[dict]) -> str:
    return "\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in evidence)


def _local(ts: dt.datetime | None) -> str:
    return ts.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M") if ts else ""


def export_findings_xlsx(conn: sa.Connection | sa.Engine, department: str, path: str | Path, *,
                         status: str | None = "open") -> Path:
    """Write ``department``'s findings (open ones by default; ``None`` for all) to an XLSX workbook.

    Sheet ``findings``: one row per finding (columns :data:`XLSX_COLUMNS`, bilingual header); sheet
    ``about``: what each kind means. Returns the path.
    """
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill

    from warehouse.findings import list_findings

    with _connection(conn) as c:
        rows = list_findings(c, department=department, status=status)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook()
    sheet = book.active
    sheet.title = "findings"
    sheet.append([label for _, label, _ in XLSX_COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="DDE7F0")
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    for r in rows:
        evidence = r["evidence"] or []
        values = {**r, "kind_label": " · ".join(KIND_LABELS.get(r["kind"], (r["kind"],))),
                  "records": _record_refs(evidence), "evidence": _evidence_text(evidence),
                  "first_seen_at": _local(r["first_seen_at"]), "last_seen_at": _local(r["last_seen_at"])}
        sheet.append([values[key] for key, _, _ in XLSX_COLUMNS])
    for i, (_, _, width) in enumerate(XLSX_COLUMNS, start=1):
        sheet.column_dimensions[sheet.cell(1, i).column_letter].width = width
    for row in sheet.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "B2"
    sheet.auto_filter.ref = sheet.dimensions
    about = book.create_sheet("about")
    about.append(["类型 Kind", "中文", "English"])
    for kind in KINDS:
        about.append([kind, *KIND_LABELS[kind]])
    about.append([])
    about.append(["部门 Department", department_titles().get(department, department)])
    about.append(["状态 Status", status or "all"])
    about.append(["说明 Note", "证据只含记录引用、代码和脱敏值 · evidence holds record references, codes and masked values only"])
    for col, width in zip("ABC", (22, 40, 60)):
        about.column_dimensions[col].width = width
    book.save(path)
    return path


def export_all(conn_or_engine: sa.Engine | sa.Connection | None = None, out_dir: str | Path | None = None,
               departments: Mapping[str, str] | None = None) -> dict[str, Path]:
    """One XLSX per department (``findings_<department>.xlsx``) and the HTML report, in ``out_dir``
    (default ``HUB_HOME/audit``). Returns {department or "report": path}."""
    from hub import settings

    conn_or_engine = conn_or_engine if conn_or_engine is not None else settings.engine()
    out = Path(out_dir) if out_dir is not None else settings.hub_home() / "audit"
    names = sorted(set((departments if departments is not None else source_departments()).values()))
    with _connection(conn_or_engine) as conn:
        names = sorted(set(names) | set(conn.execute(sa.text("SELECT DISTINCT department FROM audit.finding")).scalars()))
        paths = {d: export_findings_xlsx(conn, d, out / f"findings_{d or 'unassigned'}.xlsx") for d in names}
        paths["report"] = write_audit_report(conn, out)
    return paths


# ------------------------------------------------------------------------------------------ report
_PALETTE = ("#c0392b", "#2980b9", "#27ae60", "#8e44ad", "#d68910")


def _chart_png(trend: dict[int, dict[str, int]]) -> str | None:
    """The trend as a base64 PNG, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    releases = sorted(trend)
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for colour, kind in zip(_PALETTE, KINDS):
        ax.plot(releases, [trend[r].get(kind, 0) for r in releases], marker="o", label=kind, color=colour)
    ax.set_xlabel("release")
    ax.set_ylabel("findings")
    ax.set_xticks(releases)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _chart_svg(trend: dict[int, dict[str, int]]) -> str:
    """The trend as an inline SVG line chart (no dependency)."""
    releases = sorted(trend)
    width, height, left, right, top, bottom = 760, 260, 50, 190, 20, 40
    top_value = max([1, *(v for r in releases for v in trend[r].values())])
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (plot_w * i / (len(releases) - 1) if len(releases) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return top + plot_h - plot_h * v / top_value

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}"'
             f' viewBox="0 0 {width} {height}" aria-label="findings per release">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for tick in sorted({0, top_value // 2, top_value}):
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e3e3e3"/>'
                     f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" font-size="11" text-anchor="end">{tick}</text>')
    for i, r in enumerate(releases):
        parts.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" font-size="11" text-anchor="middle">{r}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" font-size="11" text-anchor="middle">'
                 '版本 release</text>')
    for n, (colour, kind) in enumerate(zip(_PALETTE, KINDS)):
        points = " ".join(f"{x(i):.1f},{y(trend[r].get(kind, 0)):.1f}" for i, r in enumerate(releases))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts += [f'<circle cx="{x(i):.1f}" cy="{y(trend[r].get(kind, 0)):.1f}" r="3" fill="{colour}"/>'
                  for i, r in enumerate(releases)]
        ly = top + 14 + 18 * n
        parts.append(f'<rect x="{left + plot_w + 12}" y="{ly - 9}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{left + plot_w + 30}" y="{ly + 1}" font-size="12">{kind}</text>')
    parts.append("</svg>")
    return "".join(parts)


_TEMPLATE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>跨部门一致性审计 · Cross-department consistency audit</title>
<style>
 body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
        margin: 24px; color: #222; background: #fff; }
 h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 2px solid #2c3e50; }
 h3 { font-size: 15px; margin: 16px 0 6px; }
 .en { color: #666; font-weight: normal; }
 table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
 th, td { border: 1px solid #bbb; padding: 4px 8px; text-align: left; vertical-align: top; }
 th { background: #dde7f0; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
 tr.total td { font-weight: bold; background: #f3f3f3; }
 .kind-deceased_active { color: #c0392b; } .kind-exclusive_programs { color: #2980b9; }
 .kind-sex_conflict { color: #27ae60; } .kind-birth_date_conflict { color: #8e44ad; }
 .kind-shared_id_number { color: #d68910; }
 .meta { color: #555; font-size: 13px; } .releases { display: flex; flex-wrap: wrap; gap: 16px; }
 code { font-size: 12px; }
</style>
</head>
<body>
<h1>跨部门一致性审计 <span class="en">Cross-department consistency audit</span></h1>
<p class="meta">生成时间 Generated {{ generated }} · 当前版本 Current release {{ current or "—" }} ·
 未解决 Open {{ open_total }} · 已解决 Resolved {{ resolved_total }}</p>

<h2 id="open">未解决的发现 <span class="en">Open findings by kind and department</span></h2>
<table id="open-counts">
 <tr><th>类型 Kind</th>{% for d in departments %}<th>{{ department_labels.get(d, d) }}</th>{% endfor %}<th>合计 Total</th></tr>
 {% for k in kinds %}
 <tr><td class="kind-{{ k }}"><code>{{ k }}</code> {{ kind_labels[k][0] }} <span class="en">{{ kind_labels[k][1] }}</span></td>
  {% for d in departments %}<td class="n">{{ open_counts.get((k, d), 0) }}</td>{% endfor %}
  <td class="n">{{ open_by_kind.get(k, 0) }}</td></tr>
 {% endfor %}
 <tr class="total"><td>合计 Total</td>{% for d in departments %}<td class="n">{{ open_by_department.get(d, 0) }}</td>{% endfor %}
  <td class="n">{{ open_total }}</td></tr>
</table>

<h2 id="trend">各版本趋势 <span class="en">Trend across releases</span></h2>
{% if chart_png %}<img alt="findings per release" src="data:image/png;base64,{{ chart_png }}">
{% elif chart_svg %}{{ chart_svg | safe }}{% else %}<p>尚无审计记录 <span class="en">No audited release yet.</span></p>{% endif %}
<div class="releases">
{% for r in releases %}
 <table class="release" id="release-{{ r }}">
  <tr><th colspan="{{ departments | length + 2 }}">版本 Release {{ r }}</th></tr>
  <tr><th>类型 Kind</th>{% for d in departments %}<th>{{ d }}</th>{% endfor %}<th>合计 Total</th></tr>
  {% for k in kinds %}
  <tr><td><code>{{ k }}</code></td>{% for d in departments %}<td class="n">{{ counts.get((r, k, d), 0) }}</td>{% endfor %}
   <td class="n">{{ trend[r].get(k, 0) }}</td></tr>
  {% endfor %}
 </table>
{% endfor %}
</div>

<h2 id="findings">未解决的发现明细 <span class="en">Open findings</span></h2>
{% for d in departments %}
<h3>{{ department_labels.get(d, d) }} <span class="en">({{ open_by_department.get(d, 0) }})</span></h3>
 {% set rows = findings_by_department.get(d, []) %}
 {% if rows %}
 <table class="findings">
  <tr><th>编号 Id</th><th>类型 Kind</th><th>摘要 Summary</th><th>主索引号 Master</th><th>记录 Records</th>
      <th>首次/最近版本 First/last release</th></tr>
  {% for f in rows[:limit] %}
  <tr><td><code>{{ f.finding_id }}</code></td><td class="kind-{{ f.kind }}"><code>{{ f.kind }}</code></td>
      <td>{{ f.summary }}</td><td><code>{{ f.master_id or "" }}</code></td><td>{{ f.records }}</td>
      <td class="n">{{ f.first_release }} / {{ f.last_release }}</td></tr>
  {% endfor %}
 </table>
 {% if rows | length > limit %}<p class="meta">… 另有 {{ rows | length - limit }} 条，见部门 XLSX
  <span class="en">and {{ rows | length - limit }} more in the department's XLSX</span></p>{% endif %}
 {% else %}<p class="meta">无 <span class="en">none</span></p>{% endif %}
{% endfor %}
<p class="meta">证据只含记录引用、代码和脱敏值，不含姓名或完整身份证号 ·
 <span class="en">Findings carry record references, codes and masked values only: no name, no full ID number.</span></p>
</body>
</html>
"""


def write_audit_report(conn: sa.Connection | sa.Engine, out_dir: str | Path, *, limit: int = 200) -> Path:
    """Write ``out_dir/audit_report.html``: open findings per kind and department, the trend across
    releases (tables and a chart) and up to ``limit`` open findings per department. Returns the path."""
    import jinja2

    from warehouse.findings import finding_counts, list_findings

    with _connection(conn) as c:
        counts_rows = finding_counts(c)
        open_rows = list_findings(c, status=None)
        current = c.execute(sa.text("SELECT release_no FROM publish.current_release")).scalar()
    open_only = [r for r in open_rows if r["status"] == "open"]
    departments = sorted({r["department"] for r in counts_rows} | {r["department"] for r in open_rows})
    counts = {(r["release_no"], r["kind"], r["department"]): r["findings"] for r in counts_rows}
    releases = sorted({r["release_no"] for r in counts_rows})
    trend = {n: {k: sum(v for (rn, kk, _), v in counts.items() if rn == n and kk == k) for k in KINDS}
             for n in releases}
    open_counts: dict[tuple[str, str], int] = {}
    for r in open_only:
        open_counts[r["kind"], r["department"]] = open_counts.get((r["kind"], r["department"]), 0) + 1
    findings_by_department: dict[str, list[dict]] = {}
    for r in open_only:
        findings_by_department.setdefault(r["department"], []).append(
            {**r, "records": _record_refs(r["evidence"] or [])})
    chart_png = _chart_png(trend) if releases else None
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        generated=dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).strftime("%Y-%m-%d %H:%M"),
        current=current, kinds=KINDS, kind_labels=KIND_LABELS, departments=departments,
        department_labels=department_titles(), open_counts=open_counts,
        open_by_kind={k: sum(v for (kk, _), v in open_counts.items() if kk == k) for k in KINDS},
        open_by_department={d: sum(v for (_, dd), v in open_counts.items() if dd == d) for d in departments},
        open_total=len(open_only), resolved_total=sum(1 for r in open_rows if r["status"] == "resolved"),
        releases=releases, counts=counts, trend=trend, chart_png=chart_png,
        chart_svg=_chart_svg(trend) if releases and not chart_png else None,
        findings_by_department=findings_by_department, limit=limit)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    path.write_text(html, encoding="utf-8")
    return path
