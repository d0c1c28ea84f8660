"""What stewards read and decide: the review queue (``mpi.review_pair``), the records of a pair, the
history of a master id (``mpi.master``, its crosswalk, events and reviews) and the decisions
(``mpi.decision``, append-only).

Rows come back as stored, names and ID numbers included: the caller masks them before they leave.

Decisions and what runs honour (:func:`in_force`): a decision supersedes the earlier one on the same
subject (a pair of records, the records a split or move-out takes out, a record's ID number); a
``match`` also supersedes a split or move-out that kept its two records apart, and a split or move-out
supersedes the ``match`` decisions across the line it draws. What is left in force becomes must-link
and cannot-link pairs (a split: cannot-links between the records taken out and the rest of the master,
must-links among the records taken out) and detached ID numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from warehouse.tables import mpi_crosswalk, mpi_master, mpi_master_event, mpi_review_pair, std_resident
from warehouse.tables.mpi import mpi_decision

DECISION_KINDS = ("match", "not_a_match", "split", "move_out", "detach_id")
PAIR_KINDS = ("match", "not_a_match")
OUT_KINDS = ("split", "move_out")
DECISION_FIELDS = ("decision_id", "kind", "subject", "record_keys", "other_keys", "master_id", "review_id",
                   "reviewer", "comment", "decided_at", "supersedes")

REVIEW_STATUSES = ("open", "decided", "all")
RECORD_FIELDS = ("name", "id_number", "id_number_status", "sex", "birth_date", "phone", "address_village",
                 "address_house_no", "status_raw", "standardized_at")


def _is_record(crosswalk: sa.FromClause, record_key: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """The crosswalk row (on its primary key) of a ``source/record`` key column."""
    source = sa.func.split_part(record_key, "/", 1)
    return sa.and_(crosswalk.c.source == source,
                   crosswalk.c.source_record_id == sa.func.substr(record_key, sa.func.length(source) + 2))


def review_pairs(conn: sa.Connection, *, status: str, limit: int, reason: str | None = None,
                 sources: Sequence[str] | None = None) -> list[dict]:
    """Review pairs with the master ids of both records, strongest first; ``status`` is one of
    :data:`REVIEW_STATUSES`, ``reason`` a prefix of the review reason; with ``sources``, only pairs
    with at least one record of one of them."""
    p = mpi_review_pair
    cl, cr = mpi_crosswalk.alias("cl"), mpi_crosswalk.alias("cr")
    query = (sa.select(p.c.review_id, p.c.record_key_l, p.c.record_key_r, p.c.match_probability, p.c.match_weight,
                       p.c.review_reason, p.c.created_at, p.c.decided_at, p.c.decision, p.c.reviewer, p.c.comment,
                       cl.c.master_id.label("master_l"), cr.c.master_id.label("master_r"))
             .select_from(p.outerjoin(cl, _is_record(cl, p.c.record_key_l))
                          .outerjoin(cr, _is_record(cr, p.c.record_key_r)))
             .order_by(p.c.match_probability.desc().nulls_last(), p.c.review_id).limit(limit))
    if status == "open":
        query = query.where(p.c.decided_at.is_(None))
    elif status == "decided":
        query = query.where(p.c.decided_at.is_not(None))
    if reason:
        query = query.where(p.c.review_reason.like(f"{reason}%"))
    if sources is not None:
        mine = sorted(set(sources))
        query = query.where(sa.or_(sa.func.split_part(p.c.record_key_l, "/", 1).in_(mine),
                                   sa.func.split_part(p.c.record_key_r, "/", 1).in_(mine)))
    return [dict(r) for r in conn.execute(query).mappings()]


def review_pair(conn: sa.Connection, review_id: int) -> dict | None:
    """Every column of one review pair, or None."""
    row = conn.execute(sa.select(mpi_review_pair).where(mpi_review_pair.c.review_id == review_id)).mappings().first()
    return dict(row) if row is not None else None


def standardized_record(conn: sa.Connection, source: str, record_id: str) -> dict | None:
    """A standardized record's :data:`RECORD_FIELDS` and its master id (unmasked), or None."""
    r, c = std_resident, mpi_crosswalk
    row = conn.execute(
        sa.select(*(r.c[f] for f in RECORD_FIELDS), c.c.master_id)
        .select_from(r.outerjoin(c, sa.and_(c.c.source == r.c.source, c.c.source_record_id == r.c.source_record_id)))
        .where(r.c.source == source, r.c.source_record_id == record_id)).mappings().first()
    return dict(row) if row is not None else None


