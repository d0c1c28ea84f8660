"""What a finding shows a department that is not an auditor: its own department's records as stored, another
department's records by that department and their role in the finding only, birth dates to the year.

A finding's evidence (:mod:`warehouse.findings`) names every record it is about by source and record id, with
the codes and masked values the auditors weigh: a death registered by civil affairs, the other side of a pair of
exclusive programmes, the records that agree with the master. The auditors see all of it. A department sees
what the rest of the workbench shows it (:mod:`hub.stewardship`: "a record of another department: its source,
record id and fields are not shared"): a record of another department keeps its role and its department and
nothing else, and a summary that would name such a record (its source, record id or a value of it) is written
again from what the department may see. Birth dates, masked to the month in the stored evidence (an auditor
needs the month to judge a birth-date conflict), are masked to the year, as the master view shows them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from warehouse.findings import DECEASED_ACTIVE, EXCLUSIVE_PROGRAMS, KIND_LABELS

__all__ = ["OTHER_DEPARTMENT", "ROLE_LABELS", "WITHHELD", "department_view", "role_label", "year_only"]

#: an evidence item's role → (中文, English)
ROLE_LABELS = {
    "active_record": ("仍在享受待遇的记录", "record still active on the roll"),
    "master_status": ("主索引状态", "the master's status"),
    "death_registration": ("死亡登记", "death registration"),
    "enrolment": ("参加项目的记录", "enrolment"),
    "disagreeing_record": ("不一致的记录", "disagreeing record"),
    "master_value": ("主索引的值", "the master's value"),
    "agreeing_record": ("一致的记录", "agreeing record"),
    "id_number_value": ("身份证号所含的值", "value the ID number encodes"),
    "carrying_record": ("使用该号码的记录", "record carrying the number"),
    "number_owner": ("号码的所有人", "the number's owner"),
    "owner_record": ("号码所有人的记录", "record of the number's owner"),
    "gate_expectation": ("未通过的期望", "failed expectation"),
}
#: an evidence item of another department's record carries this flag (and its role and department only)
WITHHELD = "withheld"
OTHER_DEPARTMENT = ("另一部门", "another department")
_MONTH_MASKED = re.compile(r"^(\d{4})-\d{2}-\*\*$")
_PAIR = re.compile(r"「(?P<title>[^」]*)」.*programmes \((?P<name>[^)]*)\)")


def role_label(role: str | None) -> tuple[str, str]:
    """(中文, English) of an evidence item's role; an unknown role as itself."""
    return ROLE_LABELS.get(role or "", (role or "", role or ""))


def year_only(value: object) -> object:
    """A birth date masked to the month (``1968-01-**``) masked to the year (``1968-**-**``); anything else as is."""
    if isinstance(value, str) and (found := _MONTH_MASKED.match(value)):
        return f"{found.group(1)}-**-**"
    return value


def _department_of(item: Mapping, departments: Mapping[str, str]) -> str:
    return item.get("department") or departments.get(item.get("source") or "", "")


def _title(department: str, titles: Mapping[str, str]) -> str:
    return titles.get(department, department) if department else " ".join(OTHER_DEPARTMENT)


def _names(items: Iterable[str]) -> list[str]:
    return sorted(set(items))


def _others_words(others: list[dict], titles: Mapping[str, str]) -> tuple[str, str]:
    """Another department's records as their departments' titles and roles."""
    words = _names(f"{_title(o.get('department', ''), titles)}：{role_label(o['role'])[0]}" for o in others)
    en = _names(f"{_title(o.get('department', ''), titles)}: {role_label(o['role'])[1]}" for o in others)
    return "；".join(words), "; ".join(en)


def _safe_summary(finding: Mapping, own: list[dict], others: list[dict], masters: list[dict],
                  titles: Mapping[str, str]) -> str:
    """The summary written again from the department's own records, the master's values and the other
    departments' titles."""
    kind = finding["kind"]
    zh_kind, en_kind = KIND_LABELS.get(kind, (kind, kind))
    if kind == DECEASED_ACTIVE:
        month = next((m.get("death_month") for m in masters if m.get("role") == "master_status"), None)
        registered = _names([r["source"] for r in own if r["role"] == "death_registration"]
                            + [_title(o.get("department", ""), titles) for o in others
                               if o["role"] == "death_registration"]) or ["?"]
        active = [r for r in own if r["role"] == "active_record"]
        if active:
            code = active[0].get("status_raw", "")
            roll, zh_code, en_code = active[0]["source"], f"（{code}）", f" (status {code})"
        else:  # the roll is another department's: its title only
            roll = next((_title(o.get("department", ""), titles) for o in others if o["role"] == "active_record"), "?")
            zh_code = en_code = ""
        return (f"已登记死亡（{month or '日期不详'}，{'、'.join(registered)}）仍在 {roll} 享受待遇{zh_code}"
                f" · deceased ({month or 'date unknown'}, registered by {', '.join(registered)})"
                f" but still active in {roll}{en_code}")
    if kind == EXCLUSIVE_PROGRAMS:
        pair = _PAIR.search(finding.get("summary") or "")
        title, name = (pair.group("title"), pair.group("name")) if pair else (zh_kind, en_kind)
        sides = _names([r.get("status_raw", r["source"]) for r in own]
                       + [_title(o.get("department", ""), titles) for o in others])
        return (f"同时参加互斥项目「{title}」：{' + '.join(sides)}"
                f" · in mutually exclusive programmes ({name}): {' + '.join(sides)}")
    zh_others, en_others = _others_words(others, titles)
    mine = ", ".join(_names(r["source"] for r in own)) or "-"
    return (f"{zh_kind}：本部门 {mine}" + (f"；{zh_others}" if zh_others else "")
            + f" · {en_kind}: yours {mine}" + (f"; {en_others}" if en_others else ""))


def _names_another(summary: str, others: list[dict]) -> bool:
    """Whether ``summary`` names another department's record: its source, record id or a value of it."""
    tokens = {str(v) for o in others for k, v in o.items() if k not in ("role", "department", "side") and v not in (None, "")}
    return any(t in summary for t in tokens)


def department_view(finding: Mapping, viewer: str | None, *, departments: Mapping[str, str],
                    titles: Mapping[str, str]) -> dict:
    """``finding`` (a row of :func:`warehouse.findings.list_findings`) as ``viewer`` (a department) may read it;
    ``viewer`` None (an auditor): as stored. ``departments``: source → department (the registry's), for an
    evidence item that does not say; ``titles``: department → its title, for the summary written again."""
    if viewer is None:
        return dict(finding)
    evidence, own, others, masters = [], [], [], []
    for item in finding.get("evidence") or []:
        if "source" in item and _department_of(item, departments) != viewer:
            others.append(dict(item, department=_department_of(item, departments)))
            evidence.append({"role": item.get("role", ""), "department": others[-1]["department"], WITHHELD: True})
            continue
        shown = {k: year_only(v) for k, v in item.items()}
        (own if "source" in item else masters).append(shown)
        evidence.append(shown)
    summary = finding.get("summary") or ""
    if others and (finding["kind"] in (DECEASED_ACTIVE, EXCLUSIVE_PROGRAMS) or _names_another(summary, others)):
        summary = _safe_summary(finding, own, others, masters, titles)
    return {**finding, "evidence": evidence, "summary": summary}
