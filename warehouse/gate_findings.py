"""Failed expectations of the publish gate as items of the auditors' inbox (``audit.finding``, kind
``gate_expectation``).

After every gate run, passed or failed, :func:`refresh_gate_findings` reads the run's expectations
(``audit.validation_result``) and moves the inbox's gate items the way the audits move theirs after a release
(:mod:`warehouse.finding_lifecycle`): each failed expectation opens an item (or keeps its step when it is
already open, acknowledged or assigned; a resolved one reopens with a new due date; a dismissed one stays
dismissed), and an item the run no longer fails is resolved (``auto_resolved``, closed by ``gate run N``).
Only gate items are touched: the audits' findings are the audits' to move, and the other way round.

* **id**: a hash of the kind, the suite, the expectation, the table and the column, so the same failing
  expectation is the same item from run to run (two expectations of one type on one column of one suite
  are one item: the first failing one speaks for both).
* **owner**: the department of the suite's source (``source.<name>``: the registry's department of
  ``<name>``). The master-index suites check the hub's own matching, not a department's data: they, and a
  source the registry does not know, belong to :data:`DATA_OFFICE`, the hub's data office (数据中心) that runs
  the hub — ``warehouse/sharing.yaml`` declares only the consuming departments, none of which owns the index.
* **releases**: a gate run is not a release: ``first_release`` / ``last_release`` hold the release in force
  when the run failed (0 before the first release), and the items' events name the gate run in their comment.
  Gate items are not counted in ``audit.finding_count`` (the audits' trend per release); the gate's own
  history is ``audit.validation_run``.
* **summary and evidence**: counts, names of suites, tables, columns and expectations, and the gate's short
  observed text (never a value of a record: :mod:`expectations.outcomes` withholds those).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import sqlalchemy as sa

from warehouse.bulk import copy_rows, staging_table
from warehouse.findings import FINDING_LOCK, GATE_EXPECTATION

SOURCE_SUITE_PREFIX = "source."
DATA_OFFICE = "data_office"
DATA_OFFICE_TITLE = "数据中心 hub data office"


def gate_finding_id(suite: str, expectation: str, table: str | None, column: str | None) -> str:
    """The stable id of a failed gate expectation: its kind, suite, expectation, table and column."""
    text = "\n".join((GATE_EXPECTATION, suite, expectation, table or "", column or ""))
    return "F" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15].upper()


def suite_department(suite: str, departments: Mapping[str, str]) -> str:
    """The owner of a suite's failures: its source's department; the data office for the master index (and for a
    source the registry does not know)."""
    if suite.startswith(SOURCE_SUITE_PREFIX):
        return departments.get(suite[len(SOURCE_SUITE_PREFIX):]) or DATA_OFFICE
    return DATA_OFFICE


def _percent(value: float | None) -> str:
    if value is None:
        return ""
    return "<0.1%" if 0 < value < 0.1 else f"{value:.1f}%"


def _summary(r: Mapping) -> str:
    where = ".".join(p for p in (r["table_name"], r["column_name"]) if p) or "-"
    on = f" on {r['column_name']}" if r["column_name"] else f" on {r['table_name']}" if r["table_name"] else ""
    if r["unexpected_count"] is not None:
        share = _percent(r["unexpected_percent"])
        zh = f"{r['unexpected_count']} 行" + (f"（{share}）" if share else "")
        en = f"{r['unexpected_count']} rows" + (f" ({share})" if share else "")
    else:
        zh = en = r["observed"] or "no observed value"
    return (f"发布前校验 {r['suite']}：{r['expectation']}（{where}）未通过，{zh}"
            f" · suite {r['suite']}: {r['expectation']}{on} — {en}")


def failed_expectations(conn: sa.Connection, run_id: int) -> list[dict]:
    """The failed expectations of gate run ``run_id`` in the run's order (counts and names only)."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT position, suite, expectation, table_name, column_name, observed, unexpected_count,"
        "       unexpected_percent FROM audit.validation_result WHERE run_id = :r AND NOT success"
        " ORDER BY position"), {"r": run_id}).mappings()]


def gate_findings(conn: sa.Connection, run_id: int, departments: Mapping[str, str]) -> list[dict]:
    """The inbox items of gate run ``run_id``: one per failed expectation (id, kind, department, summary,
    evidence), by id."""
    if conn.execute(sa.text("SELECT 1 FROM audit.validation_run WHERE run_id = :r"), {"r": run_id}).scalar() is None:
        raise LookupError(f"there is no gate run {run_id}")
    items: dict[str, dict] = {}
    for r in failed_expectations(conn, run_id):
        suite = r["suite"] or "-"
        fid = gate_finding_id(suite, r["expectation"], r["table_name"], r["column_name"])
        evidence = {"role": "gate_expectation", "run_id": run_id, "suite": suite, "expectation": r["expectation"],
                    "table": r["table_name"], "column": r["column_name"], "unexpected_count": r["unexpected_count"],
                    "unexpected_percent": (round(r["unexpected_percent"], 4)
                                           if r["unexpected_percent"] is not None else None),
                    "observed": r["observed"]}
        items.setdefault(fid, {"finding_id": fid, "kind": GATE_EXPECTATION,
                               "department": suite_department(suite, departments), "master_id": None,
                               "summary": _summary({**r, "suite": suite}),
                               "evidence": [{k: v for k, v in evidence.items() if v is not None}]})
    return [items[k] for k in sorted(items)]


def refresh_gate_findings(conn: sa.Connection, run_id: int, departments: Mapping[str, str]) -> dict:
    """Move the inbox's gate items after gate run ``run_id`` (caller's transaction; the pipeline's is the one that
    records the run), set-based: the run's failed expectations open (or reopen) their items, the gate items it no
    longer fails resolve. ``departments``: source → department (the registry's). Returns counts only: ``failed``
    (expectations), ``new``, ``seen_again``, ``reopened``, ``resolved``, ``open`` (gate items not closed) and
    ``release_no`` (the release in force, 0 before the first)."""
    from warehouse.finding_lifecycle import NOT_CLOSED, open_and_reopen, resolve_gone
    from warehouse.releases import current_release

    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": FINDING_LOCK})
    current = current_release(conn)
    release_no = int(current["release_no"]) if current else 0
    items = gate_findings(conn, run_id, departments)
    staging_table(conn, "audit_found", "finding_id text PRIMARY KEY, kind text, department text, master_id text,"
                                       " summary text, evidence jsonb")
    copy_rows(conn, "audit_found", ("finding_id", "kind", "department", "master_id", "summary", "evidence"),
              ((i["finding_id"], i["kind"], i["department"], i["master_id"], i["summary"],
                json.dumps(i["evidence"], ensure_ascii=False, sort_keys=True)) for i in items))
    note = f"发布前校验运行 {run_id} · gate run {run_id}"
    moved = open_and_reopen(conn, release_no, name_release=False, note=note)
    resolved = resolve_gone(conn, None, kinds=(GATE_EXPECTATION,), closed_by=f"gate run {run_id}", note=note)
    open_now = conn.execute(sa.text(
        "SELECT count(*) FROM audit.finding WHERE kind = :kind AND status = ANY(CAST(:nc AS text[]))"),
        {"kind": GATE_EXPECTATION, "nc": list(NOT_CLOSED)}).scalar_one()
    return {"run_id": run_id, "release_no": release_no, "failed": len(items), **moved, "resolved": resolved,
            "open": int(open_now)}