def resident_record(conn: sa.Connection, source: str, record_id: str) -> dict | None:
    """Every column of one standardized record (what the matcher compares), or None."""
    r = std_resident
    row = conn.execute(sa.select(r).where(r.c.source == source, r.c.source_record_id == record_id)).mappings().first()
    return dict(row) if row is not None else None


def mark_review(conn: sa.Connection, review_id: int, decision: str, *, reviewer: str, comment: str | None,
                decided_at) -> None:
    """Show the latest decision on a review pair in the queue (the history is ``mpi.decision``)."""
    p = mpi_review_pair
    conn.execute(sa.update(p).where(p.c.review_id == review_id)
                 .values(decision=decision, decided_at=decided_at, reviewer=reviewer, comment=comment))


def subject_of(kind: str, record_keys: Sequence[str]) -> str:
    """What a decision is about: a later decision on the same subject supersedes it."""
    if kind in PAIR_KINDS:
        a, b = sorted(record_keys)
        return f"pair:{a} {b}"
    if kind in OUT_KINDS:
        return "out:" + " ".join(sorted(record_keys))
    return f"id:{record_keys[0]}"


def append_decision(conn: sa.Connection, kind: str, record_keys: Sequence[str], *, reviewer: str,
                    comment: str | None, other_keys: Sequence[str] = (), master_id: str | None = None,
                    review_id: int | None = None) -> dict:
    """Add a decision to the history (caller's transaction), superseding the ones it replaces
    (:func:`in_force`); returns the stored row."""
    if kind not in DECISION_KINDS:
        raise ValueError(f"unknown decision kind {kind!r}")
    record_keys, other_keys = list(record_keys), sorted(set(other_keys))
    now = in_force(all_decisions(conn, [*record_keys, *other_keys]))
    candidate = {"decision_id": None, "kind": kind, "subject": subject_of(kind, record_keys),
                 "record_keys": record_keys, "other_keys": other_keys}
    replaced = sorted(now.replaced_by(candidate))
    d = mpi_decision
    row = conn.execute(sa.insert(d).values(
        kind=kind, subject=candidate["subject"], record_keys=record_keys, other_keys=other_keys, master_id=master_id,
        review_id=review_id, reviewer=reviewer, comment=comment, supersedes=replaced[-1] if replaced else None)
        .returning(*(d.c[f] for f in DECISION_FIELDS))).mappings().one()
    return dict(row, replaces=replaced)


def all_decisions(conn: sa.Connection, record_keys: Iterable[str] | None = None) -> list[dict]:
    """Every decision (or those naming one of ``record_keys``), oldest first."""
    d = mpi_decision
    query = sa.select(*(d.c[f] for f in DECISION_FIELDS)).order_by(d.c.decision_id)
    if record_keys is not None:
        keys = sorted(set(record_keys))
        query = query.where(sa.or_(d.c.record_keys.overlap(keys), d.c.other_keys.overlap(keys)))
    return [dict(r) for r in conn.execute(query).mappings()]


