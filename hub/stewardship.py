"""Stewardship: the review queue, decisions, and the history of a master id.

One code path for ``hub review …`` / ``hub history`` and the read API. Names and ID numbers
leave this module masked.

Decisions are an append-only history (``mpi.decision``): a new one supersedes, never erases. Every
matching run honours the decisions in force (:mod:`warehouse.stewardship`). A "match" that would put
two ID numbers valid for their records, or a parent and child, or twins, in one master is refused
(:class:`DecisionRefused`) with what the steward can do instead — the same constraints the clustering
keeps (:func:`mpi.clustering.violated`), checked on the two records' current masters.

Who sees what: the hub's own users (``hub review``, ``hub history``: data engineers, auditors) see every
department's records, masked. A department's steward (``viewer``, the read API) sees only the pairs
and masters with at least one record of its own department's sources (the source registry says which
department owns a source), and of those records only the fields its department may see under
``warehouse/sharing.yaml`` — masked as well. A record of another department's source is shown by its
master id only, its fields withheld: the department was never given them, and the stored evidence (each
comparison's level and weight, no values) is what the steward weighs.
Anything outside a steward's scope answers as if it did not exist.

What a steward is told about other departments' records: a pair's record of another department's source
is shown without its ``source/record`` key (``record_key`` null, ``department`` "another department"),
with its master id; a review pair's ``record_key_l`` / ``record_key_r`` of another department is null and
``other_records`` counts them. A decision lists only the viewer's own records in ``record_keys`` and
``other_keys``; ``other_records`` counts the others and ``subject`` is withheld (null). Decisions naming
no record of the viewer's department are not listed. The reviewer and comment of a decision taken with
another department's key are replaced by "another department's steward" and null; those of the hub's
own staff (the CLI) are shown. A split, move-out or detach-id by a steward accepts only
records of its own department's sources under the master named: anything else raises
:class:`OutOfScope` — answered exactly like a record that does not exist. Refusals to a steward name
only its own records and say what to ask of the hub's operator instead of naming CLI commands.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection

import numpy as np
import pandas as pd
import sqlalchemy as sa

from connectors.registry import source_departments
from hub.errors import HubError
from schemas.masking import mask_house_no, mask_id_number, mask_name, mask_phone
from warehouse import stewardship as stored
from warehouse.sharing import NOT_SHARED, DepartmentSharing

DECISIONS = ("match", "not_a_match")


class DecisionRefused(HubError):
    """A decision that would corrupt the index (two people in one master); the message says what to do instead.
    ``why`` (different_id | parent_child | twins | steward) and ``facts`` (the records named as the viewer may see
    them, their masters, the holders of the numbers, the years apart) let a page say it in its own words."""

    def __init__(self, message: str, *, why: str | None = None, facts: dict | None = None):
        super().__init__(message)
        self.why, self.facts = why, dict(facts or {})


class StewardRefused(HubError):
    """A split or move-out that cannot be done as asked; ``code`` and ``facts`` let a page say why in its words."""

    def __init__(self, message: str, *, code: str, **facts):
        super().__init__(message)
        self.code, self.facts = code, facts


class OutOfScope(HubError):
    """Something a department's steward may not see or act on: answered as if it did not exist."""


OTHER_STEWARD = "another department's steward"
OTHER_RECORD = "a record of another department"
_KEY_OF_REVIEWER = re.compile(r"\(api key (\S+)\)\s*$")


#: a review record's field → the published field whose sharing class decides whether a department sees it
RECORD_SHARING = {"master_id": "master_id", "name": "name", "id_number": "id_number",
                  "id_number_status": "id_number_status", "sex": "sex", "birth_date": "birth_date", "phone": "phone",
                  "address_village": "address", "address_house_no": "address", "status_raw": "status"}


def own_sources(viewer: DepartmentSharing) -> list[str]:
    """The sources (registry names) of the viewer's department."""
    return sorted(s for s, d in source_departments().items() if d == viewer.department)


