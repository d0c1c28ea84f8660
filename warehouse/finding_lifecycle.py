"""The lifecycle of an audit finding (``audit.finding``) and its history (``audit.finding_event``).

A finding opens when a release first shows it (:func:`warehouse.findings.refresh_findings`), with a due date
from its kind's SLA (``warehouse/finding_rules.yaml``). An auditor then moves it on::

    open → acknowledged → assigned (to an owner department) → resolved (a reason from the list)
                                                            ↘ dismissed (a reason from the list)

``assign`` again hands it to another department; ``dismiss`` is allowed from any step before closing;
``reopen`` undoes a close by hand; a comment may be added at any step. Every step is one
``audit.finding_event`` row (who, from which status to which, the reason, the comment) written in the
transaction of the change: the caller's (the workbench writes its access-log row in the same one). A step
the finding's status does not allow is refused with :class:`TransitionRefused`, which says why and what
would be allowed.

After each publish the hub itself moves findings (actor ``hub``): a new one opens (``opened``); a finding
not closed that the release no longer shows is resolved (``auto_resolved``, reason ``not_detected``,
closed by ``release N``); a resolved one shown again reopens (``reopened``, a new due date); a dismissed
one stays dismissed. After each gate run it does the same with the failed gate expectations
(:mod:`warehouse.gate_findings`, closed by ``gate run N``). Each refresh moves only its own kinds: the audits
never resolve a gate item, a gate run never resolves an audit finding.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from schemas.masking import mask_id_number, mask_phone
from schemas.policy import read_policy

RULES_PATH = Path(__file__).with_name("finding_rules.yaml")

STATUSES = ("open", "acknowledged", "assigned", "resolved", "dismissed")
NOT_CLOSED = ("open", "acknowledged", "assigned")
CLOSED = ("resolved", "dismissed")
STATUS_LABELS = {"open": ("待处理", "open"), "acknowledged": ("已确认", "acknowledged"),
                 "assigned": ("已分派", "assigned"), "resolved": ("已解决", "resolved"),
                 "dismissed": ("已驳回", "dismissed")}
ACTION_LABELS = {"opened": ("发现", "opened"), "acknowledged": ("确认", "acknowledged"),
                 "assigned": ("分派", "assigned"), "resolved": ("解决", "resolved"),
                 "dismissed": ("驳回", "dismissed"), "reopened": ("重新打开", "reopened"),
                 "auto_resolved": ("自动解决", "resolved automatically"), "commented": ("备注", "commented")}

HUB_ACTOR = "hub"
AUTO_REASON = "not_detected"  # the reason the hub gives when a release no longer shows a finding
COMMENT_MAX = 2000

#: action → (statuses it may start from, status it leads to (None: unchanged), the event's action)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "acknowledge": (("open",), "acknowledged", "acknowledged"),
    "assign": (("acknowledged", "assigned"), "assigned", "assigned"),
    "resolve": (("acknowledged", "assigned"), "resolved", "resolved"),
    "dismiss": (NOT_CLOSED, "dismissed", "dismissed"),
    "reopen": (CLOSED, "open", "reopened"),
    "comment": (STATUSES, None, "commented"),
}
ACTIONS = tuple(TRANSITIONS)


class FindingRulesError(ValueError):
    """The findings' rules file is missing a kind, or has a wrong value: the message names file and key."""


class TransitionRefused(ValueError):
    """A step the finding's status (or the input) does not allow; the message says why."""


@dataclass(frozen=True)
class FindingRules:
    """Days per kind to fix a finding, and the reasons to close one with (code → (中文, English))."""

    sla_days: Mapping[str, int]
    resolve_reasons: Mapping[str, tuple[str, str]]
    dismiss_reasons: Mapping[str, tuple[str, str]]

    def reasons(self, action: str, *, offered: bool = False) -> Mapping[str, tuple[str, str]]:
        """The reasons of ``resolve`` or ``dismiss``; ``offered``: those a person may pick (not the hub's own)."""
        reasons = self.resolve_reasons if action == "resolve" else self.dismiss_reasons if action == "dismiss" else {}
        return {k: v for k, v in reasons.items() if not (offered and k == AUTO_REASON)}

    def reason_label(self, code: str | None) -> str:
        label = self.resolve_reasons.get(code or "") or self.dismiss_reasons.get(code or "")
        return f"{label[0]} {label[1]}" if label else (code or "")


