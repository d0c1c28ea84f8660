"""Which masters differ between two releases, and how: added, removed, merged (the retired id and its
survivor), split (a master some of whose records went to new masters), deceased (status became
``deceased``) and changed (which published fields).

A master is listed when its published row (``publish.master_person``) differs between the two
releases: it is in one and not the other, or a published field changed. ``merged`` and ``removed``
are the masters of the first release missing from the second; a merged one has a survivor (its
retirement's redirect, ``mpi.master.retired_into``, followed to a master of the second release), a
removed one has none (its records were all deleted at the sources). ``split`` names masters in both
releases whose records in the first went to masters new in the second (``publish.enrolment``); the new
masters are also ``added``. ``deceased`` masters are also ``changed``.

The comparison is one set-based query over two row projections (:func:`row_changes_sql`); the change
feed (:mod:`warehouse.changes`) runs it over each department's projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from warehouse.releases import ENROLMENT_COLUMNS, PUBLISHED_COLUMNS, release_row


def row_changes_sql(old: str, new: str) -> str:
    """``master_id, old, new, fields`` for every master whose row differs between the two projections
    (SQL selecting ``master_id`` and more; ``release_no`` is ignored): ``old``/``new`` are the rows as
    JSON (NULL when absent), ``fields`` the names of the columns whose value changed (NULL unless in both)."""
    return (
        f"WITH o AS (SELECT x.master_id, to_jsonb(x) - 'release_no' AS r FROM ({old}) x),"
        f" n AS (SELECT x.master_id, to_jsonb(x) - 'release_no' AS r FROM ({new}) x)"
        " SELECT coalesce(n.master_id, o.master_id) AS master_id, o.r AS old, n.r AS new,"
        "  CASE WHEN o.r IS NOT NULL AND n.r IS NOT NULL THEN ARRAY(SELECT k.key FROM jsonb_each(n.r) k"
        "   WHERE k.value IS DISTINCT FROM o.r -> k.key ORDER BY k.key) END AS fields"
        " FROM o FULL JOIN n ON n.master_id = o.master_id WHERE o.r IS DISTINCT FROM n.r")


def published_rows_sql(release_no: int) -> str:
    return f"SELECT * FROM publish.master_person WHERE release_no = {int(release_no)}"


def survivors(conn: sa.Connection, gone: Sequence[str], release_no: int) -> dict[str, str]:
    """Retired master id → the master of release ``release_no`` it was merged into (its redirects followed
    until one that release holds); ids with no such survivor are left out."""
    if not gone:
        return {}
    rows = conn.execute(sa.text(
        "WITH RECURSIVE chain (start, id, depth) AS ("
        "  SELECT g.id, g.id, 0 FROM unnest(CAST(:gone AS text[])) g (id)"
        "  UNION ALL SELECT c.start, m.retired_into, c.depth + 1 FROM chain c JOIN mpi.master m ON m.master_id = c.id"
        "  WHERE m.retired_into IS NOT NULL AND c.depth < 100 AND NOT EXISTS (SELECT FROM publish.master_person p"
        "    WHERE p.release_no = :n AND p.master_id = c.id))"
        " SELECT DISTINCT ON (c.start) c.start, c.id FROM chain c"
        " WHERE c.depth > 0 AND EXISTS (SELECT FROM publish.master_person p WHERE p.release_no = :n"
        "   AND p.master_id = c.id) ORDER BY c.start, c.depth"), {"gone": list(gone), "n": release_no}).all()
    return {r.start: r.id for r in rows}


def splits(conn: sa.Connection, old: int, new: int) -> dict[str, list[str]]:
    """Master id (in both releases) → the masters new in release ``new`` that took some of its records."""
    rows = conn.execute(sa.text(
        "SELECT o.master_id, array_agg(DISTINCT n.master_id ORDER BY n.master_id) AS into"
        " FROM publish.enrolment o JOIN publish.enrolment n"
        "   ON n.source = o.source AND n.source_record_id = o.source_record_id AND n.release_no = :new"
        " WHERE o.release_no = :old AND n.master_id <> o.master_id"
        "   AND NOT EXISTS (SELECT FROM publish.master_person p WHERE p.release_no = :old AND p.master_id = n.master_id)"
        "   AND EXISTS (SELECT FROM publish.master_person p WHERE p.release_no = :new AND p.master_id = o.master_id)"
        " GROUP BY o.master_id ORDER BY o.master_id"), {"old": old, "new": new}).all()
    return {r.master_id: list(r.into) for r in rows}


def release_diff(conn: sa.Connection, old: int, new: int) -> dict:
    """The masters that differ between releases ``old`` and ``new``: ``added``, ``removed``, ``merged``
    (``{master_id, survivor}``), ``split`` (``{master_id, into}``), ``deceased`` and ``changed``
    (``{master_id, fields}``), each sorted by master id, with their ``counts``.

    Raises ``LookupError`` for an unknown release number."""
    for n in (old, new):
        release_row(conn, n)
    rows = conn.execute(sa.text(row_changes_sql(published_rows_sql(old), published_rows_sql(new)))).mappings().all()
    order = {c: i for i, c in enumerate(PUBLISHED_COLUMNS)}
    added, gone, changed, deceased = [], [], [], []
    for r in rows:
        if r["old"] is None:
            added.append(r["master_id"])
        elif r["new"] is None:
            gone.append(r["master_id"])
        else:
            changed.append({"master_id": r["master_id"], "fields": sorted(r["fields"], key=lambda f: order.get(f, 99))})
            if r["new"].get("status") == "deceased" and r["old"].get("status") != "deceased":
                deceased.append(r["master_id"])
    redirect = survivors(conn, gone, new)
    out = {
        "from_release": old, "to_release": new,
        "added": sorted(added),
        "removed": sorted(m for m in gone if m not in redirect),
        "merged": [{"master_id": m, "survivor": redirect[m]} for m in sorted(redirect)],
        "split": [{"master_id": m, "into": into} for m, into in splits(conn, old, new).items()],
        "deceased": sorted(deceased),
        "changed": sorted(changed, key=lambda c: c["master_id"]),
    }
    out["counts"] = {k: len(out[k]) for k in ("added", "removed", "merged", "split", "deceased", "changed")}
    out["counts"]["differing"] = len(rows)
    return out


def differing_master_ids(diff: dict) -> list[str]:
    """Every master id whose published row differs in ``diff`` (added, removed, merged away or changed)."""
    ids = {*diff["added"], *diff["removed"], *(m["master_id"] for m in diff["merged"]),
           *(c["master_id"] for c in diff["changed"])}
    return sorted(ids)


def differing(conn: sa.Connection, old: int, new: int) -> tuple[list[str], list[tuple[str, str]]]:
    """What differs between releases ``old`` and ``new``, compared column for column in one pass each: the masters
    whose published row differs or any of whose enrolments (in either release) differs, and the enrolments
    (source, source record id) that differ. Whatever any projection of a release shows of a master or an
    enrolment outside these is the same in both releases, so a comparison of projections may keep to them."""
    person = ", ".join(PUBLISHED_COLUMNS[1:])
    values = [c for c in ENROLMENT_COLUMNS if c not in ("source", "source_record_id")]
    records = conn.execute(sa.text(
        "SELECT source, source_record_id, o.master_id AS old_master, n.master_id AS new_master"
        " FROM (SELECT * FROM publish.enrolment WHERE release_no = :old) o"
        " FULL JOIN (SELECT * FROM publish.enrolment WHERE release_no = :new) n USING (source, source_record_id)"
        " WHERE o.release_no IS NULL OR n.release_no IS NULL"
        f"  OR ROW({', '.join('o.' + c for c in values)}) IS DISTINCT FROM ROW({', '.join('n.' + c for c in values)})"),
        {"old": old, "new": new}).all()
    masters = set(conn.execute(sa.text(
        "SELECT master_id FROM (SELECT * FROM publish.master_person WHERE release_no = :old) o"
        " FULL JOIN (SELECT * FROM publish.master_person WHERE release_no = :new) n USING (master_id)"
        " WHERE o.release_no IS NULL OR n.release_no IS NULL"
        f"  OR ROW({', '.join('o.' + c for c in person.split(', '))})"
        f"   IS DISTINCT FROM ROW({', '.join('n.' + c for c in person.split(', '))})"),
        {"old": old, "new": new}).scalars())
    masters |= {m for r in records for m in (r.old_master, r.new_master) if m is not None}
    return sorted(masters), sorted((r.source, r.source_record_id) for r in records)