def _own(viewer: DepartmentSharing | None, key: str | None) -> bool:
    return viewer is None or (key is not None and key.partition("/")[0] in own_sources(viewer))


def _reviewers_own(conn: sa.Connection, viewer: DepartmentSharing, reviewers: list[str | None]) -> set[str]:
    """Of these reviewer texts, those of a key of the viewer's own department."""
    keys = {r: m.group(1) for r in reviewers if r and (m := _KEY_OF_REVIEWER.search(r))}
    departments = stored.key_departments(conn, keys.values())
    return {r for r, k in keys.items() if departments.get(k) == viewer.department}


def _withhold_reviewer(row: dict, own: set[str]) -> dict:
    """``reviewer`` and ``comment`` of a decision taken with another department's key, replaced; the hub's
    staff's (on the CLI, no key) are shown."""
    reviewer = row.get("reviewer")
    if reviewer is None or reviewer in own or _KEY_OF_REVIEWER.search(reviewer) is None:
        return row
    return dict(row, reviewer=OTHER_STEWARD, comment=None)


def pairs_for(conn: sa.Connection, viewer: DepartmentSharing | None, rows: list[dict]) -> list[dict]:
    """Review pairs as a viewer may read them: another department's record keys null, counted in
    ``other_records``; another department's reviewer and comment withheld."""
    if viewer is None:
        return rows
    own = _reviewers_own(conn, viewer, [r.get("reviewer") for r in rows])
    out = []
    for r in rows:
        hidden = [side for side in ("record_key_l", "record_key_r") if not _own(viewer, r[side])]
        out.append(_withhold_reviewer(dict(r, **dict.fromkeys(hidden), other_records=len(hidden)), own))
    return out


def decisions_for(conn: sa.Connection, viewer: DepartmentSharing | None, rows: list[dict]) -> list[dict]:
    """Decisions as a viewer may read them: only those naming a record of its sources, with only those
    records named (``other_records`` counts the rest, ``subject`` withheld); another department's
    reviewer and comment withheld."""
    if viewer is None:
        return rows
    own = _reviewers_own(conn, viewer, [r.get("reviewer") for r in rows])
    out = []
    for d in rows:
        named = [*d["record_keys"], *d["other_keys"]]
        if not any(_own(viewer, k) for k in named):
            continue
        mine = {f: [k for k in d[f] if _own(viewer, k)] for f in ("record_keys", "other_keys")}
        out.append(_withhold_reviewer(dict(d, **mine, subject=None, other_records=len(named) - sum(
            len(v) for v in mine.values())), own))
    return out


def in_scope(viewer: DepartmentSharing | None, record_keys: list[str]) -> bool:
    """Whether a steward of ``viewer``'s department may see something about these records: one of them
    is of its own sources (always, for the hub's own user, ``viewer`` None)."""
    if viewer is None:
        return True
    mine = set(own_sources(viewer))
    return any(k.partition("/")[0] in mine for k in record_keys)


def list_reviews(conn: sa.Connection, *, status: str = "open", limit: int = 50, reason: str | None = None,
                 viewer: DepartmentSharing | None = None) -> list[dict]:
    """Review pairs, strongest first: ``status`` open | decided | all; with a ``viewer``, only the pairs
    with a record of its department's sources."""
    if status not in stored.REVIEW_STATUSES:
        raise HubError(f"unknown review status {status!r}: expected open, decided or all")
    rows = stored.review_pairs(conn, status=status, limit=limit, reason=reason,
                               sources=own_sources(viewer) if viewer is not None else None)
    return pairs_for(conn, viewer, rows)