def _reasons(data: dict, key: str, path: Path) -> dict[str, tuple[str, str]]:
    value = data.get(key)
    if not isinstance(value, dict) or not value:
        raise FindingRulesError(f"{path}: {key}: expected a mapping of reason code → [中文, English]")
    out = {}
    for code, label in value.items():
        if not isinstance(code, str) or not re.fullmatch(r"[a-z][a-z0-9_]{1,40}", code):
            raise FindingRulesError(f"{path}: {key}.{code}: a reason code is lower-case letters, digits and _")
        if (not isinstance(label, list) or len(label) != 2
                or not all(isinstance(t, str) and t.strip() for t in label)):
            raise FindingRulesError(f"{path}: {key}.{code}: expected [中文, English], two non-empty texts")
        out[code] = (label[0].strip(), label[1].strip())
    return out


def load_finding_rules(path: str | Path | None = None, kinds: Iterable[str] | None = None) -> FindingRules:
    """The rules of ``path`` (default ``warehouse/finding_rules.yaml``); every kind (default: the inbox's, the
    audits' and ``gate_expectation``) needs an SLA of 1 to 365 days. Raises :class:`FindingRulesError` naming the
    file and the key."""
    if kinds is None:
        from warehouse.findings import INBOX_KINDS as kinds  # noqa: N811 — the audits' kinds and the gate's
    path = Path(path) if path is not None else RULES_PATH
    data = read_policy(path, FindingRulesError, "findings rules")
    unknown = sorted(set(data) - {"sla_days", "resolve_reasons", "dismiss_reasons"})
    if unknown:
        raise FindingRulesError(f"{path}: {unknown[0]}: unknown key (known: sla_days, resolve_reasons, dismiss_reasons)")
    sla = data.get("sla_days")
    if not isinstance(sla, dict):
        raise FindingRulesError(f"{path}: sla_days: expected a mapping of kind → days")
    kinds = tuple(kinds)
    for kind, days in sla.items():
        if kind not in kinds:
            raise FindingRulesError(f"{path}: sla_days.{kind}: unknown kind (known: {', '.join(kinds)})")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
            raise FindingRulesError(f"{path}: sla_days.{kind}: expected a whole number of days from 1 to 365")
    missing = [k for k in kinds if k not in sla]
    if missing:
        raise FindingRulesError(f"{path}: sla_days.{missing[0]}: missing (every kind needs its days)")
    resolve, dismiss = _reasons(data, "resolve_reasons", path), _reasons(data, "dismiss_reasons", path)
    if AUTO_REASON not in resolve:
        raise FindingRulesError(f"{path}: resolve_reasons.{AUTO_REASON}: missing (the hub's reason when a release"
                                " no longer shows a finding)")
    both = sorted(set(resolve) & set(dismiss))
    if both:
        raise FindingRulesError(f"{path}: dismiss_reasons.{both[0]}: also a resolve reason; use another code")
    return FindingRules(dict(sla), resolve, dismiss)


@functools.cache
def finding_rules() -> FindingRules:
    """The hub's own rules (read once)."""
    return load_finding_rules()


def sla_params(rules: FindingRules | None = None) -> dict:
    """``sla_kinds`` and ``sla_days`` for SQL: ``unnest(CAST(:sla_kinds AS text[]), CAST(:sla_days AS int[]))``."""
    rules = rules or finding_rules()
    return {"sla_kinds": list(rules.sla_days), "sla_days": [int(d) for d in rules.sla_days.values()]}


_SLA = "(SELECT * FROM unnest(CAST(:sla_kinds AS text[]), CAST(:sla_days AS int[])) AS s (kind, days))"
_ID_NUMBER = re.compile(r"(?<!\d)\d{17}[\dXxＸｘ](?!\d)|(?<!\d)\d{15}(?!\d)")
_PHONE = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)")


