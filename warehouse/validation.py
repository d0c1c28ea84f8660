"""What the publish gate validates: one source's standardized records as a batch, the cross-table checks of
the master index, which sources have standardized records and how many, and what each source deleted.

The gate (``expectations.gate``) runs Great Expectations on these: a table asset per source on its view in
schema ``gate`` while it runs (:func:`replace_source_views`, over :func:`source_batch_query`), table assets on
:data:`CROSSWALK` and :data:`GOLDEN`, and four ``UnexpectedRowsExpectation`` queries run on the crosswalk
batch. Those queries contain the placeholder ``{batch}``, which GX replaces with the batch (the bare table name
of the crosswalk, as the gate's datasource searches schema ``mpi``). They select key columns only (source,
source_record_id, master_id), so that what GX fetches names no person, and no braces other than ``{batch}`` may
appear in them: GX formats them with ``str.format``.

Every query has the JOIN form, deliberately: GX substitutes ``{batch}`` with the bare table or, for a batch it
hands over as a SELECT, with ``(subquery) AS subselect`` -- unless the query contains a JOIN, when it is an
un-aliased ``(subquery)``. So ``{batch} AS c`` is valid SQL only in a query with a JOIN (``NOT EXISTS (...
{batch} AS c ...)`` fails on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from warehouse.tables import (
    mpi_crosswalk,
    mpi_golden,
    mpi_match_feature,
    raw_load_batch,
    raw_record,
    raw_tombstone,
    std_resident,
)

#: The master-index tables the gate validates as table assets (both in one schema: the datasource's search path).
CROSSWALK = mpi_crosswalk
GOLDEN = mpi_golden
#: The table of standardized records the source suites read.
STANDARDIZED = std_resident
#: Deletions at the source, which the gate holds when there are too many.
TOMBSTONES = raw_tombstone


def source_batch_query(source: str, columns: Sequence[str]) -> str:
    """The SQL of one source's batch: ``columns`` of its std.resident rows.

    ``columns`` must be columns of std.resident (KeyError otherwise); ``source`` is written as a quoted literal.
    """
    selected = ", ".join(std_resident.c[name].name for name in columns)
    literal = sa.literal(source, sa.Text).compile(dialect=postgresql.dialect(),
                                                  compile_kwargs={"literal_binds": True})
    return f"SELECT {selected} FROM {std_resident.fullname} WHERE {std_resident.c.source.name} = {literal}"


#: The schema of the gate's views, one per source (:func:`replace_source_views`); the gate's datasource searches it.
SOURCE_VIEW_SCHEMA = "gate"


def source_view_name(source: str) -> str:
    """The name of ``source``'s view in :data:`SOURCE_VIEW_SCHEMA`."""
    return f"source_{source}"


def replace_source_views(conn: sa.Connection, queries: dict[str, str]) -> None:
    """Per source, its view in :data:`SOURCE_VIEW_SCHEMA` as ``queries[source]`` (caller's transaction); views of
    other sources there are dropped.

    The gate validates each source as a table: GX reads a table's (or view's) columns from the catalogue, but runs
    a query asset's query and fetches every row to learn its columns (every standardized record, each gate run)."""
    quote = postgresql.dialect().identifier_preparer.quote
    schema = quote(SOURCE_VIEW_SCHEMA)
    wanted = {source_view_name(source): query for source, query in queries.items()}
    present = conn.execute(sa.text("SELECT viewname FROM pg_views WHERE schemaname = :s"),
                           {"s": SOURCE_VIEW_SCHEMA}).scalars().all()
    for view in sorted(set(present) | set(wanted)):
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {schema}.{quote(view)}"))
        if view in wanted:
            conn.execute(sa.text(f"CREATE VIEW {schema}.{quote(view)} AS {wanted[view]}"))


def std_records_without_crosswalk_query() -> str:
    """std.resident records that have no crosswalk row (no master id); run on the crosswalk batch."""
    return (
        f"SELECT r.source, r.source_record_id FROM {std_resident.fullname} AS r "
        "LEFT JOIN {batch} AS c ON c.source = r.source AND c.source_record_id = r.source_record_id "
        "WHERE c.source IS NULL"
    )