def _record(conn: sa.Connection, record_key: str, viewer: DepartmentSharing | None = None,
            full: Collection[str] = ()) -> dict:
    source, _, record_id = record_key.partition("/")
    if viewer is not None and source not in own_sources(viewer):
        master = stored.masters_of(conn, [record_key]).get(record_key)
        return {"record_key": None, "master_id": master if viewer.classes["master_id"] != NOT_SHARED else None,
                "department": "another department", "withheld": sorted(RECORD_SHARING),
                "note": f"{OTHER_RECORD}: its source, record id and fields are not shared with {viewer.department}"}
    out = stored.standardized_record(conn, source, record_id)
    if out is None:
        return {"record_key": record_key, "present": False}
    kept = {f: out.get(f) for f, shared in RECORD_SHARING.items() if shared in full and f in out}
    out.update(record_key=record_key, present=True, name=mask_name(out["name"]),
               id_number=mask_id_number(out["id_number"]) if out["id_number"] else None,
               phone=mask_phone(out.get("phone")), address_house_no=mask_house_no(out.get("address_house_no")))
    out.update(kept)  # the fields an approved purpose releases (the caller's), in full
    if viewer is not None:
        visible = set(viewer.visible())
        withheld = sorted(f for f, shared in RECORD_SHARING.items() if shared not in visible)
        out = {k: v for k, v in out.items() if k not in withheld}
        out["withheld"] = withheld
    return out


def show_review(conn: sa.Connection, review_id: int, *, viewer: DepartmentSharing | None = None,
                full: Collection[str] = ()) -> dict:
    """One review pair: both records (masked), their master ids, the evidence per comparison (as
    stored) and its ``explanation`` (:meth:`mpi.explain.Explanation.to_dict`; None without evidence).
    With a ``viewer``: only a pair with a record of its department's sources, each record cut to the
    fields the department may see (``withheld`` lists the others). ``full``: published fields shown in full
    on the viewer's own records (the 有条件 fields its approved purpose releases), the others stay masked."""
    out = stored.review_pair(conn, review_id)
    if out is None or not in_scope(viewer, [out["record_key_l"], out["record_key_r"]]):
        raise HubError(f"no review pair {review_id}")
    evidence = out.pop("evidence")
    out["evidence"] = evidence if isinstance(evidence, dict) else json.loads(evidence or "{}")
    out["left"] = _record(conn, out["record_key_l"], viewer, full)
    out["right"] = _record(conn, out["record_key_r"], viewer, full)
    out = pairs_for(conn, viewer, [out])[0]
    # the evidence explained as hub explain --pair explains it: labelled levels, weights adding up
    out["explanation"] = None
    if any(k.startswith(("gamma_", "mw_")) for k in out["evidence"]) and out.get("match_weight") is not None:
        from hub.explanation import stored_explanation

        out["explanation"] = stored_explanation(conn, out["evidence"], match_weight=out["match_weight"],
                                                match_probability=out["match_probability"]).to_dict()
    return out


def _who(reviewer: str, reason: str | None = None, *, reason_needed: bool = False,
         viewer: DepartmentSharing | None = None) -> tuple[str, str | None]:
    dash = "--" if viewer is None else ""  # the CLI's option, or the API's field
    if not reviewer or not reviewer.strip():
        raise HubError(f"a decision needs the reviewer's name ({dash}reviewer)")
    if reason_needed and (not reason or not reason.strip()):
        raise StewardRefused(f"this decision needs a reason ({dash}reason), kept in the master's history",
                             code="reason_needed")
    return reviewer.strip(), (reason or "").strip() or None