def masked_comment(text: str | None) -> str | None:
    """A comment as kept: trimmed, ID numbers and mobile numbers masked; None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > COMMENT_MAX:
        raise TransitionRefused(f"备注过长 the comment is {len(text)} characters long; at most {COMMENT_MAX}")
    text = _ID_NUMBER.sub(lambda m: mask_id_number(m.group(0)), text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)) or "", text)


def transition(conn: sa.Connection, finding_id: str, action: str, *, actor: str, reason: str | None = None,
               assigned_to: str | None = None, comment: str | None = None,
               departments: Iterable[str] | None = None, rules: FindingRules | None = None) -> dict:
    """Move finding ``finding_id`` one step (``action``: one of :data:`ACTIONS`) in the caller's transaction,
    with its ``audit.finding_event`` row; returns the finding as it is now.

    ``assign`` needs ``assigned_to``, one of ``departments``; ``resolve`` and ``dismiss`` need a ``reason``
    from the rules' list; ``comment`` needs a comment. Raises :class:`TransitionRefused` (nothing written) for a
    step the status does not allow, and :class:`LookupError` for an unknown finding."""
    rules = rules or finding_rules()
    if action not in TRANSITIONS:
        raise TransitionRefused(f"未知操作 unknown action {action!r}; known: {', '.join(ACTIONS)}")
    allowed, to_status, event = TRANSITIONS[action]
    row = conn.execute(sa.text("SELECT finding_id, kind, status FROM audit.finding WHERE finding_id = :f FOR UPDATE"),
                       {"f": finding_id}).mappings().first()
    if row is None:
        raise LookupError(f"there is no finding {finding_id}")
    status = row["status"]
    if status not in allowed:
        zh, en = STATUS_LABELS[status]
        can = [a for a, (starts, _, _) in TRANSITIONS.items() if status in starts]
        raise TransitionRefused(f"问题 {finding_id} 当前为「{zh}」，不能{ACTION_LABELS[event][0]}"
                                f" · finding {finding_id} is {en}: it cannot be {ACTION_LABELS[event][1]}"
                                f" (allowed from {' or '.join(allowed)}); what it allows now: {', '.join(can)}")
    comment = masked_comment(comment)
    sets: dict[str, str] = {}
    params: dict = {"f": finding_id}
    if action == "comment" and not comment:
        raise TransitionRefused("请填写备注 a comment needs its text")
    if action == "assign":
        known = sorted(set(departments or ()))
        if not assigned_to or assigned_to not in known:
            raise TransitionRefused(f"请选择责任部门 assign to one of the departments: {', '.join(known)}"
                                    f"{f' (not {assigned_to!r})' if assigned_to else ''}")
        sets.update(assigned_to=":to", assigned_at="now()")
        params["to"] = assigned_to
    if action in ("resolve", "dismiss"):
        offered = rules.reasons(action, offered=True)
        if reason not in offered:
            raise TransitionRefused(f"请选择原因 {action} needs a reason from the list: {', '.join(offered)}"
                                    f"{f' (not {reason!r})' if reason else ''}")
        sets.update(closed_at="now()", close_reason=":reason", closed_by=":actor")
        params.update(reason=reason, actor=actor)
    if action == "acknowledge":
        sets["acknowledged_at"] = "now()"
    if action == "reopen":
        sets.update(closed_at="NULL", close_reason="NULL", closed_by="NULL", acknowledged_at="NULL",
                    assigned_at="NULL", assigned_to="NULL",
                    due_at=f"now() + make_interval(days => (SELECT days FROM {_SLA} s WHERE s.kind = :kind))")
        params.update(kind=row["kind"], **sla_params(rules))
    if to_status is not None:
        sets["status"] = ":to_status"
        params["to_status"] = to_status
    if sets:
        conn.execute(sa.text(f"UPDATE audit.finding SET {', '.join(f'{k} = {v}' for k, v in sets.items())}"
                             " WHERE finding_id = :f"), params)
    conn.execute(sa.text(
        "INSERT INTO audit.finding_event (finding_id, actor, action, from_status, to_status, assigned_to, reason,"
        " comment) VALUES (:f, :actor, :event, :from_status, :to_status, :to, :reason, :comment)"),
        {"f": finding_id, "actor": actor, "event": event, "from_status": status, "to_status": to_status or status,
         "to": assigned_to if action == "assign" else None, "reason": reason if action in ("resolve", "dismiss")
         else None, "comment": comment})
    return get_finding(conn, finding_id)


# --------------------------------------------------------------------------- what the hub does after a publish
def open_and_reopen(conn: sa.Connection, release_no: int, rules: FindingRules | None = None, *,
                    name_release: bool = True, note: str | None = None) -> dict:
    """Store the findings staged in ``audit_found`` (see :func:`warehouse.findings.refresh_findings`), set-based:
    new ones open with their due date, those seen again keep their status (a resolved one reopens with a new due
    date; a dismissed one stays dismissed), and each opened or reopened one gets its event. Returns the counts
    ``new``, ``seen_again`` (not closed), ``reopened``.

    ``release_no`` is the findings' first/last release; the events name it too unless ``name_release`` is False
    (a gate run's items: the run is not a release; ``note``, the events' comment, names the run)."""
    params = {"n": release_no, "actor": HUB_ACTOR, **sla_params(rules),
              "event_n": release_no if name_release else None, "note": note}
    conn.execute(sa.text("DROP TABLE IF EXISTS audit_seen"))
    conn.execute(sa.text(
        "CREATE TEMPORARY TABLE audit_seen ON COMMIT DROP AS"
        " SELECT a.finding_id, f.status AS old_status, now() + make_interval(days => coalesce(s.days, 30)) AS due_at"
        f" FROM audit_found a LEFT JOIN audit.finding f USING (finding_id) LEFT JOIN {_SLA} s ON s.kind = a.kind"),
        params)
    counts = dict(conn.execute(sa.text(
        "SELECT count(*) FILTER (WHERE old_status IS NULL) AS new,"
        "       count(*) FILTER (WHERE old_status = ANY(CAST(:nc AS text[]))) AS seen_again,"
        "       count(*) FILTER (WHERE old_status = 'resolved') AS reopened FROM audit_seen"),
        {"nc": list(NOT_CLOSED)}).mappings().one())
    reopen = "f.status = 'resolved'"
    conn.execute(sa.text(
        "INSERT INTO audit.finding AS f (finding_id, kind, department, master_id, summary, evidence, first_release,"
        "                                last_release, status, due_at)"
        " SELECT a.finding_id, a.kind, a.department, a.master_id, a.summary, a.evidence, :n, :n, 'open', s.due_at"
        " FROM audit_found a JOIN audit_seen s USING (finding_id)"
        " ON CONFLICT (finding_id) DO UPDATE SET department = EXCLUDED.department, master_id = EXCLUDED.master_id,"
        "   summary = EXCLUDED.summary, evidence = EXCLUDED.evidence,"
        "   last_release = greatest(f.last_release, EXCLUDED.last_release), last_seen_at = now(),"
        f"  status = CASE WHEN {reopen} THEN 'open' ELSE f.status END,"
        f"  due_at = CASE WHEN {reopen} THEN EXCLUDED.due_at ELSE f.due_at END,"
        + "".join(f"  {c} = CASE WHEN {reopen} THEN NULL ELSE f.{c} END,"
                  for c in ("acknowledged_at", "assigned_at", "assigned_to", "closed_at", "close_reason"))
        + f"  closed_by = CASE WHEN {reopen} THEN NULL ELSE f.closed_by END"), params)
    conn.execute(sa.text(
        "INSERT INTO audit.finding_event (finding_id, actor, action, from_status, to_status, release_no, comment)"
        " SELECT finding_id, :actor, CASE WHEN old_status IS NULL THEN 'opened' ELSE 'reopened' END, old_status,"
        "        'open', CAST(:event_n AS int), CAST(:note AS text) FROM audit_seen"
        " WHERE old_status IS NULL OR old_status = 'resolved'"
        " ORDER BY finding_id"), params)
    return {k: int(v) for k, v in counts.items()}


def resolve_gone(conn: sa.Connection, release_no: int | None, *, kinds: Iterable[str], closed_by: str | None = None,
                 note: str | None = None) -> int:
    """Resolve every finding of ``kinds`` not closed that ``audit_found`` (the release's findings) no longer holds,
    each with its ``auto_resolved`` event (closed by ``closed_by``, default ``release N``; ``note``: the event's
    comment). Findings of other kinds are left alone: each refresh resolves only what it detects. Returns how
    many."""
    kinds = sorted(set(kinds))
    if not kinds:
        raise ValueError("resolve_gone needs the kinds of finding the refresh detects")
    return conn.execute(sa.text(
        "WITH gone AS (SELECT f.finding_id, f.status FROM audit.finding f"
        "              WHERE f.status = ANY(CAST(:nc AS text[])) AND f.kind = ANY(CAST(:kinds AS text[]))"
        "                AND NOT EXISTS (SELECT 1 FROM audit_found a WHERE a.finding_id = f.finding_id)"
        "              FOR UPDATE),"
        " closed AS (UPDATE audit.finding f SET status = 'resolved', closed_at = now(), close_reason = :reason,"
        "              closed_by = :by FROM gone WHERE f.finding_id = gone.finding_id RETURNING f.finding_id)"
        " INSERT INTO audit.finding_event (finding_id, actor, action, from_status, to_status, reason, release_no,"
        "                                 comment)"
        " SELECT gone.finding_id, :actor, 'auto_resolved', gone.status, 'resolved', :reason, CAST(:n AS int),"
        "        CAST(:note AS text)"
        " FROM gone JOIN closed USING (finding_id) ORDER BY gone.finding_id"),
        {"nc": list(NOT_CLOSED), "kinds": kinds, "reason": AUTO_REASON, "by": closed_by or f"release {release_no}",
         "actor": HUB_ACTOR, "n": release_no, "note": note}).rowcount


def record_download(conn: sa.Connection, *, actor: str, department: str | None, what: str, rows: int) -> None:
    """The ``audit.export_log`` row of an inbox sent as a download (no file kept: no path), in the caller's
    transaction. No RETURNING: the read API's role may append to the log but not read it."""
    conn.execute(sa.text("INSERT INTO audit.export_log (actor, department, kind, what, path, rows)"
                         " VALUES (:actor, :department, 'findings', :what, NULL, :rows)"),
                 {"actor": actor, "department": department, "what": what, "rows": rows})


# --------------------------------------------------------------------------------------------- reading
#: the time a finding last opened: its last opened/reopened event (a finding stored before the history began:
#: when it was first seen)
OPENED_AT = ("coalesce((SELECT e.at FROM audit.finding_event e WHERE e.finding_id = f.finding_id"
             " AND e.action IN ('opened', 'reopened') ORDER BY e.event_id DESC LIMIT 1), f.first_seen_at)")


def get_finding(conn: sa.Connection, finding_id: str) -> dict | None:
    """One finding with ``opened_at`` and ``overdue``, or None."""
    row = conn.execute(sa.text(
        f"SELECT f.*, {OPENED_AT} AS opened_at,"
        " (f.status = ANY(CAST(:nc AS text[])) AND f.due_at < now()) AS overdue"
        " FROM audit.finding f WHERE f.finding_id = :f"), {"f": finding_id, "nc": list(NOT_CLOSED)}).mappings().first()
    return dict(row) if row else None


def history(conn: sa.Connection, finding_id: str) -> list[dict]:
    """The finding's events, oldest first."""
    return [dict(r) for r in conn.execute(sa.text(
        "SELECT event_id, at, actor, action, from_status, to_status, assigned_to, reason, comment, release_no"
        " FROM audit.finding_event WHERE finding_id = :f ORDER BY event_id"), {"f": finding_id}).mappings()]


def hours_between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    """Hours from ``start`` to ``end`` (None when either is missing): response and resolution times."""
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds() / 3600)