def crosswalk_records_not_in_std_query() -> str:
    """Crosswalk rows whose record is no longer in std.resident; run on the crosswalk batch."""
    return (
        "SELECT c.source, c.source_record_id FROM {batch} AS c "
        f"LEFT JOIN {std_resident.fullname} AS r "
        "ON r.source = c.source AND r.source_record_id = c.source_record_id "
        "WHERE r.source IS NULL"
    )


def crosswalk_masters_without_golden_query() -> str:
    """Crosswalk rows whose master id has no golden record; run on the crosswalk batch."""
    return (
        "SELECT c.source, c.source_record_id FROM {batch} AS c "
        f"LEFT JOIN {mpi_golden.fullname} AS g ON g.master_id = c.master_id "
        "WHERE c.master_id IS NOT NULL AND g.master_id IS NULL"
    )


def masters_with_two_valid_ids_query() -> str:
    """Master ids whose records carry two or more different valid ID numbers (``match_feature.id_valid``);
    run on the crosswalk batch."""
    return (
        "SELECT c.master_id FROM {batch} AS c "
        f"JOIN {mpi_match_feature.fullname} AS f "
        "ON f.source = c.source AND f.source_record_id = c.source_record_id "
        "WHERE f.id_valid IS NOT NULL "
        "GROUP BY c.master_id HAVING count(DISTINCT f.id_valid) > 1"
    )


def source_row_counts(conn: sa.Connection) -> dict[str, int]:
    """Standardized records per source (the rows each source suite validates)."""
    std = std_resident.c
    return {r.source: int(r.n) for r in conn.execute(
        sa.select(std.source, sa.func.count().label("n")).group_by(std.source))}


def deletions_since(conn: sa.Connection, since: dt.datetime) -> dict[str, tuple[int, int, int]]:
    """Per source that deleted records after ``since``: (records deleted, records it had before them, the most
    records one of its loads deleted before ``since``).

    Deleted: records tombstoned after ``since`` whose tombstone still stands (a record sent again is
    not deleted). Had before: the source's live records now plus those deleted. The most one load
    deleted before is the source's history the gate let through (0 when it never deleted any).

    Live records are the source's keys less those deleted now (a standing tombstone at or after the batch of the
    key's newest version, as ``raw.current_record`` says): counted from the keys' index, never from the records'
    newest versions, which the view sorts with their payloads (2.3 s of a 50,000-person county's gate)."""
    t, r, b = raw_tombstone.c, raw_record.c, raw_load_batch.c
    deleted = (sa.select(t.source, sa.func.count(sa.distinct(t.source_record_id)).label("deleted"))
               .where(t.detected_at > since, t.revoked_in.is_(None)).group_by(t.source).subquery())
    deleting = sa.select(deleted.c.source)
    keys = (sa.select(r.source, sa.func.count(sa.distinct(r.source_record_id)).label("keys"))
            .where(r.source.in_(deleting)).group_by(r.source).subquery())
    r2 = raw_record.alias("newest")
    newest_batch = (sa.select(sa.func.max(r2.c.batch_id))
                    .where(r2.c.source == t.source, r2.c.source_record_id == t.source_record_id).scalar_subquery())
    gone_keys = (sa.select(t.source, t.source_record_id).distinct()
                 .where(t.source.in_(deleting), t.revoked_in.is_(None), t.batch_id >= newest_batch).subquery())
    gone = (sa.select(gone_keys.c.source, sa.func.count().label("gone")).group_by(gone_keys.c.source).subquery())
    live = sa.func.coalesce(keys.c["keys"], 0) - sa.func.coalesce(gone.c.gone, 0)
    most = (sa.select(b.source, sa.func.max(b.tombstones).label("most"))
            .where(b.status == "succeeded", b.finished_at <= since).group_by(b.source).subquery())
    rows = conn.execute(
        sa.select(deleted.c.source, deleted.c.deleted, live.label("live"),
                  sa.func.coalesce(most.c.most, 0).label("most"))
        .select_from(deleted.outerjoin(keys, keys.c.source == deleted.c.source)
                     .outerjoin(gone, gone.c.source == deleted.c.source)
                     .outerjoin(most, most.c.source == deleted.c.source)))
    return {r.source: (int(r.deleted), int(r.deleted) + int(r.live), int(r.most)) for r in rows}
