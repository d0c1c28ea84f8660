"""Cross-department consistency audits, run after each release.

The detection and the storage live in :mod:`warehouse.findings`; this module declares the audit
rules as data (which roll codes mean "active", which programmes exclude each other; the death codes
come from the survivorship rules' ``vital_status``) and runs them on a release into ``audit.finding``.
What the findings give their readers (each department's workbook, the audit report) is written by
:mod:`reports.audit`; :func:`export_all` hands it the hub's folder and the registry's departments.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa

from connectors.registry import source_departments
from hub import settings
from reports import audit as audit_reports
from warehouse.findings import KINDS, AuditRules, ExclusivePair, transaction

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
        conn_or_engine = settings.engine()
    rules = rules or audit_rules(departments)
    with transaction(conn_or_engine) as conn:
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


def refresh_gate_findings(conn: sa.Connection, run_id: int, departments: Mapping[str, str] | None = None) -> dict:
    """After gate run ``run_id`` (passed or failed), its failed expectations as items of the auditors' inbox and
    the gate items it no longer fails resolved (:mod:`warehouse.gate_findings`), in the caller's transaction (the
    one recording the run). ``departments``: source → department (default: the registry). Returns counts only."""
    from warehouse.gate_findings import refresh_gate_findings as refresh

    result = refresh(conn, run_id, departments if departments is not None else source_departments())
    log.info("gate run %s: %d failed expectations in the inbox (%d new, %d reopened, %d resolved, %d not closed)",
             run_id, result["failed"], result["new"], result["reopened"], result["resolved"], result["open"])
    return result


def export_all(conn_or_engine: sa.Engine | sa.Connection | None = None, out_dir: str | Path | None = None,
               departments: Mapping[str, str] | None = None) -> dict[str, Path]:
    """Each department's findings workbook and the audit report (:func:`reports.audit.export_all`), in
    ``out_dir`` (default ``HUB_HOME/audit``), for the registry's departments. Returns {department or "report": path}."""
    return audit_reports.export_all(conn_or_engine if conn_or_engine is not None else settings.engine(),
                                    Path(out_dir) if out_dir is not None else settings.hub_home() / "audit",
                                    departments if departments is not None else source_departments())