def decisions_touching(conn: sa.Connection, record_keys: Sequence[str], master_ids: Sequence[str]) -> list[dict]:
    """Decisions naming one of ``record_keys`` or made on one of ``master_ids``, oldest first, each with
    ``superseded_by`` (None while in force)."""
    d = mpi_decision
    keys = sorted(set(record_keys))
    named = sa.select(d.c.decision_id).where(sa.or_(d.c.record_keys.overlap(keys), d.c.other_keys.overlap(keys),
                                                    d.c.master_id.in_(list(master_ids))))
    ids = set(conn.execute(named).scalars())
    if not ids:
        return []
    # whether a decision is still in force depends on every later decision on its records
    rows = all_decisions(conn, {k for r in conn.execute(sa.select(d.c.record_keys, d.c.other_keys)
                                                         .where(d.c.decision_id.in_(ids))) for k in (*r[0], *r[1])})
    force = in_force(rows)
    return [dict(r, superseded_by=force.superseded_by.get(r["decision_id"])) for r in rows if r["decision_id"] in ids]


@dataclass
class InForce:
    """The decisions in force, and what they ask of every matching run."""

    active: dict[int, dict] = field(default_factory=dict)
    superseded_by: dict[int, int] = field(default_factory=dict)
    # indexes of the active decisions: by subject, and by record key (every key a decision names)
    _by_subject: dict[str, int] = field(default_factory=dict, repr=False)
    _by_key: dict[str, set] = field(default_factory=dict, repr=False)

    def replaced_by(self, decision: dict) -> set[int]:
        """The decisions in force that ``decision`` supersedes."""
        out = set()
        same = self._by_subject.get(decision["subject"])
        if same is not None:
            out.add(same)
        keys, others = set(decision["record_keys"]), set(decision["other_keys"])
        near = set().union(*(self._by_key.get(k, set()) for k in keys | others))
        for i in near - out:
            d = self.active[i]
            if decision["kind"] == "match" and d["kind"] in OUT_KINDS:
                a, b = decision["record_keys"]
                taken, rest = set(d["record_keys"]), set(d["other_keys"])
                if (a in taken and b in rest) or (b in taken and a in rest):
                    out.add(i)
            elif decision["kind"] in OUT_KINDS and d["kind"] == "match":
                a, b = d["record_keys"]
                if (a in keys and b in others) or (b in keys and a in others):
                    out.add(i)
        return out

    def add(self, decision: dict) -> None:
        for i in self.replaced_by(decision):
            self.superseded_by[i] = decision["decision_id"]
            old = self.active.pop(i)
            self._by_subject.pop(old["subject"], None)
            for k in (*old["record_keys"], *old["other_keys"]):
                self._by_key[k].discard(i)
        i = decision["decision_id"]
        self.active[i] = decision
        self._by_subject[decision["subject"]] = i
        for k in (*decision["record_keys"], *decision["other_keys"]):
            self._by_key.setdefault(k, set()).add(i)

    def pairs(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(must-link pairs, cannot-link pairs): the latest decision per pair of records wins. A
        cannot-link from a split or move-out is (record kept, record taken out); from a "not a match",
        (smaller key, larger key)."""
        pair: dict[tuple[str, str], tuple[str, tuple[str, str]]] = {}
        for _, d in sorted(self.active.items()):
            if d["kind"] in PAIR_KINDS:
                a, b = sorted(d["record_keys"])
                pair[(a, b)] = (d["kind"], (a, b))
            elif d["kind"] in OUT_KINDS:
                taken = sorted(d["record_keys"])
                for a, b in zip(taken, taken[1:]):
                    pair[(a, b)] = ("match", (a, b))
                for kept in d["other_keys"]:
                    for out in taken:
                        pair[tuple(sorted((kept, out)))] = ("not_a_match", (kept, out))
        must = [p for kind, p in pair.values() if kind == "match"]
        cannot = [p for kind, p in pair.values() if kind == "not_a_match"]
        return sorted(must), sorted(cannot)

    def detached(self) -> set[str]:
        """Records whose ID number a steward said belongs to someone else."""
        return {d["record_keys"][0] for d in self.active.values() if d["kind"] == "detach_id"}

    def leaving(self) -> dict[str, str]:
        """Records a split or move-out takes out, with the master id they were taken out of."""
        return {k: d["master_id"] for d in self.active.values() if d["kind"] in OUT_KINDS and d["master_id"]
                for k in d["record_keys"]}


def in_force(decisions: Iterable[dict]) -> InForce:
    """Replay ``decisions`` (every decision on the records concerned), oldest first."""
    out = InForce()
    for d in sorted(decisions, key=lambda d: d["decision_id"]):
        out.add(d)
    return out


def masters_of(conn: sa.Connection, record_keys: Iterable[str]) -> dict[str, str]:
    """The current master id of each of ``record_keys`` the crosswalk holds."""
    c = mpi_crosswalk
    wanted = [tuple(k.split("/", 1)) for k in sorted(set(record_keys)) if "/" in k]
    if not wanted:
        return {}
    rows = conn.execute(sa.select(c.c.source, c.c.source_record_id, c.c.master_id)
                        .where(sa.tuple_(c.c.source, c.c.source_record_id).in_(wanted))).all()
    return {f"{r.source}/{r.source_record_id}": r.master_id for r in rows}


def master_redirect(conn: sa.Connection, master_id: str) -> sa.Row | None:
    """A master id's ``status`` and ``retired_into`` (in a row), or None when it was never minted."""
    m = mpi_master
    return conn.execute(sa.select(m.c.status, m.c.retired_into).where(m.c.master_id == master_id)).first()


def master_row(conn: sa.Connection, master_id: str) -> dict:
    """A master id's status, redirect, dates and anchor (unmasked); raises when there is none."""
    m = mpi_master
    return dict(conn.execute(
        sa.select(m.c.master_id, m.c.status, m.c.retired_into, m.c.created_at, m.c.retired_at, m.c.anchor)
        .where(m.c.master_id == master_id)).mappings().one())


def master_records(conn: sa.Connection, master_id: str) -> list[dict]:
    """The source records the crosswalk links to a master id, with their match rule."""
    c = mpi_crosswalk
    return [dict(r) for r in conn.execute(
        sa.select(c.c.source, c.c.source_record_id, c.c.match_rule, c.c.updated_at)
        .where(c.c.master_id == master_id).order_by(c.c.source, c.c.source_record_id)).mappings()]


def master_events(conn: sa.Connection, master_ids: Sequence[str]) -> list[dict]:
    """Events of these master ids (as subject or as the other id), oldest first."""
    e, ids = mpi_master_event, list(master_ids)
    return [dict(r) for r in conn.execute(
        sa.select(e.c.event_id, e.c.run_id, e.c.created_at, e.c.master_id, e.c.event, e.c.cause, e.c.other_master_id,
                  e.c.source, e.c.source_record_id, e.c.detail)
        .where(sa.or_(e.c.master_id.in_(ids), e.c.other_master_id.in_(ids))).order_by(e.c.event_id)).mappings()]


def reviews_touching(conn: sa.Connection, record_keys: Sequence[str]) -> list[dict]:
    """Review pairs involving any of these ``source/record`` keys, undecided ones last."""
    p, keys = mpi_review_pair, list(record_keys)
    return [dict(r) for r in conn.execute(
        sa.select(p.c.review_id, p.c.record_key_l, p.c.record_key_r, p.c.review_reason, p.c.match_probability,
                  p.c.decision, p.c.decided_at, p.c.reviewer, p.c.comment)
        .where(sa.or_(p.c.record_key_l.in_(keys), p.c.record_key_r.in_(keys)))
        .order_by(p.c.decided_at.nulls_last(), p.c.review_id)).mappings()]


def key_departments(conn: sa.Connection, key_ids: Iterable[str]) -> dict[str, str]:
    """The department of each of these read-API key ids that exists."""
    from warehouse.tables.audit import audit_api_key as k

    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    return dict(conn.execute(sa.select(k.c.key_id, k.c.department).where(k.c.key_id.in_(wanted))).all())