def decide(conn: sa.Connection, review_id: int, decision: str, *, reviewer: str, comment: str = "",
           viewer: DepartmentSharing | None = None) -> dict:
    """Record a steward's decision on a review pair; every later matching run honours it (must-link /
    cannot-link). A "match" that would put two people in one master raises :class:`DecisionRefused`.
    A ``viewer`` decides only the pairs it may see (:func:`show_review`)."""
    if decision not in DECISIONS:
        raise HubError(f"unknown decision {decision!r}: expected one of {', '.join(DECISIONS)}")
    reviewer, comment = _who(reviewer, comment, viewer=viewer)
    # one decision on a pair at a time (until the caller's transaction ends): a repeat sent in parallel waits, then
    # finds the first one in force
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"hub review pair {review_id}"))))
    pair = stored.review_pair(conn, review_id)
    if pair is None or not in_scope(viewer, [pair["record_key_l"], pair["record_key_r"]]):
        raise HubError(f"no review pair {review_id}")
    left, right = pair["record_key_l"], pair["record_key_r"]
    hidden = [k for k in (left, right) if not _own(viewer, k)]
    done = {"review_id": review_id, "record_key_l": None if left in hidden else left,
            "record_key_r": None if right in hidden else right, "other_records": len(hidden), "decision": decision}
    same = _in_force_on_pair(conn, decision, left, right) if pair.get("decision") == decision else None
    if same is not None and comment in (None, same["comment"]):
        # the decision in force, sent again (a key pressed twice, a form posted twice): nothing new to record
        return dict(done, decided_at=same["decided_at"], decision_id=same["decision_id"], supersedes=[], repeated=True)
    if decision == "match":
        check_match(conn, left, right, viewer=viewer)
    row = stored.append_decision(conn, decision, [left, right], reviewer=reviewer, comment=comment,
                                 review_id=review_id)
    stored.mark_review(conn, review_id, decision, reviewer=reviewer, comment=comment, decided_at=row["decided_at"])
    return dict(done, decided_at=row["decided_at"], decision_id=row["decision_id"], supersedes=row["replaces"],
                repeated=False)


def would_refuse(conn: sa.Connection, review_id: int, decision: str, *,
                 viewer: DepartmentSharing | None = None) -> DecisionRefused | None:
    """Why ``decision`` on a review pair would be refused now — the check :func:`decide` makes — recording
    nothing; None when it would be accepted. A pair outside the viewer's scope raises :class:`HubError`."""
    pair = stored.review_pair(conn, review_id)
    if pair is None or not in_scope(viewer, [pair["record_key_l"], pair["record_key_r"]]):
        raise HubError(f"no review pair {review_id}")
    if decision != "match":
        return None
    try:
        check_match(conn, pair["record_key_l"], pair["record_key_r"], viewer=viewer)
    except DecisionRefused as exc:
        return exc
    return None


def _lock_master(conn: sa.Connection, master_id: str) -> None:
    """One decision on a master at a time (until the caller's transaction ends): a repeat sent in parallel
    waits, then finds the first one in force."""
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"hub master decision {master_id}"))))


def _same_in_force(conn: sa.Connection, kind: str, record_keys: list[str], other_keys: list[str],
                   comment: str | None) -> dict | None:
    """The decision of this kind on exactly these records in force with this comment (a form sent twice), if any."""
    subject = stored.subject_of(kind, record_keys)
    force = stored.in_force(stored.all_decisions(conn, [*record_keys, *other_keys]))
    return next((d for d in force.active.values() if d["subject"] == subject and d["kind"] == kind
                 and sorted(d["record_keys"]) == sorted(record_keys)
                 and sorted(d["other_keys"] or []) == sorted(other_keys) and d["comment"] == comment), None)


def _in_force_on_pair(conn: sa.Connection, decision: str, left: str, right: str) -> dict | None:
    """The decision ``decision`` on the pair of records in force, if it is."""
    subject = stored.subject_of(decision, [left, right])
    force = stored.in_force(stored.all_decisions(conn, [left, right]))
    return next((d for d in force.active.values() if d["subject"] == subject and d["kind"] == decision), None)


def _features(conn: sa.Connection, keys: set[str], detached: set[str]) -> pd.DataFrame:
    """Matching features of ``keys``: stored ones, built again from std.resident for records never
    matched or whose ID number a steward detached."""
    from mpi.features import INPUT_COLUMNS
    from mpi.matcher import Matcher
    from warehouse import matching_state as ms

    have = ms.read_features(conn, keys)
    again = (keys - set(have["record_key"].astype(str))) | (keys & detached)
    have = have[~have["record_key"].isin(again)]
    if again:
        std = ms.read_std(conn, INPUT_COLUMNS, again)
        if len(std):
            built = Matcher(detached=frozenset(detached)).features(std)
            have = pd.concat([have, built[[c for c in have.columns if c in built.columns]]], ignore_index=True)
    return have.sort_values("record_key").reset_index(drop=True)


