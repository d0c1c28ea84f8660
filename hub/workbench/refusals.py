"""What a steward is told on the workbench when a decision is refused: Chinese first, English beside it, and what to
do instead ON THE WORKBENCH (which page, which key or button), or whom to ask when the workbench has no form for it.

The reasons come from :mod:`hub.stewardship` (its ``why`` / ``code`` and facts: the same checks as the read API and
the command line); their wording there names API routes or CLI commands, which a steward at the workbench has not.
Records of another department are never named, only counted or shown by their master id.
"""

from __future__ import annotations

from hub.stewardship import DecisionRefused, StewardRefused
from warehouse.gate_findings import DATA_OFFICE_TITLE

#: whom a steward asks for what the workbench has no form for (detaching an ID number, another department's record)
DATA_OFFICE_ZH, _, DATA_OFFICE_EN = DATA_OFFICE_TITLE.partition(" ")
DECIDE_NOT = ("请判定“不是同一人”（按 n）", 'decide "not a match" (key n)')


def _record(key: str | None, master: str | None) -> tuple[str, str]:
    if key is None:
        return (f"其他部门的一条记录（主索引 {master or '—'}）",
                f"a record of another department (master {master or '—'})")
    return f"{key}（主索引 {master or '尚无'}）", f"{key} (master {master or 'none yet'})"


def decision_words(exc: DecisionRefused) -> tuple[str, str]:
    """(Chinese, English): why a "match" of a review pair is refused, and what to do on the workbench instead."""
    facts = exc.facts
    (a_zh, a_en), (b_zh, b_en) = (_record(k, m) for k, m in zip(facts.get("records", (None, None)),
                                                                facts.get("masters", (None, None)), strict=False))
    zh = f"拒绝：将{a_zh}与{b_zh}判为同一人，"
    en = f"Refused: a match of {a_en} and {b_en} "
    if exc.why == "different_id":
        mine, others = facts.get("holders") or [], facts.get("other_holders") or 0
        held_zh = "、".join(mine[:4]) + (" 等" if len(mine) > 4 else "")
        held_en = ", ".join(mine[:4]) + (" …" if len(mine) > 4 else "")
        if others:
            held_zh += ("及" if mine else "") + f"其他部门的 {others} 条记录"
            held_en += (" and " if mine else "") + f"{others} record(s) of other departments"
        held_zh = f"（分别由{held_zh}持有）" if held_zh else ""
        held_en = f" (held by {held_en})" if held_en else ""
        mark_zh = f"（本部门的记录 {mine[0]}）" if mine else ""
        mark_en = f" (your department's record {mine[0]})" if mine else ""
        return (zh + f"会把两个各自有效的不同身份证号{held_zh}放进同一个主索引——这是两个人。{DECIDE_NOT[0]}。"
                f"若其中一条记录填的是别人的身份证号：工作台没有解除身份证号的表单，请联系{DATA_OFFICE_ZH}核查该记录并解除"
                f"其身份证号{mark_zh}，之后匹配会按其他字段比较这条记录。",
                en + f"would put two different ID numbers, each valid for its record{held_en}, in one master — two"
                f" people. {DECIDE_NOT[1].capitalize()}. If one of these records carries someone else's number: the"
                f" workbench has no form to detach an ID number — ask the {DATA_OFFICE_EN} ({DATA_OFFICE_ZH}) to check"
                f" the record and detach its number{mark_en}; matching then compares the record on its other fields.")
    if exc.why == "parent_child":
        years = facts.get("years")
        return (zh + f"会把出生日期相差 {years} 年的记录放进同一个主索引——很可能是父母与子女。{DECIDE_NOT[0]}。若出生日期"
                "有误，请在来源系统中更正；若本部门的某条记录放错了主索引，请打开下方链接的主索引页面，用“移出”按钮把它移出；"
                f"若放错的是其他部门的记录，请联系{DATA_OFFICE_ZH}。",
                en + f"would put birth dates {years} years apart in one master — most likely a parent and child."
                f" {DECIDE_NOT[1].capitalize()}. If a birth date is wrong, have it corrected in the source system; if"
                " a record of your department is under the wrong master, open the master's page linked below and use"
                f" its \"move out\" button; if it is another department's record, ask the {DATA_OFFICE_EN}.")
    if exc.why == "twins":
        return (zh + "会把出生日期相同、同一门牌或电话、但姓名写法和读音都不同的两条记录放进同一个主索引——很可能是双胞胎或"
                f"兄弟姐妹。{DECIDE_NOT[0]}；若姓名有误，请在来源系统中更正。",
                en + "would put two records with the same birth date and the same house or phone but names that"
                " differ in writing and in sound in one master — most likely twins or siblings."
                f" {DECIDE_NOT[1].capitalize()}; if a name is wrong, have it corrected in the source system.")
    return (zh + "与一项仍然有效的审核决定相抵触：该决定让这两个主索引的记录分开。请在下方链接的主索引页面查看其决定记录；"
            f"若该决定有误，请联系{DATA_OFFICE_ZH}复核，否则{DECIDE_NOT[0]}。",
            en + "goes against a steward decision in force that keeps records of these two masters apart. Read the"
            " decisions on the master's page linked below; if that decision was wrong, ask the"
            f" {DATA_OFFICE_EN} to review it, otherwise {DECIDE_NOT[1]}.")


def master_words(exc: StewardRefused) -> tuple[str, str]:
    """(Chinese, English): why a split or move-out on the master's page is refused, and what to do instead."""
    f = exc.facts
    if exc.code == "reason_needed":
        return ("请填写理由：理由会记入主索引的历史。", "Give a reason: it is kept in the master's history.")
    if exc.code == "no_records":
        return ("请勾选要拆分出去的本部门记录。", "Tick your department's records to split off.")
    if exc.code == "all_records":
        return (f"不能勾选主索引 {f['master_id']} 的全部记录：请只勾选要拆分出去的记录，其余记录保留该主索引。",
                f"These are all the records of {f['master_id']}: tick only the records to take out; the rest keep"
                " the master id.")
    if exc.code == "alone":
        return (f"{f['record']} 已是主索引 {f['master_id']} 中唯一的记录，无需移出。",
                f"{f['record']} is already alone under {f['master_id']}: there is nothing to move it out of.")
    if exc.code == "retired":
        return (f"主索引 {f['master_id']} 已并入 {f['current']}：请在 {f['current']} 的页面上操作。",
                f"Master {f['master_id']} was retired into {f['current']}: act on the page of {f['current']}.")
    return ("操作被拒绝。", f"Refused: {exc}")
