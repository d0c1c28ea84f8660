"""What the cross-department audits give their readers: each department's findings workbook and the audit report.

``export_all(engine, out_dir, departments)`` writes both from ``audit.finding`` and
``audit.finding_count`` (the audits themselves run in :mod:`hub.audits`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from reports.audit_report import REPORT_NAME, write_audit_report
from reports.findings_workbook import XLSX_COLUMNS, export_findings_xlsx
from warehouse.findings import finding_departments, transaction

__all__ = ["REPORT_NAME", "XLSX_COLUMNS", "export_all", "export_findings_xlsx", "workbook_name", "write_audit_report"]


def workbook_name(department: str) -> str:
    """``findings_<department>.xlsx``."""
    return f"findings_{department or 'unassigned'}.xlsx"


def export_all(conn_or_engine: sa.Engine | sa.Connection, out_dir: str | Path,
               departments: Mapping[str, str] | None = None) -> dict[str, Path]:
    """One XLSX per department (``findings_<department>.xlsx``) and the HTML report, in ``out_dir``.

    ``departments`` (source → department, the registry's) names the departments that get a workbook
    even without findings; every department owning a stored finding gets one too. Each workbook is the
    department's copy: another department's records show only their department and role.
    The folder is made readable by its owner only (0700): the workbooks (0600) and the report name
    records of persons. Returns {department or "report": path}.
    """
    out = Path(out_dir)
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    out.chmod(0o700)
    with transaction(conn_or_engine) as conn:
        names = sorted(set((departments or {}).values()) | set(finding_departments(conn)))
        paths = {d: export_findings_xlsx(conn, d, out / workbook_name(d), sources=departments or {}) for d in names}
        paths["report"] = write_audit_report(conn, out)
    return paths