def check_match(conn: sa.Connection, key_a: str, key_b: str, *, viewer: DepartmentSharing | None = None) -> None:
    """Refuse (:class:`DecisionRefused`) a "match" of two records whose current masters (all their
    records) hold two different ID numbers valid for their records, a parent and child, or twins —
    or that another decision in force keeps apart. To a ``viewer`` the reason names only its own
    department's records and the API routes it has."""
    from mpi.clustering import _components, violated

    masters = stored.masters_of(conn, [key_a, key_b])
    ma, mb = masters.get(key_a), masters.get(key_b)
    if ma is not None and ma == mb:
        return  # already one master
    side_a = {r["source"] + "/" + r["source_record_id"] for r in stored.master_records(conn, ma)} if ma else set()
    side_b = {r["source"] + "/" + r["source_record_id"] for r in stored.master_records(conn, mb)} if mb else set()
    side_a.add(key_a)
    side_b.add(key_b)
    side_b -= side_a
    force = stored.in_force(stored.all_decisions(conn, side_a | side_b))
    force.add({"decision_id": math.inf, "kind": "match", "subject": stored.subject_of("match", [key_a, key_b]),
               "record_keys": [key_a, key_b], "other_keys": []})
    feats = _features(conn, side_a | side_b, force.detached())
    keys = feats["record_key"].astype(str).to_numpy()
    group = np.where(np.isin(keys, sorted(side_a)), 0, 1)
    partners: dict[str, set] = {}
    for a, b in force.pairs()[1]:
        if ({a, b} <= side_a | side_b) and ((a in side_a) != (b in side_a)):
            partners.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
    comps = _components(feats, group, np.array([0, 1]), keys, partners)
    if 0 not in comps or 1 not in comps:
        return
    why = violated(comps[0], comps[1], partners)
    if why is None:
        return
    holders: list[str] = []
    if why == "different_id":
        a_ids, b_ids = comps[0].ids or comps[0].claimed, comps[1].ids or comps[1].claimed
        holders = sorted(k for k, i in zip(keys, feats["id_valid"].astype(object)) if isinstance(i, str)
                         and (i in a_ids) != (i in b_ids))
    apart = sorted((a, b) for a in partners for b in partners[a] if a < b)
    mine = [k for k in holders if _own(viewer, k)]
    facts = {"records": [k if _own(viewer, k) else None for k in (key_a, key_b)], "masters": [ma, mb],
             "holders": mine, "other_holders": len(holders) - len(mine),
             "years": (max(comps[0].max_dob, comps[1].max_dob) - min(comps[0].min_dob, comps[1].min_dob)) // 365
             if why == "parent_child" else None}
    raise DecisionRefused(_refusal(conn, why, key_a, key_b, ma, mb, comps, holders, apart, viewer), why=why,
                          facts=facts)


def _refusal(conn, why: str, key_a: str, key_b: str, ma: str | None, mb: str | None, comps, holders: list[str],
             apart: list[tuple[str, str]], viewer: DepartmentSharing | None) -> str:
    """The words of a refused match: the hub's staff are told the records and the CLI commands; a steward
    only its own records and the API routes or what to ask of the hub's operator."""
    def name(key: str, master: str | None) -> str:
        return f"{key if _own(viewer, key) else OTHER_RECORD} ({master or 'no master yet'})"

    where = f"{name(key_a, ma)} and {name(key_b, mb)}"
    if why == "different_id":
        mine = [k for k in holders if _own(viewer, k)]
        named = [", ".join(mine[:4]) + (" …" if len(mine) > 4 else "")] if mine else []
        if len(holders) > len(mine):
            named.append(f"{len(holders) - len(mine)} record(s) of other departments")
        held = f" (held by {' and '.join(named)})" if named else ""
        if viewer is None:
            fix = (f"mark it: hub review detach-id {holders[0] if holders else key_b} --reviewer … --reason … (it"
                   " detaches the number, and matching then compares the record on its other fields)")
        elif mine:
            master = stored.masters_of(conn, [mine[0]]).get(mine[0]) or ma or mb
            fix = (f"mark it: POST /v1/masters/{master}/detach-id with {{\"record\": \"{mine[0]}\"}} (it detaches"
                   " the number, and matching then compares the record on its other fields); if it is a record of"
                   " another department, ask the hub's operator to have it checked")
        else:
            fix = "ask the hub's operator to have the other department's record checked"
        return (f"refused: a match of {where} would put two different ID numbers valid for their records{held} in"
                f" one master — two people. If one of these records carries someone else's number, {fix};"
                " otherwise decide not_a_match")
    if why == "parent_child":
        years = (max(comps[0].max_dob, comps[1].max_dob) - min(comps[0].min_dob, comps[1].min_dob)) // 365
        out = ("hub review move-out SOURCE/RECORD --reviewer … --reason …" if viewer is None else
               "POST /v1/masters/{master_id}/move-out with your department's record, or ask the hub's operator"
               " when the wrong record is another department's")
        return (f"refused: a match of {where} would put birth dates {years} years apart in one master — most likely"
                f" a parent and child. Decide not_a_match; if a birth date is wrong, correct it in the source system,"
                f" or take the wrong record out of its master: {out}")
    if why == "twins":
        return (f"refused: a match of {where} would put two records with the same birth date and the same house or"
                " phone but names that differ in writing and in sound in one master — most likely twins or siblings."
                " Decide not_a_match; if a name is wrong, correct it in the source system")
    if viewer is None:
        return (f"refused: a match of {where} goes against a steward decision in force that keeps"
                f" {apart[0][0]} and {apart[0][1]} apart; read it with hub history {ma or mb} and decide that pair"
                " first if it was wrong")
    return (f"refused: a match of {where} goes against a steward decision in force that keeps records of these two"
            f" masters apart; if that decision was wrong, ask the hub's operator to review the decisions on"
            f" {ma or mb}")


def _current_master(conn: sa.Connection, master_id: str) -> tuple[str, list[str]]:
    current, chain = resolve(conn, master_id)
    if chain:
        raise StewardRefused(f"master id {master_id} was retired into {current}: decide on {current}", code="retired",
                             master_id=master_id, current=current)
    keys = [r["source"] + "/" + r["source_record_id"] for r in stored.master_records(conn, current)]
    return current, keys


def split(conn: sa.Connection, master_id: str, records: list[str], *, reviewer: str, reason: str,
          viewer: DepartmentSharing | None = None) -> dict:
    """The ``records`` of ``master_id`` become a master apart from the rest: cannot-links between the two
    parts (and must-links among ``records``) in every later run. The rest keeps the master id. A
    ``viewer`` names only records of its own sources (anything else: :class:`OutOfScope`)."""
    reviewer, reason = _who(reviewer, reason, reason_needed=True, viewer=viewer)
    _lock_master(conn, resolve(conn, master_id)[0])
    current, keys = _current_master(conn, master_id)
    taken = sorted({r.strip() for r in records if r.strip()})
    if not taken:
        raise StewardRefused("name the records to split off: " + (
            "--records SOURCE/RECORD[,SOURCE/RECORD…]" if viewer is None else "records, as source/record id"),
            code="no_records", master_id=current)
    strangers = [k for k in taken if k not in keys or not _own(viewer, k)]
    if strangers and viewer is not None:
        raise OutOfScope(f"no record {strangers[0]!r}")
    if strangers:
        raise HubError(f"{', '.join(strangers)} {'is' if len(strangers) == 1 else 'are'} not a record of {current};"
                       f" its records are listed by hub history {current}")
    rest = sorted(set(keys) - set(taken))
    if not rest:
        raise StewardRefused(f"these are all the records of {current}: name the records to take out, not all of them",
                             code="all_records", master_id=current)
    kind = "move_out" if len(taken) == 1 else "split"
    same = _same_in_force(conn, kind, taken, rest, reason)
    if same is not None:  # the same split sent again: nothing new to record
        return _decided(conn, dict(same, replaces=[]), viewer, repeated=True)
    row = stored.append_decision(conn, kind, taken, other_keys=rest, master_id=current, reviewer=reviewer,
                                 comment=reason)
    return _decided(conn, row, viewer)


def _of_master(conn: sa.Connection, record_key: str, master_id: str | None,
               viewer: DepartmentSharing | None) -> str | None:
    """The current master of ``record_key``; for a ``viewer``, only a record of its own sources under
    (the id in force of) ``master_id`` — anything else is :class:`OutOfScope`, like a record that does
    not exist."""
    master = stored.masters_of(conn, [record_key]).get(record_key)
    if master_id is not None and (master is None or master != resolve(conn, master_id)[0]):
        if viewer is not None:
            raise OutOfScope(f"no record {record_key!r}")
        raise HubError(f"{record_key} is not a record of {master_id}")
    if not _own(viewer, record_key):
        raise OutOfScope(f"no record {record_key!r}")
    return master


def move_out(conn: sa.Connection, record_key: str, *, reviewer: str, reason: str, master_id: str | None = None,
             viewer: DepartmentSharing | None = None) -> dict:
    """One record out of its master, on its own (a master of its own in every later run). With
    ``master_id``, only a record of that master; a ``viewer`` moves out only records of its own sources."""
    reviewer, reason = _who(reviewer, reason, reason_needed=True, viewer=viewer)
    master = _of_master(conn, record_key, master_id, viewer)
    if master is None:
        raise HubError(f"no record {record_key} in the index: give SOURCE/RECORD as hub history lists it")
    _lock_master(conn, master)
    current, keys = _current_master(conn, master)
    rest = sorted(set(keys) - {record_key})
    if not rest:
        raise StewardRefused(f"{record_key} is already alone under {current}: there is nothing to move it out of",
                             code="alone", master_id=current, record=record_key)
    same = _same_in_force(conn, "move_out", [record_key], rest, reason)
    if same is not None:  # the same move-out sent again: nothing new to record
        return _decided(conn, dict(same, replaces=[]), viewer, repeated=True)
    row = stored.append_decision(conn, "move_out", [record_key], other_keys=rest, master_id=current,
                                 reviewer=reviewer, comment=reason)
    return _decided(conn, row, viewer)


def detach_id(conn: sa.Connection, record_key: str, *, reviewer: str, reason: str, master_id: str | None = None,
              viewer: DepartmentSharing | None = None) -> dict:
    """This record's ID number belongs to someone else: matching treats it as contradicted by its
    record (neither anchoring nor compared) and matches the record on its other fields. With
    ``master_id``, only a record of that master; a ``viewer`` detaches only records of its own sources."""
    from schemas.id_number import USABLE

    reviewer, reason = _who(reviewer, reason, reason_needed=True, viewer=viewer)
    _of_master(conn, record_key, master_id, viewer)
    source, _, record_id = record_key.partition("/")
    record = stored.standardized_record(conn, source, record_id)
    if record is None:
        if viewer is not None:
            raise OutOfScope(f"no record {record_key!r}")
        raise HubError(f"no standardized record {record_key}: give SOURCE/RECORD as hub history lists it")
    if not record["id_number"] or record["id_number_status"] not in USABLE:
        raise HubError(f"{record_key} carries no valid ID number (status {record['id_number_status']}):"
                       " there is none to detach")
    _lock_master(conn, record["master_id"] or record_key)
    same = _same_in_force(conn, "detach_id", [record_key], [], reason)
    if same is not None:  # sent again: nothing new to record
        return _decided(conn, dict(same, replaces=[]), viewer, repeated=True)
    row = stored.append_decision(conn, "detach_id", [record_key], master_id=record["master_id"], reviewer=reviewer,
                                 comment=reason)
    return _decided(conn, row, viewer)


def _decided(conn: sa.Connection, row: dict, viewer: DepartmentSharing | None = None, *, repeated: bool = False) -> dict:
    out = {"decision_id": row["decision_id"], "kind": row["kind"], "record_keys": row["record_keys"],
           "other_keys": row["other_keys"], "master_id": row["master_id"], "reviewer": row["reviewer"],
           "comment": row["comment"], "decided_at": row["decided_at"], "supersedes": row["replaces"],
           "repeated": repeated}
    if viewer is None:
        return out
    out = decisions_for(conn, viewer, [dict(out, subject=None)])[0]
    out.pop("subject")
    return out


def master_in_scope(conn: sa.Connection, master_id: str, viewer: DepartmentSharing | None) -> str:
    """The id in force of ``master_id`` when a steward of ``viewer``'s department may see and decide on it
    (it holds a record of the department's sources); raises :class:`HubError` (no such master) otherwise."""
    current, _ = resolve(conn, master_id)
    keys = [r["source"] + "/" + r["source_record_id"] for r in stored.master_records(conn, current)]
    if not in_scope(viewer, keys):
        raise HubError(f"no master id {master_id!r}")
    return current


def master_decisions(conn: sa.Connection, master_id: str, *, viewer: DepartmentSharing | None = None) -> dict:
    """Every decision touching a master id (its records, or made on it or on an id retired into it),
    oldest first, superseded ones with ``superseded_by``; with a ``viewer``, only for a master it may
    see (:func:`master_in_scope`), and only the decisions naming its records (:func:`decisions_for`)."""
    current, chain = resolve(conn, master_id)
    keys = [r["source"] + "/" + r["source_record_id"] for r in stored.master_records(conn, current)]
    if not in_scope(viewer, keys):
        raise HubError(f"no master id {master_id!r}")
    return {"asked": master_id, "master_id": current,
            "decisions": decisions_for(conn, viewer, stored.decisions_touching(conn, keys, [current, *chain]))}


def records_of_master(conn: sa.Connection, master_id: str, *, viewer: DepartmentSharing | None = None,
                      full: Collection[str] = ()) -> dict:
    """The records a master id holds now, as a viewer may read them: its own department's records with the
    fields it may see (masked, but ``full`` as in :func:`show_review`) and their match rule; the others only
    counted in ``other_records``."""
    mine, others = [], 0
    for r in stored.master_records(conn, master_id):
        key = f"{r['source']}/{r['source_record_id']}"
        if not _own(viewer, key):
            others += 1
            continue
        mine.append(dict(_record(conn, key, viewer, full), match_rule=r["match_rule"], linked_at=r["updated_at"]))
    return {"master_id": master_id, "records": mine, "other_records": others}


def resolve(conn: sa.Connection, master_id: str) -> tuple[str, list[str]]:
    """Follow redirects from ``master_id``: (the id in force, the chain of retired ids)."""
    chain, current = [], master_id
    for _ in range(100):
        row = stored.master_redirect(conn, current)
        if row is None:
            raise HubError(f"no master id {current!r}")
        if row.status == "active" or row.retired_into is None:
            return current, chain
        chain.append(current)
        current = row.retired_into
    raise HubError(f"master id {master_id!r} redirects in a loop")


def history(conn: sa.Connection, master_id: str) -> dict:
    """The timeline of a master id: status, redirect, records, events with causes, review decisions."""
    current, chain = resolve(conn, master_id)
    master = stored.master_row(conn, current)
    records = stored.master_records(conn, current)
    events = stored.master_events(conn, [current, *chain])
    keys = [f"{r['source']}/{r['source_record_id']}" for r in records]
    reviews = stored.reviews_touching(conn, keys)
    anchor = master["anchor"] or ""
    master = dict(master, anchor=("id:" + mask_id_number(anchor[3:])) if anchor.startswith("id:") else anchor)
    return {"asked": master_id, "master_id": current, "redirected_from": chain, "master": master,
            "records": records, "events": events, "reviews": reviews,
            "decisions": stored.decisions_touching(conn, keys, [current, *chain])}
